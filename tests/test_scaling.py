"""Scaling laws: FLOP counts against the formula, power-law and IsoFLOP fits against planted laws (with bootstrap
intervals that cover the truth), the two-stage forecast against a synthetic world, and one micro sweep run."""

import math

import numpy as np
import pytest
import torch

from minillm import ModelConfig
from minillm.train.forecast import Sigmoid, compute_optimal_runs, fit_sigmoid, two_stage_forecast
from minillm.train.isoflop import SweepSpec, ladder_config, train_run
from minillm.train.scaling import (CHINCHILLA, REPORT, fit_frontier, fit_parabola, fit_power_law, report_extrapolation,
                                   six_nd, tokens_for_budget, training_flops)


# ------------------------------------------------------------------------------------------------ FLOPs
def test_training_flops_are_six_n_d_plus_the_attention_term_of_palm():
    cfg = ModelConfig.tiny(dim=64, n_layers=3, n_heads=4, n_kv_heads=2, ffn_dim=160, vocab_size=1000,
                           tie_embeddings=True)
    n = cfg.num_params(include_embedding=False)
    # by hand: 3 blocks of (q,k,v,o) + SwiGLU + 2 norms, the final norm, the tied 1000 x 64 table as output head
    per_block = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 160 + 2 * 64
    assert n == 3 * per_block + 64 + 1000 * 64
    T, D = 128, 10_000
    assert training_flops(cfg, D, T) == pytest.approx((6 * n + 12 * 3 * 64 * T) * D)
    assert six_nd(cfg, D) == 6 * n * D
    assert training_flops(cfg, tokens_for_budget(cfg, 1e12, T), T) == pytest.approx(1e12)


def test_llama3_405b_on_its_tokens_costs_the_reports_flops_within_ten_percent():
    cfg = ModelConfig.llama3_405b()
    flops = training_flops(cfg, REPORT["trained_tokens"], 8192)
    assert flops == pytest.approx(REPORT["flagship_flops"], rel=0.10)


# ------------------------------------------------------------------------------------------------ power laws
def test_power_law_fit_recovers_a_planted_exponent_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    x = np.logspace(9, 13, 12)
    y = 0.29 * x ** 0.53 * np.exp(rng.normal(0, 0.05, len(x)))
    law = fit_power_law(x, y, n_boot=1000, seed=1)
    assert law.exponent == pytest.approx(0.53, abs=0.02)
    assert law.exponent_ci[0] < 0.53 < law.exponent_ci[1]
    assert law.coef_ci[0] < 0.29 < law.coef_ci[1]
    assert law.exponent_ci[1] - law.exponent_ci[0] < 0.05


def test_power_law_bootstrap_intervals_cover_the_truth_about_as_often_as_they_claim():
    rng = np.random.default_rng(3)
    x = np.logspace(0, 4, 20)
    covered = 0
    for trial in range(30):
        y = 2.0 * x ** -0.3 * np.exp(rng.normal(0, 0.1, len(x)))
        lo, hi = fit_power_law(x, y, n_boot=200, seed=trial).exponent_ci
        covered += lo < -0.3 < hi
    assert covered >= 24                       # 95% nominal; the pairs bootstrap runs a little narrow at n = 20


def test_power_law_fit_is_exact_on_noiseless_points_and_rejects_non_positive_values():
    law = fit_power_law([1, 10, 100], [3, 30, 300], n_boot=0)
    assert law.exponent == pytest.approx(1.0) and law.coef == pytest.approx(3.0)
    assert law(1000) == pytest.approx(3000)
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([1, 2], [0, 1])


# ------------------------------------------------------------------------------------------------ IsoFLOP
def test_parabola_fit_finds_a_planted_minimum():
    rng = np.random.default_rng(0)
    n = np.logspace(3.5, 5.5, 7)
    loss = 0.2 * (np.log(n) - np.log(2.5e4)) ** 2 + 3.0 + rng.normal(0, 0.005, len(n))
    p = fit_parabola(n, loss)
    assert p.has_minimum
    assert p.argmin == pytest.approx(2.5e4, rel=0.05)
    assert p.min_loss == pytest.approx(3.0, abs=0.01)


def test_parabola_needs_three_sizes_and_a_frontier_needs_a_minimum_at_every_budget():
    with pytest.raises(ValueError, match=">= 3 distinct sizes"):
        fit_parabola([1e3, 1e4, 1e4], [1.0, 2.0, 3.0])
    falling = [dict(budget=c, params=n, loss=5 - math.log(n) * 0.1) for c in (1e9, 1e10) for n in (1e3, 1e4, 1e5)]
    with pytest.raises(ValueError, match="no minimum"):
        fit_frontier(falling, n_boot=0)
    clipped = fit_frontier(falling, n_boot=50, clip=True)                  # falls everywhere: the largest size wins
    assert clipped.extrapolated == [True, True] and clipped.n_opt.tolist() == [1e5, 1e5]


def _planted_isoflop(a=0.45, coef=0.05, noise=0.004, seed=0, budgets=(1e9, 3e9, 1e10, 3e10, 1e11)):
    """Losses E + k·(ln N − ln N*(C))² with N*(C) = coef·C^a, at 5 sizes spread around each optimum."""
    rng = np.random.default_rng(seed)
    runs = []
    for c in budgets:
        n_star = coef * c ** a
        for f in (0.25, 0.5, 1.0, 2.0, 4.0):
            n = n_star * f * math.exp(rng.normal(0, 0.1))
            runs.append(dict(budget=c, params=n, loss=2.0 + 0.15 * math.log(n / n_star) ** 2 + rng.normal(0, noise)))
    return runs


