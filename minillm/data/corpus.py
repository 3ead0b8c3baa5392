"""The curated corpus as an artifact: crawl → pipeline → ``corpus.jsonl`` + ``report.json`` (report §3.1).

``build_corpus(out_dir, ...)`` writes, into ``out_dir``:

- ``corpus.jsonl``: one curated page per line: ``id``, ``url``, ``text``, ``domain``, ``quality`` (the classifier's
  probability of ``high``), ``weight`` (repetitions of its domain in the mix) and ``annealing`` (in the annealing set);
- ``report.json``: documents in/out and seconds per stage, bad inputs counted, the final mix beside the report's, and
  ``evaluation``: precision/recall of every stage against the planted truth (``evaluate.py``);
- ``truth.json``: the planted ground truth.

``curated_corpus(mode)`` does the same through ``minillm.artifacts.build_or_load``, so later chapters (the tokenizer,
the models) load the cached folder or rebuild it deterministically. ``store_corpus`` caches a run already at hand
(chapter 1 runs the pipeline to show it, and stores that run instead of leaving a second one to chapter 2 or 3).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from minillm.artifacts import build_or_load
from minillm.data.crawl import Crawl, CrawlConfig, build_crawl
from minillm.data.evaluate import evaluate
from minillm.data.pipeline import CurationResult, PipelineConfig, run_pipeline
from minillm.data.sources import source_versions
from minillm.device import RunMode

VERSION = 3  # 2: plants.py computes the true Jaccard of near-duplicate pairs; extract.py strips nested markers
#              3: pydoc pages rendered in a fresh interpreter (a corpus built in a notebook kernel differed)


def crawl_config(mode: RunMode | str, seed: int = 0) -> CrawlConfig:
    """The crawl size of a run mode: ~2,800 pages (fast), ~11,000 (book), ~20,000 (full: every source used up)."""
    mode = RunMode(mode) if isinstance(mode, str) else mode
    return CrawlConfig(seed=seed, clean_pages=mode.pick(fast=2000, book=8000, full=20000),
                       python_docs_pages=mode.pick(fast=10, book=40, full=150))


def build_corpus(out_dir: str | os.PathLike, crawl: CrawlConfig = CrawlConfig(),
                 pipeline: PipelineConfig = PipelineConfig(), progress: bool = True) -> dict:
    """Build the crawl, curate it, write the files listed above into ``out_dir``; return the report."""
    pages = build_crawl(crawl)
    return write_corpus(out_dir, pages, run_pipeline(pages.pages, pipeline, progress=progress), crawl, pipeline)


def write_corpus(out_dir: str | os.PathLike, pages: Crawl, result: CurationResult, crawl: CrawlConfig,
                 pipeline: PipelineConfig) -> dict:
    """Write the files listed above for ``result = run_pipeline(pages.pages, pipeline)`` with
    ``pages = build_crawl(crawl)``; return the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evaluation = evaluate(result, pages.truth, pipeline.minhash_threshold, pipeline.ngram)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for doc in result.docs:
            handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
    report = dict(result.report, pages_in=len(pages.pages), evaluation=evaluation, crawl_config=asdict(crawl),
                  pipeline_config=asdict(pipeline), source_versions=source_versions())
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "truth.json").write_text(pages.truth.to_json())
    return report


def corpus_recipe(crawl: CrawlConfig, pipeline: PipelineConfig) -> dict:
    """Everything the corpus depends on (the worker count does not change it)."""
    config = asdict(pipeline)
    config.pop("workers")
    return dict(version=VERSION, crawl=asdict(crawl), pipeline=config, sources=source_versions())


def curated_corpus(mode: RunMode | str = "fast", seed: int = 0, workers: int = 1, root=None,
                   progress: bool = True) -> Path:
    """The cached corpus folder for a run mode (built on first use)."""
    crawl, pipeline = crawl_config(mode, seed), PipelineConfig(seed=seed, workers=workers)
    return build_or_load("corpus", corpus_recipe(crawl, pipeline),
                         lambda out: build_corpus(out, crawl, pipeline, progress), root=root)


def store_corpus(crawl: CrawlConfig, pipeline: PipelineConfig, pages: Crawl, result: CurationResult,
                 root=None) -> Path:
    """Cache a pipeline run already computed, ``pages = build_crawl(crawl)`` and ``result = run_pipeline(pages.pages,
    pipeline)``, as the corpus artifact of those two configs (the key is computed from them, so a run with other
    settings is stored under another key and never stands in for ``curated_corpus(mode)``). A folder already cached
    is kept as it is."""
    return build_or_load("corpus", corpus_recipe(crawl, pipeline),
                         lambda out: write_corpus(out, pages, result, crawl, pipeline), root=root)


def load_corpus(folder: str | os.PathLike) -> list[dict]:
    """The documents of ``corpus.jsonl`` in ``folder``."""
    with open(Path(folder) / "corpus.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]
