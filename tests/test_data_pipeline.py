"""The whole curation pipeline on a planted crawl: each stage meets its precision/recall target (issue "Done when")."""

import json
import re
import subprocess
import sys
import textwrap

import pytest

from minillm.data import __main__ as cli
from minillm.data.classifier import FastTextConfig
from minillm.data.crawl import CrawlConfig, CrawlTruth, build_crawl, save_crawl
from minillm.data.evaluate import evaluate
from minillm.data.mix import REPORT_MIX
from minillm.data.pipeline import PipelineConfig, _extract_shard, _map, run_pipeline

CRAWL = CrawlConfig(seed=0, clean_pages=700, python_docs_pages=3)
PIPELINE = PipelineConfig(workers=2, shard_size=100, quality_per_class=150, domain_per_source=60,
                          classifier=FastTextConfig(epochs=5))


@pytest.fixture(scope="module")
def run():
    crawl = build_crawl(CRAWL)
    result = run_pipeline(crawl.pages, PIPELINE, progress=False)
    return crawl, result, evaluate(result, crawl.truth)


def test_crawl_plants_every_problem_with_its_truth(run):
    crawl, _, _ = run
    truth = crawl.truth
    kinds = set(truth.kind.values())
    assert {"clean", "spam", "dirty", "garbage", "low_quality", "bad"} <= kinds
    assert truth.duplicate_of and truth.related_to and truth.pii and truth.markdown and truth.boilerplate
    assert set(truth.bad_input.values()) == {"non_utf8", "empty", "too_large", "broken_html"}
    assert max(len(p.body) for p in crawl.pages) >= 50_000_000  # the 50 MB page
    assert len(truth.newest) < len(crawl.pages)  # some URLs were crawled more than once
    assert [p.id for p in crawl.pages] == list(range(len(crawl.pages)))


def test_crawl_is_deterministic_and_its_truth_round_trips(tmp_path):
    config = CrawlConfig(seed=3, clean_pages=40, python_docs_pages=0, sources=("news", "python_code"),
                         bad_inputs=False)
    first, second = build_crawl(config), build_crawl(config)
    assert first.pages == second.pages and first.truth == second.truth
    save_crawl(first, tmp_path)
    assert CrawlTruth.from_json((tmp_path / "truth.json").read_text()) == first.truth
    assert sum(1 for _ in open(tmp_path / "pages.jsonl")) == len(first.pages)


def test_url_dedup_is_exact(run):
    assert run[2]["url_dedup"]["exact"]


def test_bad_input_is_counted_never_lost(run):
    crawl, result, ev = run
    assert ev["extract"]["bad_missed"] == {}
    assert ev["extract"]["bad_counted"] == len(crawl.truth.bad_input)
    # every page is either in the corpus or removed by a named stage
    assert set(result.removed) | {d["id"] for d in result.docs} == set(range(len(crawl.pages)))
    assert not set(result.removed) & {d["id"] for d in result.docs}


def test_markdown_markers_are_removed(run):
    assert run[2]["extract"]["markdown_pages"] > 0 and run[2]["extract"]["markdown_left"] == 0


def test_near_duplicates_found_with_recall_and_precision_above_095(run):
    minhash = run[2]["minhash"]
    assert minhash["pairs_at_threshold"] >= 30
    assert minhash["recall"] >= 0.95 and minhash["precision"] >= 0.95
    assert minhash["related_merged"] <= 0.05  # pairs at Jaccard 0.3-0.6 stay apart


def test_planted_boilerplate_lines_are_removed(run):
    lines = run[2]["line_dedup"]
    assert lines["boilerplate_lines_in"] > 0 and lines["boilerplate_lines_left"] == 0


def test_spam_and_garbage_removed_with_few_clean_pages_lost(run):
    heuristics, quality = run[2]["heuristics"], run[2]["quality"]
    for kind in ("spam", "dirty", "garbage"):
        assert heuristics[f"{kind}_recall"] >= 0.9
    assert quality["low_quality_recall"] >= 0.9
    assert heuristics["clean_removed"] + quality["clean_removed"] <= 0.02


def test_pii_recall_above_095(run):
    assert run[2]["pii"]["planted"] > 20 and run[2]["pii"]["recall"] >= 0.95


def test_domain_classifier_and_mix(run):
    _, result, ev = run
    assert ev["domain"]["accuracy"] >= 0.9
    mix = result.report["mix"]
    present = [d for d in REPORT_MIX if mix["tokens"].get(d, 0) > 0]
    assert "multilingual" not in present  # nothing multilingual ships offline: reported as 0
    norm = sum(REPORT_MIX[d] for d in present)
    for d in present:
        assert mix["achieved"][d] == pytest.approx(REPORT_MIX[d] / norm)
    annealing = [d for d in result.docs if d["annealing"]]
    assert annealing and all(d["domain"] in ("math", "code") for d in annealing)


