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


def arithmetic_drills(n_docs: int, per_doc: int = 20, seed: int = 11, exclude: set[str] = frozenset(),
                      wrong_share: float = 0.0, task_config: dict | None = None) -> list[dict]:
    """A synthetic high-quality maths source: ``n_docs`` documents of ``per_doc`` solved problems each
    (``"Question: Calculate 5 - -4.\\nAnswer: 9"``), from reasoning-gym's ``basic_arithmetic`` with ``task_config``
    (default: one-digit, two-term problems), whose answers are right by construction. Questions in ``exclude`` (a
    benchmark's) never appear. ``wrong_share``: that share of the distinct questions gets a wrong answer (a random
    integer in [-99, 99]), the same one wherever the question recurs, as a buggy answer key would give it: a
    planted lower-quality version of the same source, for the annealing probe.

    Returns corpus dicts ``{"id", "text", "domain": "math"}``, deterministic for the arguments."""
    import random

    import reasoning_gym  # slow to import (~2.5 s)

    if n_docs < 1 or per_doc < 1:
        raise ValueError(f"arithmetic_drills needs n_docs >= 1 and per_doc >= 1, got {n_docs}, {per_doc}")
    if not 0 <= wrong_share <= 1:
        raise ValueError(f"arithmetic_drills: wrong_share must lie in [0, 1], got {wrong_share}")
    from minillm.eval.math import EASY_ARITHMETIC

    config = task_config or EASY_ARITHMETIC["basic_arithmetic"]
    need = n_docs * per_doc
    problems = reasoning_gym.create_dataset("basic_arithmetic", size=2 * need + 100, seed=seed, **config)
    lines = []
    for entry in problems:
        question = entry["question"].strip()
        if question in exclude:
            continue
        answer = int(entry["answer"])
        rng = random.Random(f"drills:{seed}:{question}")              # per question: recurrences agree
        if rng.random() < wrong_share:
            answer = rng.choice([a for a in range(-99, 100) if a != answer])
        lines.append(f"Question: {question}\nAnswer: {answer}")
        if len(lines) == need:
            break
    if len(lines) < need:
        raise ValueError(f"arithmetic_drills found only {len(lines)} of {need} problems outside `exclude`; ask for "
                         f"fewer documents or exclude fewer questions")
    return [{"id": f"drills:{seed}:{wrong_share:g}:{i}", "text": "\n".join(lines[i * per_doc:(i + 1) * per_doc]),
             "domain": "math"} for i in range(n_docs)]
