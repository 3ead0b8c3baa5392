"""The annealing set: a small, high-quality maths and code subset for the end of pre-training (report §3.1.3).

The report: "annealing on small amounts of high-quality code and mathematical data can boost the performance of
pre-trained models on key benchmarks", done with "a data mix that upsamples high-quality data in select domains"
(and, for evaluation, annealing on 40B tokens assesses the value of a dataset). ``select_annealing`` takes the
highest-scoring pages of the chosen domains up to a token budget.
"""

from __future__ import annotations

from typing import Sequence


def select_annealing(domains: Sequence[str], scores: Sequence[float], tokens: Sequence[int], budget_tokens: int,
                     wanted: Sequence[str] = ("math", "code"), min_score: float = 0.5) -> list[int]:
    """Indices of the annealing documents: those of a ``wanted`` domain with quality ``score >= min_score``, best
    first, until ``budget_tokens`` (a document that would overflow the budget is skipped). Returned in index order."""
    if not len(domains) == len(scores) == len(tokens):
        raise ValueError(f"domains, scores and tokens must have equal lengths, got "
                         f"{len(domains)}, {len(scores)}, {len(tokens)}")
    if budget_tokens < 0:
        raise ValueError(f"budget_tokens must be >= 0, got {budget_tokens}")
    candidates = sorted((i for i, d in enumerate(domains) if d in wanted and scores[i] >= min_score),
                        key=lambda i: (-scores[i], i))
    chosen, used = [], 0
    for i in candidates:
        if used + tokens[i] <= budget_tokens:
            chosen.append(i)
            used += tokens[i]
    return sorted(chosen)
