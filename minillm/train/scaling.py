"""Scaling laws: FLOPs of a run, IsoFLOP parabolas and compute-optimal power laws (report §3.2.1).

What is notable here:

- **compute**. Training costs ``C = flops_per_token(T) · D`` with ``flops_per_token = 6N + 12·L·d·T`` (weights plus
  attention scores, ``ModelConfig.flops_per_token``); the rule of thumb ``C ≈ 6ND`` drops the attention term.
- **IsoFLOP**. For each budget ``C`` train several sizes ``N`` on ``D = C / flops_per_token`` tokens, fit a parabola
  to the final loss in ``ln N`` (the report: "a second-degree polynomial"), and read off its vertex: the
  compute-optimal size ``N*(C)`` and ``D*(C) = C / 6N*``.
- **frontier**. Fit ``N*(C) = A_N·C^a`` and ``D*(C) = A_D·C^b`` by least squares in log-log space. Because
  ``D* = C / 6N*``, ``a + b = 1`` holds exactly: one exponent carries the information. Chinchilla (Hoffmann et al.
  2022, approach 2) found ``a ≈ 0.49, b ≈ 0.51``; the report fits the *tokens*, ``N*(C) = A·C^α`` in its notation,
  with ``(α, A) = (0.53, 0.29)`` over budgets 6·10¹⁸ to 10²² FLOPs.
- **uncertainty**. ``fit_power_law`` bootstraps the points (pairs); ``fit_frontier`` bootstraps the *residuals of
  every parabola* (the loss noise), re-finds each vertex and refits the law, so its interval says how far the
  measured losses pin down the exponent.

Shapes: plain floats and 1-D NumPy arrays; nothing here touches a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

# Report §3.2.1: fit of the optimal number of training tokens, N*(C) = A·C^α, and the flagship run (§3.2.1, §3.4).
REPORT = dict(alpha=0.53, A=0.29, budget_range=(6e18, 1e22), size_range=(40e6, 16e9),
              flagship_flops=3.8e25, predicted_params=402e9, predicted_tokens=16.55e12,
              trained_params=405e9, trained_tokens=15.6e12)
# Hoffmann et al. (2022), Table 2, approach 2 (IsoFLOP profiles): N_opt ∝ C^0.49, D_opt ∝ C^0.51.
CHINCHILLA = dict(a=0.49, b=0.51)


def training_flops(cfg, tokens: float, seq_len: int) -> float:
    """FLOPs to train ``cfg`` (a ``ModelConfig``) on ``tokens`` tokens in sequences of ``seq_len``: 6N + attention."""
    return cfg.flops_per_token(seq_len) * tokens


def six_nd(cfg, tokens: float) -> float:
    """The rule of thumb ``C ≈ 6·N·D`` with ``N`` the weights that take part in a matmul."""
    return 6.0 * cfg.num_params(include_embedding=False) * tokens


def tokens_for_budget(cfg, budget: float, seq_len: int) -> float:
    """``D`` such that ``training_flops(cfg, D, seq_len) == budget``."""
    if budget <= 0:
        raise ValueError(f"a compute budget must be positive FLOPs, got {budget}")
    return budget / cfg.flops_per_token(seq_len)


# ------------------------------------------------------------------------------------------------ power laws
@dataclass(frozen=True)
class PowerLaw:
    """``y = coef · x^exponent``, with bootstrap intervals (``None`` without bootstrap)."""

    exponent: float
    coef: float
    exponent_ci: tuple[float, float] | None = None
    coef_ci: tuple[float, float] | None = None
    n_boot: int = 0

    def __call__(self, x):
        return self.coef * np.asarray(x, dtype=float) ** self.exponent


def _loglog_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares of ``ln y = e·ln x + ln c``; returns ``(e, c)``."""
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(np.exp(intercept))


