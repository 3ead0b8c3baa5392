"""Heuristic document filters (report §3.1.1, "Heuristic filtering").

The report lists three heuristics, each a number per document compared with a threshold:

- **duplicated n-gram coverage** (Rae et al., 2021): "to remove lines that consist of repeated content such as logging
  or error messages. Those lines could be very long and unique, hence cannot be filtered by line-dedup."
  ``dup_ngram_ratio``: the fraction of words covered by a word n-gram that occurs at least twice in the document
  (numbers are normalised to ``0`` so that ``retry 1``, ``retry 2`` repeat).
- **dirty-word counting** (Raffel et al., 2020): "to filter out adult websites that are not covered by domain block
  lists". ``dirty_word_ratio``: the fraction of words on ``DIRTY_WORDS`` (a short list of adult/spam terms; C4 uses
  the LDNOOBW list, which cannot be downloaded here).
- **token-distribution Kullback-Leibler divergence**: "to filter out documents containing excessive numbers of outlier
  tokens compared to the training corpus distribution". ``TokenDistribution.kl(text)`` = ``KL(p_doc ‖ p_corpus)``
  where tokens are grouped by how often the rest of the corpus uses them (see ``TokenDistribution``: the raw
  word-level KL is dominated by document length and rare names), so that a page full of tokens seen nowhere else
  (base64 blobs, hex dumps, keyboard mash) stands out.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

DIRTY_WORDS = frozenset("""
porn porno pornhub xxx xxxx nude nudes naked sexy sex hentai camgirl camgirls webcam milf escort escorts stripper
onlyfans nsfw erotic horny hookup fetish bdsm orgasm dildo viagra cialis casino jackpot slots poker betting
fuck fucking shit pussy cock dick boobs tits slut whore cum blowjob
""".split())

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]+|_+", re.UNICODE)
_DIGITS = re.compile(r"\d+")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words of ``text``."""
    return _WORD.findall(text.lower())


def tokens(text: str) -> list[str]:
    """Lower-cased tokens for distribution statistics: alphanumeric runs and punctuation runs."""
    return _TOKEN.findall(text.lower())


def dup_ngram_ratio(text: str, n: int = 10) -> float:
    """Fraction of words of ``text`` inside an ``n``-gram (digits normalised) that occurs more than once; 0 if fewer
    than ``n`` words."""
    ws = [_DIGITS.sub("0", w) for w in words(text)]
    if len(ws) < n:
        return 0.0
    grams = list(zip(*(ws[i:] for i in range(n))))
    counts = Counter(grams)
    covered = bytearray(len(ws))
    for i, gram in enumerate(grams):
        if counts[gram] > 1:
            covered[i:i + n] = b"\x01" * n
    return sum(covered) / len(ws)


def dirty_word_ratio(text: str, dirty: Iterable[str] = DIRTY_WORDS) -> float:
    """Fraction of the words of ``text`` that are on the ``dirty`` list (0 for a text without words)."""
    ws = words(text)
    dirty = dirty if isinstance(dirty, (set, frozenset)) else set(dirty)
    return sum(w in dirty for w in ws) / len(ws) if ws else 0.0


def frequency_class(count: int) -> int:
    """``0`` for a token the rest of the corpus never uses, else ``1 + floor(log2(count))`` (capped at 24)."""
    return 0 if count <= 0 else min(24, count.bit_length())


class TokenDistribution:
    """Token counts of a corpus, and each document's KL divergence from the corpus distribution.

    A document's raw token distribution is too sparse to compare with the corpus's: ``KL(p_doc ‖ p_corpus)`` over
    words grows with every rare name or identifier, and on the planted crawl clean pages reach 5.4 nats while garbage
    starts at 4.6. So the distribution is taken *over frequency classes*: each token is replaced by
    ``frequency_class`` of its count in the rest of the corpus (leave-one-out: the document's own occurrences removed),
    and ``kl(text) = KL(p_doc(class) ‖ p_corpus(class))`` with add-``alpha`` smoothing over the 25 classes. Outlier
    tokens land in class 0 (or 1-2), which the corpus barely uses: a base64 page scores ~8 nats, prose under 3.

    Build with ``TokenDistribution.from_texts(texts)`` (the documents to score must be among them) or
    ``TokenDistribution(counter)``; counters of shards add up.
    """

    classes = 25

    def __init__(self, counts: Counter, alpha: float = 0.5) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha (smoothing) must be > 0, got {alpha}")
        self.counts = counts
        self.alpha = alpha
        self.profile = [0.0] * self.classes  # tokens of the corpus per frequency class
        for count in counts.values():
            self.profile[frequency_class(count)] += count
        self.total = sum(self.profile)

    @classmethod
    def from_texts(cls, texts: Iterable[str], alpha: float = 0.5) -> "TokenDistribution":
        counts: Counter = Counter()
        for text in texts:
            counts.update(tokens(text))
        return cls(counts, alpha)

    def kl(self, text: str) -> float:
        """KL divergence (nats) of ``text``'s frequency-class distribution from the corpus's; 0 without tokens."""
        doc = Counter(tokens(text))
        n = sum(doc.values())
        if n == 0:
            return 0.0
        p = [0] * self.classes
        for token, c in doc.items():
            p[frequency_class(self.counts.get(token, 0) - c)] += c
        denominator = self.total + self.alpha * self.classes
        return sum(pk / n * math.log((pk / n) / ((qk + self.alpha) / denominator))
                   for pk, qk in zip(p, self.profile) if pk)


@dataclass(frozen=True)
class HeuristicConfig:
    """Thresholds of the heuristic filters: a document is removed when any statistic exceeds its maximum.

    Defaults were set on the planted crawl (see the chapter's histograms): clean pages stay well below them.
    """

    dup_ngram: int = 10
    max_dup_ngram_ratio: float = 0.5
    max_dirty_ratio: float = 0.02
    max_kl: float = 3.5
    min_words: int = 20

    def __post_init__(self) -> None:
        if self.dup_ngram < 1:
            raise ValueError(f"HeuristicConfig.dup_ngram must be >= 1, got {self.dup_ngram}")
        for name in ("max_dup_ngram_ratio", "max_dirty_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"HeuristicConfig.{name} is a fraction in [0, 1], got {value}")
        if self.max_kl <= 0:
            raise ValueError(f"HeuristicConfig.max_kl must be > 0 (nats), got {self.max_kl}")
        if self.min_words < 0:
            raise ValueError(f"HeuristicConfig.min_words must be >= 0, got {self.min_words}")


def heuristic_stats(text: str, corpus: TokenDistribution, config: HeuristicConfig) -> dict[str, float]:
    """The statistics the filters threshold: ``words``, ``dup_ngram``, ``dirty``, ``kl``."""
    return {"words": float(len(words(text))), "dup_ngram": dup_ngram_ratio(text, config.dup_ngram),
            "dirty": dirty_word_ratio(text), "kl": corpus.kl(text)}


def heuristic_reason(stats: dict[str, float], config: HeuristicConfig) -> str | None:
    """The first filter a document fails (``"too_short"``, ``"dup_ngram"``, ``"dirty_words"``, ``"kl"``), or None."""
    if stats["words"] < config.min_words:
        return "too_short"
    if stats["dup_ngram"] > config.max_dup_ngram_ratio:
        return "dup_ngram"
    if stats["dirty"] > config.max_dirty_ratio:
        return "dirty_words"
    if stats["kl"] > config.max_kl:
        return "kl"
    return None
