"""Data-mix scaling laws: fit how each domain's loss depends on its share, pick the mix, extrapolate (report §3.1.2).

The report determined its mix by training "several small models on a data mix" and using them "to predict the
performance of a large model on that mix", repeating this for many candidate mixes ("Determining the data mix").
It publishes neither the law nor the candidates. We use the simplest law that has the right shape, one per domain:

    L_d(s_d) = a_d + b_d · s_d^(−c_d)        s_d: the share of domain d in the training tokens, b_d, c_d ≥ 0

the loss falls as the domain gets more of the fixed token budget, with diminishing returns (a power law in the
domain's own token count, as in Hoffmann et al. 2022 for data, at a fixed budget). It ignores transfer between
domains (Ye et al. 2024's "data mixing laws", L_d = c_d + k_d · exp(Σ_j t_dj s_j), model it but need more runs per
domain than we can afford). Fitting: for each ``c`` on a grid, ``a`` and ``b`` by least squares; keep the best.

Larger models: we assume the share curve's shape (``b_d``, ``c_d``) does not depend on model size and only the
offset ``a_d`` moves; ``a_d`` at a second size is refitted with ``b_d, c_d`` fixed and extrapolated linearly in
``log N``. Under that assumption the best mix is the same at every size, and the prediction is a loss per domain.

``cap_over_represented`` is the down-weighting of knowledge categories (report §3.1.2: "we downsample
over-represented data categories in the web data (for example, arts and entertainment)").
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import median
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class ShareLaw:
    """``L(s) = a + b · s^(−c)`` for one domain; ``rmse`` of the fit on its runs."""

    a: float
    b: float
    c: float
    rmse: float = 0.0

    def __call__(self, share: float | np.ndarray) -> float | np.ndarray:
        return self.a + self.b * np.power(share, -self.c)


def fit_share_law(shares: Sequence[float], losses: Sequence[float],
                  c_grid: Sequence[float] = tuple(np.round(np.arange(0.02, 2.0001, 0.01), 2))) -> ShareLaw:
    """Least-squares ``ShareLaw`` through ``(shares[i], losses[i])``: a grid over ``c``, closed-form ``a, b``
    (``b`` clipped at 0: more data never hurts). Needs >= 3 distinct shares in (0, 1]."""
    s, y = np.asarray(shares, float), np.asarray(losses, float)               # (R,), (R,)
    if s.shape != y.shape or len(np.unique(s)) < 3:
        raise ValueError(f"fit_share_law needs >= 3 distinct shares with one loss each, got shares {list(s)}")
    if s.min() <= 0 or s.max() > 1:
        raise ValueError(f"shares must lie in (0, 1], got {list(s)}")
    best = None
    for c in c_grid:
        x = s ** -c                                                            # (R,)
        X = np.stack([np.ones_like(x), x], 1)                                  # (R, 2)
        (a, b), *_ = np.linalg.lstsq(X, y, rcond=None)
        if b < 0:
            a, b = float(y.mean()), 0.0
        sse = float(((a + b * x - y) ** 2).sum())
        if best is None or sse < best[0] - 1e-15:
            best = (sse, float(a), float(b), float(c))
    sse, a, b, c = best
    return ShareLaw(a, b, c, math.sqrt(sse / len(s)))


def fit_mix_laws(runs: Sequence[Mapping], domains: Sequence[str]) -> dict[str, ShareLaw]:
    """One ``ShareLaw`` per domain from runs ``{"mix": {d: share}, "losses": {d: held-out loss}}``."""
    return {d: fit_share_law([r["mix"][d] for r in runs], [r["losses"][d] for r in runs]) for d in domains}


def refit_offsets(laws: Mapping[str, ShareLaw], runs: Sequence[Mapping]) -> dict[str, ShareLaw]:
    """The laws at another model size: ``b, c`` kept, ``a`` = mean over ``runs`` of ``L − b·s^(−c)``."""
    if not runs:
        raise ValueError("refit_offsets needs at least one run at the new size")
    out = {}
    for d, law in laws.items():
        resid = [r["losses"][d] - law.b * r["mix"][d] ** -law.c for r in runs]
        a = float(np.mean(resid))
        out[d] = ShareLaw(a, law.b, law.c, float(np.sqrt(np.mean((np.array(resid) - a) ** 2))))
    return out


def extrapolate_offsets(small: Mapping[str, ShareLaw], large: Mapping[str, ShareLaw], n_small: float,
                        n_large: float, n_target: float) -> dict[str, ShareLaw]:
    """Laws at ``n_target`` parameters: each ``a`` on the line through ``(log n_small, a_small)`` and
    ``(log n_large, a_large)``; ``b, c`` of ``large``."""
    if not 0 < n_small < n_large:
        raise ValueError(f"need 0 < n_small < n_large, got {n_small} and {n_large}")
    t = math.log(n_target / n_small) / math.log(n_large / n_small)
    return {d: ShareLaw(small[d].a + t * (large[d].a - small[d].a), large[d].b, large[d].c)
            for d in small}


def predict(laws: Mapping[str, ShareLaw], mix: Mapping[str, float]) -> dict[str, float]:
    """Predicted held-out loss of each domain for a mix."""
    return {d: float(law(mix[d])) for d, law in laws.items()}


def objective(losses: Mapping[str, float], weights: Mapping[str, float] | None = None) -> float:
    """The weighted mean of domain losses (equal weights by default): what the mix is chosen to minimise."""
    weights = weights or {d: 1.0 for d in losses}
    return sum(weights[d] * losses[d] for d in losses) / sum(weights[d] for d in losses)


def best_mix(laws: Mapping[str, ShareLaw], bounds: Mapping[str, tuple[float, float]], step: float = 0.01,
             weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """The mix on a grid of ``step`` over the simplex minimising ``objective(predict(laws, mix))``, each share
    inside its ``bounds`` (the range the runs covered: the law is not trusted outside it)."""
    domains = list(laws)
    k = round(1 / step)
    best = None
    for head in itertools.product(range(k + 1), repeat=len(domains) - 1):
        if sum(head) > k:
            continue
        mix = dict(zip(domains, [h / k for h in head] + [(k - sum(head)) / k]))
        if any(not bounds[d][0] - 1e-9 <= mix[d] <= bounds[d][1] + 1e-9 for d in domains):
            continue
        value = objective(predict(laws, mix), weights)
        if best is None or value < best[0] - 1e-12:
            best = (value, mix)
    if best is None:
        raise ValueError(f"no mix on the grid satisfies the bounds {dict(bounds)}")
    return best[1]


def cap_over_represented(shares: Mapping[str, float], k: float = 2.0) -> tuple[dict[str, float], dict[str, float]]:
    """Down-weight categories whose share exceeds ``k`` × the median share: each category's tokens are multiplied
    by ``min(1, k · median / share)``, then the shares are renormalised. Returns ``(weights, new shares)``."""
    if k < 1:
        raise ValueError(f"k must be >= 1 (a cap below the median would cut most categories), got {k}")
    total = sum(shares.values())
    if total <= 0 or any(v < 0 for v in shares.values()):
        raise ValueError(f"shares must be non-negative with a positive sum, got {dict(shares)}")
    p = {c: v / total for c, v in shares.items()}
    cap = k * median(p.values())
    weights = {c: (min(1.0, cap / v) if v > 0 else 1.0) for c, v in p.items()}
    kept = {c: p[c] * weights[c] for c in p}
    norm = sum(kept.values())
    return weights, {c: v / norm for c, v in kept.items()}