def test_isoflop_frontier_recovers_planted_exponents_with_covering_intervals():
    fit = fit_frontier(_planted_isoflop(), n_boot=500)
    assert fit.params_law.exponent == pytest.approx(0.45, abs=0.03)
    assert fit.tokens_law.exponent == pytest.approx(0.55, abs=0.03)
    assert fit.params_law.exponent + fit.tokens_law.exponent == pytest.approx(1.0)     # D* = C / 6N*
    lo, hi = fit.params_law.exponent_ci
    assert lo < 0.45 < hi
    assert fit.params_law.n_boot > 400
    np.testing.assert_allclose(fit.d_opt, fit.budgets / (6 * fit.n_opt))
    assert not any(fit.extrapolated)


def test_noisier_losses_give_wider_frontier_intervals():
    quiet = fit_frontier(_planted_isoflop(noise=0.002), n_boot=300).params_law.exponent_ci
    loud = fit_frontier(_planted_isoflop(noise=0.02), n_boot=300).params_law.exponent_ci
    assert loud[1] - loud[0] > 2 * (quiet[1] - quiet[0])


def test_report_law_at_the_flagship_budget_by_hand():
    out = report_extrapolation()
    assert out["tokens"] == pytest.approx(0.29 * math.exp(0.53 * math.log(3.8e25)))
    assert out["params"] == pytest.approx(3.8e25 / (6 * out["tokens"]))
    assert 0.29 * 3.8e25 ** out["alpha_for_16.55T"] == pytest.approx(16.55e12)
    assert CHINCHILLA["a"] + CHINCHILLA["b"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ two-stage forecast
def test_sigmoid_fit_recovers_a_planted_curve():
    truth = Sigmoid(k=6.0, x0=1.2, floor=0.25)
    nll = np.linspace(0.6, 2.0, 15)
    fit = fit_sigmoid(nll, truth(nll), floor=0.25)
    assert fit.k == pytest.approx(6.0, rel=1e-3) and fit.x0 == pytest.approx(1.2, abs=1e-3)
    assert fit.inverse(float(truth(1.0))) == pytest.approx(1.0, abs=1e-3)


def test_two_stage_forecast_predicts_a_world_that_follows_both_laws():
    sig = Sigmoid(k=5.0, x0=1.5, floor=0.25)
    runs = []
    for c in (1e9, 1e10, 1e11, 1e12):
        for j, n in enumerate((1e3, 2e3, 4e3)):
            nll = 30 * c ** -0.1 * (1 + 0.1 * abs(j - 1))       # the middle size is compute-optimal
            runs.append(dict(budget=c, compute=c, loss=nll, nll_per_byte=nll, acc=float(sig(nll)), n_items=400))
    assert [r["loss"] for r in compute_optimal_runs(runs)] == [30 * c ** -0.1 for c in (1e9, 1e10, 1e11, 1e12)]
    fc = two_stage_forecast(runs)
    assert fc.target_budget == 1e12 and fc.fit_budgets == [1e9, 1e10, 1e11]
    assert fc.stage1.exponent == pytest.approx(-0.1)
    assert fc.nll_error == pytest.approx(0, abs=1e-9)
    assert fc.acc_error == pytest.approx(0, abs=1e-4)


# ------------------------------------------------------------------------------------------------ the sweep itself
def test_sweep_spec_rejects_a_budget_with_too_few_widths():
    with pytest.raises(ValueError, match=">= 3 distinct widths"):
        SweepSpec(grid=((1e9, (8, 16)), (1e10, (8, 16, 24))))
    with pytest.raises(ValueError, match="batch_sizes needs one batch >= 1 per budget"):
        SweepSpec(grid=((1e9, (8, 12, 16)), (1e10, (8, 12, 16))), batch_sizes=(4,))
    spec = SweepSpec(grid=((1e9, (8, 12, 16)), (1e10, (8, 12, 16))), batch_sizes=(4, 16))
    assert (spec.batch_for(1e9), spec.batch_for(1e10)) == (4, 16)
    with pytest.raises(ValueError, match="not in SweepSpec.grid"):
        spec.batch_for(3e9)
    cfg = ladder_config(48, 1024, 64)
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim) == (48, 1, 3, 1, 128)


class _Chars:
    """A byte tokenizer: id = byte + 1, BOS = 0."""

    bos_id, vocab_size = 0, 257

    def encode(self, text):
        return [b + 1 for b in text.encode()]


def test_a_micro_sweep_run_spends_its_budget_and_learns():
    from minillm.eval import ChoiceItem
    from minillm.train.packing import pack_documents

    tok = _Chars()
    text = "the cat sat on the mat. " * 400
    data = pack_documents([tok.encode(text)], bos_id=0)
    items = [ChoiceItem("the cat sat on the", (" mat.", " cat.")[::s], s and 1, id=str(s)) for s in (1, -1)]
    spec = SweepSpec(grid=((1.2e8, (8, 12, 16)), (2.4e8, (8, 12, 16))), vocab_size=257, seq_len=32, batch_size=4,
                     min_steps=1, eval_batches=2, peak_lr=2e-2)
    torch.manual_seed(0)
    row, state = train_run(16, 1.2e8, spec, data, data, items, tok)
    cfg = ladder_config(16, 257, 32)
    per_step = cfg.flops_per_token(32) * 4 * 32
    assert abs(row["compute"] - 1.2e8) <= per_step / 2                       # the budget, to the nearest step
    assert row["batch"] == 4 and row["tokens"] == row["steps"] * 4 * 32
    assert row["compute"] / row["compute_6nd"] == pytest.approx(cfg.flops_per_token(32) / (6 * row["params"]))
    assert row["loss"] < row["first_loss"] - 1.0                            # it learned the repeated sentence
    assert set(state) == set(torch.nn.Module.state_dict(__import__("minillm").Llama(cfg)))
