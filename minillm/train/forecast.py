"""Forecasting a benchmark's accuracy from compute, in two stages (report §3.2.1, Figure 4).

Validation loss falls smoothly with compute, accuracy does not: it sits at chance, then climbs. The report bridges
the two with a quantity that is both smooth and about the task, the **normalized negative log-likelihood of the
correct answer** (per character; here per UTF-8 byte, ``score_choices``'s ``nll_per_byte``):

1. stage 1: NLL of the *compute-optimal* model of each budget against training FLOPs, a power law
   ``nll = A·C^γ`` (a straight line in log-log axes; ``γ < 0``);
2. stage 2: accuracy against that NLL, a sigmoid from chance to 1,
   ``acc = chance + (1 - chance)·σ(-k·(nll - x0))``, fitted on every model at hand (the report adds older,
   larger Llama 2 models: per-character NLL does not depend on the tokenizer).

Chaining the two predicts the accuracy of a model before training it. The report predicted the 405B model's
ARC-Challenge accuracy over four orders of magnitude of compute and found it "only slightly underestimates the final
performance". ``two_stage_forecast`` does the same on our sweep: fit on the smaller budgets, predict the largest,
compare with what its compute-optimal run actually scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minillm.train.scaling import PowerLaw, fit_power_law


@dataclass(frozen=True)
class Sigmoid:
    """``acc = floor + (ceil - floor) / (1 + exp(k·(nll - x0)))``: falls from ``ceil`` to ``floor`` as NLL grows."""

    k: float
    x0: float
    floor: float
    ceil: float = 1.0

    def __call__(self, nll):
        z = np.clip(self.k * (np.asarray(nll, dtype=float) - self.x0), -60, 60)
        return self.floor + (self.ceil - self.floor) / (1 + np.exp(z))

    def inverse(self, acc: float) -> float:
        """The NLL at which the sigmoid reaches ``acc`` (``floor < acc < ceil``)."""
        return self.x0 + math.log((self.ceil - self.floor) / (acc - self.floor) - 1) / self.k


def fit_sigmoid(nll: Sequence[float], acc: Sequence[float], floor: float, ceil: float = 1.0) -> Sigmoid:
    """Least-squares ``Sigmoid`` through ``(nll, acc)`` points (shape ``(n,)``, ``n >= 2``) with a fixed floor
    (chance) and ceiling; ``k > 0`` (more NLL, less accuracy)."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(nll, dtype=float), np.asarray(acc, dtype=float)
    if x.shape != y.shape or len(x) < 2:
        raise ValueError(f"fit_sigmoid needs >= 2 (nll, acc) pairs of equal length, got {x.shape}, {y.shape}")

    def f(v, k, x0):
        return Sigmoid(k, x0, floor, ceil)(v)

    spread = max(float(np.ptp(x)), 1e-3)
    (k, x0), _ = curve_fit(f, x, y, p0=(4.0 / spread, float(np.median(x))), bounds=([1e-3, -50.0], [1e4, 50.0]),
                           maxfev=20_000)
    return Sigmoid(float(k), float(x0), floor, ceil)


def compute_optimal_runs(runs: Sequence[dict], key: str = "loss") -> list[dict]:
    """Per budget, the run with the lowest ``key`` (validation loss): the empirical compute-optimal model."""
    best: dict[float, dict] = {}
    for r in runs:
        c = float(r["budget"])
        if c not in best or r[key] < best[c][key]:
            best[c] = r
    return [best[c] for c in sorted(best)]


@dataclass(frozen=True)
class TwoStageForecast:
    """The two fits, the held-out budget, what they predict for it and what its compute-optimal run scored."""

    stage1: PowerLaw
    stage2: Sigmoid
    fit_budgets: list[float]
    target_budget: float
    predicted_nll: float
    predicted_acc: float
    actual_nll: float
    actual_acc: float
    acc_stderr: float                       # binomial standard error of the actual accuracy

    @property
    def nll_error(self) -> float:
        return self.predicted_nll - self.actual_nll

    @property
    def acc_error(self) -> float:
        return self.predicted_acc - self.actual_acc


def two_stage_forecast(runs: Sequence[dict], target_budget: float | None = None, chance: float = 0.25,
                       nll_key: str = "nll_per_byte", acc_key: str = "acc", n_items_key: str = "n_items",
                       n_boot: int = 0) -> TwoStageForecast:
    """Fit stage 1 on the compute-optimal runs of every budget below ``target_budget`` (default: the largest),
    stage 2 on all runs of those budgets, and predict the target budget. ``runs``: dicts with ``budget``, ``compute``
    (FLOPs actually spent), ``loss``, ``nll_key``, ``acc_key`` and ``n_items_key``."""
    budgets = sorted({float(r["budget"]) for r in runs})
    target = budgets[-1] if target_budget is None else float(target_budget)
    fit_budgets = [c for c in budgets if c < target]
    if len(fit_budgets) < 2:
        raise ValueError(f"a two-stage forecast needs >= 2 budgets below the target {target:.3g}, got {fit_budgets}")
    fit_runs = [r for r in runs if float(r["budget"]) in fit_budgets]
    frontier = compute_optimal_runs(fit_runs)
    stage1 = fit_power_law([r["compute"] for r in frontier], [r[nll_key] for r in frontier], n_boot=n_boot)
    stage2 = fit_sigmoid([r[nll_key] for r in fit_runs], [r[acc_key] for r in fit_runs], floor=chance)
    actual = compute_optimal_runs([r for r in runs if float(r["budget"]) == target])[0]
    predicted_nll = float(stage1(actual["compute"]))
    n = actual[n_items_key]
    return TwoStageForecast(stage1, stage2, fit_budgets, target, predicted_nll, float(stage2(predicted_nll)),
                            float(actual[nll_key]), float(actual[acc_key]),
                            math.sqrt(actual[acc_key] * (1 - actual[acc_key]) / n))
