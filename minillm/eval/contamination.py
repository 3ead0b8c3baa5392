"""Benchmark contamination by n-gram overlap with the training data (report §5.1.4).

The report scores every evaluation example by 8-gram overlap, following Singh et al. (2024): "We consider an example
of a dataset D to be contaminated if a ratio T_D of its tokens are part of an 8-gram occurring at least once in the
pre-training corpus", with the threshold ``T_D`` picked per dataset. Here:

- ``NgramIndex`` holds every n-gram of the training token streams as a sorted array of 64-bit hashes (8 bytes per
  n-gram: a few million n-grams fit in tens of MB, and a lookup is a binary search);
- ``coverage(tokens)`` marks each token of an example that lies inside an n-gram found in the index and returns the
  share marked, the report's per-example score;
- ``contamination_report`` scores a list of examples and splits them at a threshold into clean and contaminated.

Tokens are any integer ids (the book tokenizer's, or ``word_ids`` for a tokenizer-free check on lowercased words).
Hashing can in principle make two different n-grams collide; with 64-bit hashes and millions of n-grams the chance
that any lookup is a false hit is about 10⁻⁶ (tested on planted overlaps in ``tests/test_eval_contamination.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

_MULT = np.uint64(0x9E3779B97F4A7C15)                      # odd 64-bit constant (golden ratio): a rolling polynomial
_WORDS = re.compile(r"\w+")


def ngram_hashes(tokens: Sequence[int], n: int) -> np.ndarray:
    """64-bit hashes of the ``len(tokens) - n + 1`` n-grams of ``tokens``: ``(max(0, S - n + 1),)`` uint64.
    Hash of ``t_0 … t_{n-1}`` = ``Σ_j (t_j + 1)·M^(n-1-j)`` modulo 2⁶⁴, then mixed (splitmix64 finaliser)."""
    t = np.asarray(tokens, dtype=np.uint64) + np.uint64(1)                  # (S,): +1 so id 0 still counts
    if len(t) < n:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(len(t) - n + 1, dtype=np.uint64)                           # (S - n + 1,)
    with np.errstate(over="ignore"):
        for j in range(n):                                                  # Horner over the window
            h = h * _MULT + t[j:len(t) - n + 1 + j]
        h ^= h >> np.uint64(31)                                             # splitmix64 finaliser
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
    return h


def word_ids(text: str, vocab: dict[str, int]) -> list[int]:
    """Lowercased words of ``text`` as ids (new words get the next id in ``vocab``, which is updated in place)."""
    return [vocab.setdefault(w, len(vocab)) for w in _WORDS.findall(text.lower())]


class NgramIndex:
    """Every n-gram of some token streams, for membership queries. ``len(index)``: distinct n-grams."""

    def __init__(self, streams: Iterable[Sequence[int]], n: int = 8):
        if n < 1:
            raise ValueError(f"n-gram length must be >= 1, got {n}")
        self.n = n
        parts = [ngram_hashes(s, n) for s in streams]                       # n-grams never cross documents
        self.hashes = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)   # sorted

    def __len__(self) -> int:
        return len(self.hashes)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """``(k,)`` bool: which of ``hashes (k,)`` occur in the index."""
        if len(self.hashes) == 0:
            return np.zeros(len(hashes), dtype=bool)
        pos = np.searchsorted(self.hashes, hashes).clip(max=len(self.hashes) - 1)
        return self.hashes[pos] == hashes

    def coverage(self, tokens: Sequence[int]) -> float:
        """Share of ``tokens`` inside at least one n-gram that occurs in the index (0 for examples shorter than n)."""
        found = self.contains(ngram_hashes(tokens, self.n))                 # (S - n + 1,)
        if not found.any():
            return 0.0
        starts = np.flatnonzero(found)
        covered = np.zeros(len(tokens) + 1, dtype=np.int64)                 # difference array over positions
        np.add.at(covered, starts, 1)                                       # an n-gram covers [start, start + n)
        np.add.at(covered, starts + self.n, -1)
        return float((np.cumsum(covered)[:-1] > 0).mean())


@dataclass(frozen=True)
class ContaminationReport:
    """Per-example ``scores`` (coverage in [0, 1]), the ``threshold`` and the ``contaminated`` mask."""

    scores: np.ndarray
    threshold: float
    n: int

    @property
    def contaminated(self) -> np.ndarray:
        return self.scores >= self.threshold

    @property
    def rate(self) -> float:
        """Share of examples at or above the threshold."""
        return float(self.contaminated.mean()) if len(self.scores) else 0.0


def contamination_report(index: NgramIndex, examples: Sequence[Sequence[int]],
                         threshold: float = 0.5) -> ContaminationReport:
    """Score ``examples`` (token lists) against ``index``; contaminated when ``coverage >= threshold``."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold is a share of an example's tokens in (0, 1], got {threshold}")
    scores = np.array([index.coverage(e) for e in examples], dtype=float)
    return ContaminationReport(scores, threshold, index.n)


def performance_gain(correct: Sequence[bool], contaminated: Sequence[bool]) -> dict:
    """Singh et al.'s *estimated performance gain*: accuracy on all examples minus accuracy on the clean ones."""
    correct, dirty = np.asarray(correct, dtype=float), np.asarray(contaminated, dtype=bool)
    if correct.shape != dirty.shape or not len(correct):
        raise ValueError(f"need one correct flag per example, got {correct.shape} and {dirty.shape}")
    clean = correct[~dirty]
    out = {"acc_all": float(correct.mean()), "n_clean": int((~dirty).sum()), "n_dirty": int(dirty.sum()),
           "acc_clean": float(clean.mean()) if len(clean) else float("nan"),
           "acc_dirty": float(correct[dirty].mean()) if dirty.any() else float("nan")}
    out["gain"] = out["acc_all"] - out["acc_clean"]
    return out
