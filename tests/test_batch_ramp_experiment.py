"""The constant-vs-ramp experiment (report §3.4.1) on a tiny model and synthetic documents: the ramp run really takes
the scaled ramp's batches, both runs read the same tokens from the same start and are scored on the same documents,
the paired comparison has one row per evaluation point, and bad settings fail early."""

import numpy as np
import pytest
import torch

from minillm.tokenizer import train_bpe
from minillm.train.batch_ramp_experiment import (RampExperimentSpec, paired_ramp_comparison, ramp_experiment,
                                                 ramp_experiment_spec, scaled_ramp, steps_for)

WORDS = [f"{a}{b}{c}" for a in "bcdfgklmnp" for b in "aeiou" for c in "rst"]
SPEC = RampExperimentSpec(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32, seq_len=16, batch_size=4,
                          tokens=32 * 64, eval_at=(1 / 8, 1 / 2, 1.0), eval_docs=6)


def _docs(n=60):
    g = torch.Generator().manual_seed(0)
    return [{"id": i, "text": " ".join(WORDS[j] for j in torch.randint(0, len(WORDS), (60,), generator=g).tolist())}
            for i in range(n)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe([d["text"] for d in _docs()], vocab_size=300)


@pytest.fixture(scope="module")
def result(tokenizer, one_thread):
    docs = _docs()
    return ramp_experiment(SPEC, tokenizer, docs[:50], docs[50:], progress=False)


def test_the_scaled_ramp_keeps_the_report_shape_and_ends_at_the_constant_batch():
    ramp = scaled_ramp(RampExperimentSpec(batch_size=8, seq_len=128, tokens=64 * 1024))
    assert [(s.start_tokens, s.batch_size, s.seq_len) for s in ramp.stages] == [
        (0, 4, 64), (4096, 4, 128), (12288, 8, 128)]              # 4M × 4K → 8M × 8K → 16M × 8K, scaled
    ramp = scaled_ramp(SPEC)
    assert [(s.batch_size, s.seq_len) for s in ramp.stages] == [(2, 8), (2, 16), (4, 16)]
    # 128 tokens in steps of 16, 256 in steps of 32, the rest in steps of 64
    assert steps_for(ramp, SPEC.tokens) == 128 // 16 + 256 // 32 + (SPEC.tokens - 384) // 64


def test_the_ramp_run_took_each_stages_batches_and_the_constant_run_one_batch(result):
    ramp = scaled_ramp(SPEC)
    hist = result["runs"]["ramp"]["history"]
    seen = 0
    for row in hist:
        stage = ramp.at(seen)
        assert (row["batch_size"], row["seq_len"]) == (stage.batch_size, stage.seq_len)
        seen += stage.batch_tokens
        assert row["tokens_seen"] == seen
    shapes = [(r["batch_size"], r["seq_len"]) for r in hist]
    assert [shapes.count(s) for s in [(2, 8), (2, 16), (4, 16)]] == [8, 8, 26]
    assert {(r["batch_size"], r["seq_len"]) for r in result["runs"]["constant"]["history"]} == {(4, 16)}
    assert len(result["runs"]["constant"]["history"]) == SPEC.tokens // 64
    assert result["ramp"] == [[0, 16, 8], [128, 32, 16], [384, 64, 16]]


def test_both_runs_read_the_same_tokens_and_are_scored_on_the_same_documents_at_the_same_points(result, tokenizer):
    runs = result["runs"]
    for run in runs.values():
        assert run["history"][-1]["tokens_seen"] == SPEC.tokens == run["stream_position"]   # one pass, from 0
        assert [e["tokens"] for e in run["evals"]] == result["eval_tokens"] == [256, 1024, 2048]
        assert all(len(e["doc_losses"]) == SPEC.eval_docs for e in run["evals"])
    assert result["eval_docs"] == [d["id"] for d in _docs()[50:56]]
    assert len(result["eval_doc_tokens"]) == SPEC.eval_docs and min(result["eval_doc_tokens"]) == SPEC.seq_len
    # the ramp run takes more, smaller steps to the same token counts
    steps = [(c["step"], r["step"]) for c, r in zip(runs["constant"]["evals"], runs["ramp"]["evals"])]
    assert all(r > c for c, r in steps) and steps[0] == (4, 8 + 4)


def test_both_runs_start_from_the_same_weights(tokenizer, one_thread):
    """With a learning rate too small to move the weights, both runs score every document alike."""
    docs = _docs()
    spec = RampExperimentSpec(**{**SPEC.__dict__, "peak_lr": 1e-12, "final_lr": 1e-12, "eval_at": (1.0,)})
    out = ramp_experiment(spec, tokenizer, docs[:50], docs[50:], progress=False)
    const, ramp = (np.array(out["runs"][k]["evals"][0]["doc_losses"]) for k in ("constant", "ramp"))
    assert np.abs(const - ramp).max() < 1e-5 and const.std() > 0


def test_the_paired_comparison_has_a_row_per_point_and_tests_ramp_minus_constant(result):
    rows = paired_ramp_comparison(result)
    assert [r["tokens"] for r in rows] == result["eval_tokens"]
    for row, const, ramp in zip(rows, result["runs"]["constant"]["evals"], result["runs"]["ramp"]["evals"]):
        d = np.array(ramp["doc_losses"]) - np.array(const["doc_losses"])
        assert row["n"] == SPEC.eval_docs and np.isclose(row["diff"], d.mean()) and 0 <= row["p"] <= 1
        assert row["half"] > 0 and np.isclose(row["ramp_better"], (d < 0).mean())
        assert (row["constant_loss"], row["ramp_loss"]) == (const["loss"], ramp["loss"])
    first, last = result["runs"]["constant"]["evals"][0], result["runs"]["constant"]["evals"][-1]
    assert last["loss"] < first["loss"], "the constant run learned nothing"


@pytest.mark.parametrize("change, field", [
    ({"batch_size": 5}, "batch_size"), ({"seq_len": 0}, "seq_len"), ({"tokens": 100}, "tokens"),
    ({"ramp_at": (0.5, 0.25)}, "ramp_at"), ({"eval_at": (0.5,)}, "eval_at"), ({"eval_at": (1.0, 0.5)}, "eval_at"),
    ({"final_lr": 1.0}, "final_lr"), ({"warmup_fraction": 1.0}, "warmup_fraction"),
    ({"tokens": 64, "ramp_at": (0.1, 0.2)}, "tokens")])
def test_bad_settings_name_the_field(change, field):
    with pytest.raises(ValueError, match=f"RampExperimentSpec.{field}"):
        RampExperimentSpec(**{**SPEC.__dict__, **change})


def test_a_budget_longer_than_the_stream_is_refused(tokenizer):
    docs = _docs()
    spec = RampExperimentSpec(**{**SPEC.__dict__, "tokens": 64 * 4096})
    with pytest.raises(ValueError, match="lower RampExperimentSpec.tokens"):
        ramp_experiment(spec, tokenizer, docs[:50], docs[50:], progress=False)


@pytest.mark.parametrize("mode", ["fast", "book", "full"])
def test_every_mode_has_a_valid_spec_whose_ramp_ends_at_its_constant_batch(mode):
    spec = ramp_experiment_spec(mode)
    last = scaled_ramp(spec).stages[-1]
    assert (last.batch_size, last.seq_len) == (spec.batch_size, spec.seq_len)
    assert steps_for(scaled_ramp(spec), spec.tokens) > spec.tokens // (spec.batch_size * spec.seq_len)
