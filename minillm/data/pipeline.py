"""The curation pipeline: crawl pages in, curated corpus + per-stage report out (report §3.1, in the report's order).

    url_dedup → extract (+ bad-input handling) → minhash_dedup → line_dedup → heuristic filters
              → quality classifier → redact_pii → domain classifier → data mix + annealing set

Per-page stages (extraction, the heuristic statistics) run over shards of pages in a process pool; global stages
(URL, MinHash and line dedup, the corpus token distribution, classifier training) run in the main process. Every
stage is a plain function over records (``url_dedup(records)``, ``extract(html)``, ``minhash_dedup(texts)``, ...), so
beyond one machine each becomes a step of an existing distributed engine: with datatrove, for instance, a
``PipelineStep`` wrapping ``extract_page`` and the filters over ``Document`` objects, datatrove's own four-stage
MinHash (signatures → buckets → clusters → filter) in place of ``minhash_dedup``, and the line dedup as its sentence
dedup. A real crawl would also need WARC reading, language id, URL block lists and per-domain statistics.

``run_pipeline`` knows nothing of the planted truth; ``evaluate.py`` scores its ``CurationResult`` against it.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable, Sequence

from tqdm.auto import tqdm

from minillm.data.annealing import select_annealing
from minillm.data.classifier import FastTextConfig
from minillm.data.crawl import Page
from minillm.data.extract import extract_page
from minillm.data.filters import HeuristicConfig, TokenDistribution, heuristic_reason, heuristic_stats, words
from minillm.data.line_dedup import line_dedup, normalize_line
from minillm.data.minhash import minhash_clusters
from minillm.data.mix import REPORT_MIX, mix_weights, mixture, train_domain_classifier
from minillm.data.pii import redact_pii
from minillm.data.quality import train_quality_classifier
from minillm.data.url_dedup import url_dedup


@dataclass(frozen=True)
class PipelineConfig:
    """Every threshold of the pipeline, and how to run it (``workers`` processes over shards of ``shard_size``)."""

    max_page_bytes: int = 2_000_000
    minhash_threshold: float = 0.8
    num_perm: int = 112
    ngram: int = 5
    bands: int | None = None
    line_max_repeats: int = 6
    line_bucket_size: int = 30_000_000
    heuristics: HeuristicConfig = field(default_factory=HeuristicConfig)
    quality_threshold: float = 0.5
    quality_per_class: int = 300
    domain_per_source: int = 150
    classifier: FastTextConfig = field(default_factory=FastTextConfig)
    max_epochs: float = 4.0
    annealing_fraction: float = 0.05
    workers: int = 1
    shard_size: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_page_bytes", "num_perm", "ngram", "line_max_repeats", "line_bucket_size", "workers",
                     "shard_size", "quality_per_class", "domain_per_source"):
            if getattr(self, name) < 1:
                raise ValueError(f"PipelineConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("minhash_threshold", "quality_threshold", "annealing_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PipelineConfig.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class CurationResult:
    """What the pipeline did. ``removed[id]`` names the stage (and reason) that dropped page ``id``; ``snapshots``
    hold the texts entering some stages (``minhash``, ``line_dedup``, ``pii``) for scoring; ``docs`` is the corpus."""

    docs: list[dict]
    removed: dict[int, str]
    issues: dict[int, str]
    clusters: dict[int, int]
    snapshots: dict[str, dict[int, str]]
    stats: dict[int, dict[str, float]]
    report: dict


def _extract_shard(args: tuple[list[Page], int]) -> list[tuple[int, str | None, str | None]]:
    pages, max_bytes = args
    return [(p.id, *extract_page(p.body, max_bytes)) for p in pages]


_WORKER: dict = {}


def _init_heuristics(corpus: TokenDistribution, config: HeuristicConfig) -> None:
    _WORKER["corpus"], _WORKER["config"] = corpus, config


def _stats_shard(items: list[tuple[int, str]]) -> list[tuple[int, dict[str, float]]]:
    return [(i, heuristic_stats(text, _WORKER["corpus"], _WORKER["config"])) for i, text in items]


def _map(fn: Callable, shards: list, config: PipelineConfig, desc: str, progress: bool,
         initializer: Callable | None = None, initargs: tuple = ()) -> list:
    """``fn`` over ``shards``, in a process pool when ``config.workers > 1``; results flattened, in shard order.

    The pool is a ``ProcessPoolExecutor``, not ``multiprocessing.Pool``: when a worker dies (the OOM killer, a
    signal) ``Pool.imap`` waits forever for its shard, while the executor notices the dead process and fails every
    pending shard with ``BrokenProcessPool``, which we re-raise as a ``RuntimeError`` saying what to do."""
    bar = dict(desc=desc, total=len(shards), disable=not progress, leave=False)
    if config.workers == 1 or len(shards) == 1:
        if initializer:
            initializer(*initargs)
        return [r for shard in tqdm(shards, **bar) for r in fn(shard)]
    context = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    try:
        with ProcessPoolExecutor(config.workers, mp_context=context, initializer=initializer,
                                 initargs=initargs) as pool:
            return [r for part in tqdm(pool.map(fn, shards), **bar) for r in part]
    except BrokenProcessPool as err:
        raise RuntimeError(
            f"a worker process of the pipeline's {desc!r} stage died before returning its shard (killed by the "
            f"OOM killer or a signal?); PipelineConfig(workers={config.workers}, shard_size={config.shard_size}) "
            f"ran {config.workers} workers: rerun with workers=1 (or fewer workers / a smaller shard_size) to "
            f"use less memory") from err


def _shards(items: Sequence, size: int) -> list[list]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def check_pages(pages) -> list[Page]:
    """``pages`` as a list of ``Page``s, or a ``TypeError`` naming what was passed and the fix (a plain string would
    otherwise fail deep inside URL dedup as ``'str' object has no attribute 'url'``)."""
    if isinstance(pages, (str, bytes, Page)):
        raise TypeError(f"run_pipeline(pages=...) takes a sequence of Page objects, got a single "
                        f"{type(pages).__name__}; wrap it in a list or build pages with minillm.data.crawl.build_crawl")
    pages = list(pages)
    bad = next((i for i, p in enumerate(pages) if not isinstance(p, Page)), None)
    if bad is not None:
        raise TypeError(f"run_pipeline(pages=...): pages[{bad}] is a {type(pages[bad]).__name__}, not a Page; "
                        f"build them with minillm.data.crawl.build_crawl(...).pages")
    return pages


def run_pipeline(pages: Sequence[Page], config: PipelineConfig = PipelineConfig(),
                 progress: bool = True) -> CurationResult:
    """Curate ``pages``; returns the corpus (``docs``: id, url, text, domain, quality, weight, annealing) and the
    report (documents in/out and seconds per stage, bad-input counts, line statistics, the mix)."""
    pages = check_pages(pages)
    removed: dict[int, str] = {}
    stages: list[dict] = []
    snapshots: dict[str, dict[int, str]] = {}
    clock = [time.perf_counter()]

    def stage(name: str, n_in: int, n_out: int, **extra) -> None:
        now = time.perf_counter()
        stages.append(dict(stage=name, docs_in=n_in, docs_out=n_out, seconds=round(now - clock[0], 3), **extra))
        clock[0] = now

    # 1. URL dedup: newest crawl of each URL
    kept = url_dedup(list(pages))
    kept_ids = {p.id for p in kept}
    removed.update({p.id: "url_dedup" for p in pages if p.id not in kept_ids})
    stage("url_dedup", len(pages), len(kept))

    # 2. extraction; oversized pages are skipped here, before they are shipped to a worker
    issues: dict[int, str] = {p.id: "too_large" for p in kept if len(p.body) > config.max_page_bytes}
    small = [p for p in kept if p.id not in issues]
    texts: dict[int, str] = {}
    shards = [(s, config.max_page_bytes) for s in _shards(small, config.shard_size)]
    for pid, text, issue in _map(_extract_shard, shards, config, "extract", progress):
        if issue:
            issues[pid] = issue
        if text is None:
            removed[pid] = f"extract:{issue}"
        else:
            texts[pid] = text
    removed.update({pid: "extract:too_large" for pid, issue in issues.items() if issue == "too_large"})
    stage("extract", len(kept), len(texts), issues=dict(Counter(issues.values())))

    # 3. document-level MinHash dedup (global)
    ids = sorted(texts)
    snapshots["minhash"] = {i: texts[i] for i in ids}
    labels = minhash_clusters([texts[i] for i in ids], config.minhash_threshold, config.num_perm, config.ngram,
                              config.bands)
    clusters = {ids[k]: ids[int(label)] for k, label in enumerate(labels)}
    for i in ids:
        if clusters[i] != i:
            removed[i] = "minhash"
            del texts[i]
    stage("minhash_dedup", len(ids), len(texts))

    # 4. line dedup (global, bucketed), then drop pages left without enough words
    ids = sorted(texts)
    snapshots["line_dedup"] = {i: texts[i] for i in ids}
    deduped = line_dedup([texts[i] for i in ids], config.line_max_repeats, config.line_bucket_size)
    lines_before = sum(1 for i in ids for line in texts[i].split("\n") if normalize_line(line))
    lines_after = sum(1 for t in deduped for line in t.split("\n") if normalize_line(line))
    texts = dict(zip(ids, deduped))
    stage("line_dedup", len(ids), len(texts), lines_in=lines_before, lines_out=lines_after)

    # 5. heuristic filters against the corpus token distribution
    ids = sorted(texts)
    corpus = TokenDistribution.from_texts(texts[i] for i in ids)
    stats = dict(_map(_stats_shard, _shards([(i, texts[i]) for i in ids], config.shard_size), config, "heuristics",
                      progress, _init_heuristics, (corpus, config.heuristics)))
    for i in ids:
        reason = heuristic_reason(stats[i], config.heuristics)
        if reason:
            removed[i] = f"heuristic:{reason}"
            del texts[i]
    stage("heuristics", len(ids), len(texts), reasons=dict(Counter(r for r in removed.values()
                                                                  if r.startswith("heuristic:"))))

    # 6. model-based quality filter
    ids = sorted(texts)
    quality_model = train_quality_classifier(config.quality_per_class, config.seed + 1, config.classifier)
    scores = dict(zip(ids, quality_model.predict_proba([texts[i] for i in ids])[:, 0].tolist()))
    for i in ids:
        if scores[i] < config.quality_threshold:
            removed[i] = "quality"
            del texts[i]
    stage("quality", len(ids), len(texts))

    # 7. PII redaction
    ids = sorted(texts)
    snapshots["pii"] = {i: texts[i] for i in ids}
    pii_counts: Counter = Counter()
    for i in ids:
        texts[i], counts = redact_pii(texts[i])
        pii_counts.update(counts)
    stage("pii", len(ids), len(texts), redacted=dict(pii_counts))

    # 8. domains, mix, annealing set
    domain_model = train_domain_classifier(config.domain_per_source, config.seed + 2, config.classifier)
    domains = dict(zip(ids, domain_model.predict([texts[i] for i in ids])))
    n_tokens = {i: len(words(texts[i])) for i in ids}
    per_domain = Counter()
    for i in ids:
        per_domain[domains[i]] += n_tokens[i]
    weights = mix_weights(per_domain, REPORT_MIX, config.max_epochs)
    budget = int(config.annealing_fraction * sum(n_tokens.values()))
    chosen = select_annealing([domains[i] for i in ids], [scores[i] for i in ids], [n_tokens[i] for i in ids], budget)
    annealing = {ids[k] for k in chosen}
    stage("mix", len(ids), len(ids))

    url = {p.id: p.url for p in pages}
    docs = [dict(id=i, url=url[i], text=texts[i], domain=domains[i], quality=round(scores[i], 4),
                 weight=round(weights[domains[i]], 4), annealing=i in annealing) for i in ids]
    report = dict(stages=stages, bad_input=dict(Counter(issues.values())),
                  mix=dict(tokens=dict(per_domain), weights=weights, achieved=mixture(per_domain, weights),
                           unweighted=mixture(per_domain, {d: 1.0 for d in per_domain}), target=REPORT_MIX),
                  annealing=dict(docs=len(annealing), tokens=sum(n_tokens[i] for i in annealing)),
                  docs_out=len(docs), tokens_out=sum(n_tokens.values()))
    stats = {i: dict(s, quality=scores.get(i, float("nan"))) for i, s in stats.items()}
    return CurationResult(docs, removed, issues, clusters, snapshots, stats, report)