def _interval(samples: Sequence[float], level: float) -> tuple[float, float]:
    lo, hi = np.quantile(np.asarray(samples), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def fit_power_law(x: Sequence[float], y: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                  seed: int = 0) -> PowerLaw:
    """Fit ``y = c·x^e`` (least squares in log-log space) to positive ``x, y`` of shape ``(n,)``, ``n >= 2``;
    percentile intervals from ``n_boot`` resamples of the points (resamples with a single distinct x are skipped)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"fit_power_law needs two 1-D arrays of the same length >= 2, got {x.shape} and {y.shape}")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("fit_power_law needs positive x and y (it fits in log-log space)")
    exponent, coef = _loglog_fit(x, y)
    if n_boot <= 0:
        return PowerLaw(exponent, coef)
    rng = np.random.default_rng(seed)
    exps, coefs = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        if len(np.unique(x[idx])) < 2:
            continue
        e, c = _loglog_fit(x[idx], y[idx])
        exps.append(e)
        coefs.append(c)
    return PowerLaw(exponent, coef, _interval(exps, level), _interval(coefs, level), len(exps))


# ------------------------------------------------------------------------------------------------ IsoFLOP parabolas
@dataclass(frozen=True)
class Parabola:
    """``loss = a·u² + b·u + c`` with ``u = ln N``; its vertex is the compute-optimal size of one budget."""

    a: float
    b: float
    c: float

    @property
    def has_minimum(self) -> bool:
        return self.a > 0

    @property
    def argmin(self) -> float:
        """``N*``: the size at the vertex (only meaningful when ``has_minimum``)."""
        return float(np.exp(np.clip(-self.b / (2 * self.a), -700, 700)))

    @property
    def min_loss(self) -> float:
        return float(self.c - self.b ** 2 / (4 * self.a))

    def __call__(self, n):
        u = np.log(np.asarray(n, dtype=float))
        return self.a * u ** 2 + self.b * u + self.c


def fit_parabola(sizes: Sequence[float], losses: Sequence[float]) -> Parabola:
    """Least-squares parabola of ``losses`` in ``ln sizes`` (shapes ``(n,)``, at least 3 distinct sizes)."""
    n, loss = np.asarray(sizes, dtype=float), np.asarray(losses, dtype=float)
    if n.shape != loss.shape or len(np.unique(n)) < 3:
        raise ValueError(f"an IsoFLOP parabola needs >= 3 distinct sizes with one loss each, got {n.shape} sizes, "
                         f"{loss.shape} losses")
    a, b, c = np.polyfit(np.log(n), loss, 2)
    return Parabola(float(a), float(b), float(c))


@dataclass(frozen=True)
class FrontierFit:
    """Per budget: ``budgets (K,)``, vertex sizes ``n_opt (K,)``, tokens ``d_opt = C/6N*``, ``parabolas``; the two
    power laws with residual-bootstrap intervals; ``extrapolated``: budgets whose vertex is not inside the sizes
    trained (with ``clip``: replaced by the best trained size)."""

    budgets: np.ndarray
    n_opt: np.ndarray
    d_opt: np.ndarray
    min_loss: np.ndarray
    parabolas: list[Parabola]
    params_law: PowerLaw
    tokens_law: PowerLaw
    extrapolated: list[bool] = field(default_factory=list)


def _vertex(p: Parabola, n: np.ndarray, clip: bool) -> tuple[float, bool]:
    """The parabola's minimum in ``N``; with ``clip``, a vertex outside the sizes trained (or a parabola without
    a minimum) is replaced by the best *trained* size under the parabola. Returns ``(N*, at_edge)``."""
    inside = p.has_minimum and n.min() <= p.argmin <= n.max()
    if inside or not clip:
        return (p.argmin if p.has_minimum else float("nan")), not inside
    return float(n[np.argmin(p(n))]), True


def fit_frontier(runs: Sequence[dict], n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                 clip: bool = False) -> FrontierFit:
    """IsoFLOP analysis of ``runs`` (dicts with ``budget``, ``params`` and ``loss``; >= 3 sizes per budget, >= 2
    budgets). Every budget's parabola must open upwards, unless ``clip``: then a budget whose minimum is missing or
    lies outside the sizes trained uses its best trained size, and ``extrapolated`` flags it. Intervals: each
    bootstrap replicate adds resampled residuals (scaled by ``sqrt(n / (n - 3))``, the degrees of freedom the fit
    used up) to every parabola's fitted losses, re-fits the parabolas and the laws; without ``clip``, replicates
    where a parabola loses its minimum are dropped."""
    budgets = sorted({float(r["budget"]) for r in runs})
    if len(budgets) < 2:
        raise ValueError(f"a frontier needs runs at >= 2 budgets, got {budgets}")
    groups = []
    for c in budgets:
        rows = sorted((r for r in runs if float(r["budget"]) == c), key=lambda r: r["params"])
        groups.append((np.array([r["params"] for r in rows], float), np.array([r["loss"] for r in rows], float)))
    parabolas = [fit_parabola(n, loss) for n, loss in groups]
    for c, p in zip(budgets, parabolas):
        if not p.has_minimum and not clip:
            raise ValueError(f"the IsoFLOP curve at C={c:.3g} has no minimum (the loss falls or rises across all "
                             f"sizes): widen the range of sizes for that budget, or pass clip=True")
    C = np.array(budgets)
    vertices = [_vertex(p, n, clip) for p, (n, _) in zip(parabolas, groups)]
    n_opt = np.array([v for v, _ in vertices])
    d_opt = C / (6 * n_opt)
    rng = np.random.default_rng(seed)
    a_s, b_s, an_s, ad_s = [], [], [], []
    for _ in range(n_boot):
        n_b = []
        for (n, loss), p in zip(groups, parabolas):
            fitted = p(n)
            resid = (loss - fitted) * np.sqrt(len(n) / max(1, len(n) - 3))
            rep = fit_parabola(n, fitted + rng.choice(resid, len(n)))
            if not (rep.has_minimum or clip):
                break
            n_b.append(_vertex(rep, n, clip)[0])
        else:
            n_b = np.array(n_b)
            a, an = _loglog_fit(C, n_b)
            b, ad = _loglog_fit(C, C / (6 * n_b))
            a_s.append(a), an_s.append(an), b_s.append(b), ad_s.append(ad)
    a, an = _loglog_fit(C, n_opt)
    b, ad = _loglog_fit(C, d_opt)
    ci = (lambda s: _interval(s, level) if s else None)
    params_law = PowerLaw(a, an, ci(a_s), ci(an_s), len(a_s))
    tokens_law = PowerLaw(b, ad, ci(b_s), ci(ad_s), len(b_s))
    return FrontierFit(C, n_opt, d_opt, np.array([p.min_loss if p.has_minimum else float("nan") for p in parabolas]),
                       parabolas, params_law, tokens_law, [edge for _, edge in vertices])


def report_extrapolation(alpha: float = REPORT["alpha"], coef: float = REPORT["A"],
                         flops: float = REPORT["flagship_flops"]) -> dict:
    """The report's law at the flagship budget: tokens ``A·C^α`` and the size ``C / 6D`` they leave; and the
    exponent that would give the report's own 16.55T tokens with the same ``A``."""
    tokens = coef * flops ** alpha
    exact_alpha = np.log(REPORT["predicted_tokens"] / coef) / np.log(flops)
    return {"tokens": float(tokens), "params": float(flops / (6 * tokens)), "alpha_for_16.55T": float(exact_alpha)}
