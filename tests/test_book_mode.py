"""Every run mode's configuration is valid and its data suffices, checked without training anything.

``make test`` runs the chapters in fast mode only, so a setting that breaks only in book or full mode (a split that
runs out of unseen problems, a stage longer than the model's context, a chapter missing from the time table) would
first show up in a 30-minute ``make book``. These tests build each mode's configurations and data and check them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from minillm.chapters import ARTIFACTS, CHAPTERS, PROBES, banner
from minillm.data.corpus import crawl_config
from minillm.device import MODES, RunMode, pick_device
from minillm.post import build_post_data, post_training_spec
from minillm.train.annealing import anneal_spec
from minillm.train.isoflop import ladder_config, sweep_spec
from minillm.train.pretrain import base_model_spec

sys.path.insert(0, str(Path(__file__).parent))
from toc import toc_notebooks  # noqa: E402

BOOK_BUDGET_S = 45 * 60          # make book on 2 cores, install included
INSTALL_AND_RENDER_S = 4 * 60    # the install and Sphinx's rendering: 86 s measured together, with room


@pytest.mark.parametrize("mode", MODES)
def test_pretraining_specs_of_every_mode_fit_together(mode):
    base = base_model_spec(mode)
    cfg = base.model_config(8192)
    assert cfg.max_seq_len >= 4 * base.seq_len, "the long-context stages run at 2x and 4x the training length"
    assert base.n_heads % base.n_kv_heads == 0 and base.dim % base.n_heads == 0
    anneal = anneal_spec(mode, base)
    assert anneal.steps <= base.steps / 5 and anneal.seq_len == base.seq_len and anneal.start_lr == base.final_lr
    assert anneal.steps // anneal.checkpoint_every >= anneal.average_last, "too few checkpoints to average"
    crawl = crawl_config(mode)
    assert crawl.clean_pages > 0 and crawl.python_docs_pages > 0


@pytest.mark.parametrize("mode", MODES)
def test_sweep_spec_of_every_mode_builds_its_ladder(mode):
    spec = sweep_spec(mode)
    for budget, widths in spec.grid:
        assert len(widths) >= 3 and spec.batch_for(budget) >= 1
        for w in widths:
            cfg = ladder_config(w, spec.vocab_size, spec.seq_len)
            assert cfg.num_params() > 0 and cfg.n_heads % cfg.n_kv_heads == 0


@pytest.mark.parametrize("mode", ["book", "full"])
def test_post_training_data_of_every_mode_has_its_full_splits(mode):
    """Book mode once stopped here: the one-digit sums ran out of unseen test problems. The corpus excludes
    ~10,000 questions in book mode; half of all one-digit sums stand in for them."""
    spec = post_training_spec(mode)
    from minillm.eval import math_benchmark
    from minillm.train.pretrain import EASY_ARITHMETIC

    corpus_like = {i.question for i in math_benchmark(2000, seed=12345, task_config=EASY_ARITHMETIC)}
    data = build_post_data(spec.data, exclude=corpus_like)
    assert (len(data.train), len(data.dev), len(data.test)) == (spec.data.n_train, spec.data.n_dev, spec.data.n_test)
    assert not {i.question for i in data.test} & corpus_like
    assert spec.rs_prompts is None or spec.rs_prompts <= spec.data.n_train
    assert data.preferences and data.heldout_preferences and data.sft_chats


def test_the_time_table_covers_every_chapter_and_book_mode_fits_its_budget():
    stems = [p.stem for p in toc_notebooks()]
    assert sorted(CHAPTERS) == sorted(stems), "minillm.chapters.CHAPTERS must list the chapters of _toc.yml"
    for ch in CHAPTERS.values():
        assert {"fast", "book"} <= set(ch.seconds), ch.stem
        assert set(ch.artifacts) <= set(ARTIFACTS) == set(PROBES), ch.stem
    assert sum(ch.seconds["book"] for ch in CHAPTERS.values()) <= BOOK_BUDGET_S - INSTALL_AND_RENDER_S


@pytest.mark.parametrize("mode", MODES)
def test_every_chapter_banner_names_its_mode_time_artifacts_and_the_switch(mode):
    for stem, ch in CHAPTERS.items():
        text = banner(stem, RunMode(mode), pick_device("cpu"), cached={a: False for a in ch.artifacts})
        assert f"run mode: {mode}" in text and "MINILLM_MODE=" in text
        assert ("expected time: about" in text) == (mode in ch.seconds)
        assert text.count("built now") == len(ch.artifacts)
        assert max(map(len, text.splitlines())) <= 72, "the book's page shows about 75 columns"
    with pytest.raises(ValueError, match="unknown chapter"):
        banner("99_missing", RunMode("fast"), pick_device("cpu"))


def test_artifact_probe_builds_nothing(tmp_path, monkeypatch):
    from minillm.chapters import artifact_cached

    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path))
    assert artifact_cached("tokenizer", RunMode("fast")) is False
    assert artifact_cached("base_model", RunMode("book")) is False
    assert list(tmp_path.rglob("recipe.json")) == []
