"""Paired statistics for "did this change help, on the same questions?": McNemar's exact test with a paired
bootstrap interval, and the Wilson interval of one accuracy. Every chapter that compares two models on one
benchmark uses these (post-training's stages, annealing, the data filters)."""

from __future__ import annotations

import math

import torch


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927): ``(low, high)``, 95% for the default ``z``.
    Unlike ``p ± z·√(p(1−p)/n)`` it stays inside [0, 1] and is not empty at 0 or n successes."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes}, {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)            # exact ends: no 1e-17 rounding
    return low, 1.0 if successes == n else min(1.0, centre + half)


def paired_comparison(before: list[bool], after: list[bool], n_boot: int = 10_000, seed: int = 0) -> dict:
    """Did a stage change accuracy on the *same* problems? ``before``/``after``: one bool per problem.

    Returns the difference ``diff`` (after − before), its 95% paired-bootstrap interval ``(low, high)`` (problems
    resampled with replacement, both models together), the discordant counts ``gained`` (wrong → right) and ``lost``
    (right → wrong) and McNemar's exact two-sided ``p`` (a binomial test of ``gained`` among the discordant pairs at
    ½). Pairing matters: two overlapping Wilson intervals do not show "no difference", nor does a gain outside them
    need both to be apart."""
    if len(before) != len(after) or not before:
        raise ValueError(f"need two equally long non-empty lists of results, got {len(before)} and {len(after)}")
    a = torch.tensor(before, dtype=torch.float)
    b = torch.tensor(after, dtype=torch.float)
    n = a.numel()
    idx = torch.randint(0, n, (n_boot, n), generator=torch.Generator().manual_seed(seed))   # (n_boot, n)
    boot = (b[idx] - a[idx]).mean(dim=1)                                                       # (n_boot,)
    gained, lost = int(((b == 1) & (a == 0)).sum()), int(((b == 0) & (a == 1)).sum())
    return {"diff": float((b - a).mean()), "low": float(boot.quantile(0.025)), "high": float(boot.quantile(0.975)),
            "gained": gained, "lost": lost, "p": binomial_p(gained, gained + lost), "n": n}


def binomial_p(k: int, n: int) -> float:
    """Exact two-sided test of ``k`` successes in ``n`` fair coin flips (``scipy.stats.binomtest(k, n).pvalue``,
    written out because it is the whole of McNemar's exact test); 1.0 for ``n = 0``."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n if n else 1.0
    return min(1.0, 2 * tail)


def paired_difference(after, before, level: float = 0.95) -> dict:
    """Did a change move a graded per-question score (e.g. the right option's log-probability) on the *same*
    questions? ``after``/``before``: one number per question. Returns the mean difference ``diff``, the half-width
    ``half`` of its t-interval at ``level``, the paired t-test's two-sided ``p`` and ``n`` (``scipy.stats``)."""
    import numpy as np
    from scipy import stats

    d = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"need two equally long 1-D score lists of >= 2 questions, got a difference of shape {d.shape}")
    half = float(stats.t.ppf((1 + level) / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return {"diff": float(d.mean()), "half": half, "p": float(stats.ttest_1samp(d, 0).pvalue), "n": len(d)}