def test_report_lists_every_stage_in_order_with_counts(run):
    stages = run[1].report["stages"]
    assert [s["stage"] for s in stages] == ["url_dedup", "extract", "minhash_dedup", "line_dedup", "heuristics",
                                            "quality", "pii", "mix"]
    for before, after in zip(stages, stages[1:]):
        assert after["docs_in"] == before["docs_out"]
    json.dumps(run[1].report)  # JSON-able


def test_extraction_in_worker_processes_equals_one_process(run):
    pages = run[0].pages[:120]
    shards = [(pages[i:i + 30], PIPELINE.max_page_bytes) for i in range(0, len(pages), 30)]
    serial = _map(_extract_shard, shards, PipelineConfig(workers=1), "x", False)
    assert _map(_extract_shard, shards, PipelineConfig(workers=2), "x", False) == serial


KILL_A_WORKER = textwrap.dedent("""
    import os, signal
    from minillm.data.pipeline import PipelineConfig, _map

    def shard(items):                       # the planted shard [3] dies as the OOM killer would kill it
        if items == [3]:
            os.kill(os.getpid(), signal.SIGKILL)
        return items

    try:
        _map(shard, [[i] for i in range(6)], PipelineConfig(workers=2), "planted", False)
    except RuntimeError as err:
        print("RAISED:", err)
""")


def test_a_killed_worker_raises_an_error_naming_the_fix_instead_of_hanging():
    try:       # a subprocess, so that a hanging pool ends with the timeout instead of hanging the test session
        done = subprocess.run([sys.executable, "-c", KILL_A_WORKER], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the pipeline hung for 60 s after one of its worker processes was killed")
    assert "RAISED:" in done.stdout, done.stdout + done.stderr
    assert "'planted' stage died" in done.stdout and "workers=1" in done.stdout


def test_cli_build_fast_passes_the_fast_sizes_and_prints_the_table(run, monkeypatch, capsys, tmp_path):
    calls = {}

    def fake_build(out, crawl, pipeline, progress):
        calls.update(out=out, crawl=crawl, pipeline=pipeline)
        return dict(run[1].report, evaluation=run[2])

    monkeypatch.setattr(cli, "build_corpus", fake_build)
    assert cli.main(["build", "--out", str(tmp_path), "--fast", "--workers", "2", "--quiet"]) == 0
    assert calls["crawl"].clean_pages == 2000 and calls["pipeline"].workers == 2
    printed = capsys.readouterr().out
    assert "minhash" in printed and "mix" in printed and "multilingual 0.00 (report 0.08)" in printed


def test_a_stored_run_is_the_artifact_a_fresh_build_makes(tmp_path):
    from minillm.data import build_corpus, store_corpus
    crawl_cfg = CrawlConfig(seed=3, clean_pages=60, python_docs_pages=0, sources=("news", "python_code"))
    pipeline_cfg = PipelineConfig(seed=3, workers=1, shard_size=100, quality_per_class=10, domain_per_source=10,
                                  classifier=FastTextConfig(epochs=2))
    pages = build_crawl(crawl_cfg)
    stored = store_corpus(crawl_cfg, pipeline_cfg, pages, run_pipeline(pages.pages, pipeline_cfg, progress=False),
                          root=tmp_path)
    fresh = tmp_path / "fresh"
    build_corpus(fresh, crawl_cfg, pipeline_cfg, progress=False)
    for name in ("corpus.jsonl", "truth.json"):
        assert (stored / name).read_bytes() == (fresh / name).read_bytes()
    report = json.loads((stored / "report.json").read_text())
    assert report["evaluation"] == json.loads((fresh / "report.json").read_text())["evaluation"]


@pytest.mark.parametrize("pages, named", [("a plain string", "single str"), (b"bytes", "single bytes"),
                                          (["a", "b"], "pages[0] is a str"), ([1], "pages[0] is a int")])
def test_pages_that_are_not_page_objects_raise_a_type_error_naming_them(pages, named):
    with pytest.raises(TypeError, match=re.escape(named)):
        run_pipeline(pages, PIPELINE, progress=False)


def test_one_bad_page_among_good_ones_is_named_by_its_index(run):
    crawl, _, _ = run
    with pytest.raises(TypeError, match=r"pages\[2\] is a dict"):
        run_pipeline([*crawl.pages[:2], {"url": "x"}], PIPELINE, progress=False)
