"""Multilingual data offline: locale text from ``faker``, language identification, per-language dedup and filters
(report §3.1.1, "Multilingual data").

The report's multilingual pipeline: "a fasttext-based language identification model to categorize documents into
176 languages", then "document-level and line-level de-duplication within data for each language", then
"language-specific heuristics and model-based filters", and a mix of "high-quality multilingual tokens" (8% of the
final mix, §3.1.2). Offline, ``faker``'s locales hold real word lists of many languages; ``Faker(locale).paragraph``
strings them into sentences. The result has each language's vocabulary, characters and word lengths, but no
grammar: a language identifier can learn from it, a language model could not learn much.

- ``locale_documents``: documents per language, with planted problems of the kinds the pipeline must handle:
  exact and near copies (for the per-language dedup) and repeated-sentence spam (for the per-language filter);
- ``char_features``: a text as hashed character trigrams, one "word" each, so the word-based ``FastText`` becomes
  the character n-gram classifier language identification needs (Chinese and Japanese have no spaces);
- ``per_language_threshold``: a filter threshold computed within each language (median + ``k`` MADs of a
  statistic), because one threshold for all languages would be wrong for most of them.
"""

from __future__ import annotations

import random
import statistics
import zlib
from typing import Mapping, Sequence

LOCALES = {"en": "en_US", "de": "de_DE", "fr": "fr_FR", "es": "es_ES", "it": "it_IT", "nl": "nl_NL",
           "pl": "pl_PL", "ru": "ru_RU", "ja": "ja_JP", "zh": "zh_CN"}


def locale_documents(language: str, n: int, seed: int = 0, duplicates: float = 0.1,
                     spam: float = 0.05) -> list[dict]:
    """``n`` clean documents of ``language`` (a key of ``LOCALES``) plus ``round(duplicates·n)`` copies (half
    exact, half with one sentence replaced) and ``round(spam·n)`` spam pages (one sentence repeated 12-20 times).
    Each dict: ``text``, ``language``, ``kind`` (clean / duplicate / spam), ``copy_of`` (index or None)."""
    from faker import Faker

    if language not in LOCALES:
        raise ValueError(f"unknown language {language!r}; one of {sorted(LOCALES)}")
    rng = random.Random(f"{seed}:{language}")
    fake = Faker(LOCALES[language])
    fake.seed_instance(zlib.crc32(f"{seed}:{language}".encode()))
    docs = []
    for _ in range(n):
        text = "\n\n".join(fake.paragraph(nb_sentences=rng.randint(4, 8)) for _ in range(rng.randint(2, 5)))
        docs.append(dict(text=text, language=language, kind="clean", copy_of=None))
    for k in range(round(duplicates * n)):
        i = rng.randrange(n)
        text = docs[i]["text"]
        if k % 2:
            paragraphs = text.split("\n\n")
            j = rng.randrange(len(paragraphs))
            paragraphs[j] = fake.sentence() + " " + paragraphs[j]
            text = "\n\n".join(paragraphs)
        docs.append(dict(text=text, language=language, kind="duplicate", copy_of=i))
    for _ in range(round(spam * n)):
        sentence = fake.sentence()
        docs.append(dict(text=" ".join([sentence] * rng.randint(12, 20)), language=language, kind="spam",
                         copy_of=None))
    return docs


def char_features(text: str, n: int = 3, max_chars: int = 2000) -> str:
    """``text`` as space-separated hashed character ``n``-grams (spaces marked as ``_``): ``"abc"`` becomes one token
    ``"c1a2b3c4"``, so ``FastText``'s word tokenizer sees character n-grams. Shape: one string of
    ``len(text) - n + 1`` tokens (first ``max_chars`` characters)."""
    s = "_" + "_".join(text.lower()[:max_chars].split()) + "_"
    return " ".join(f"c{zlib.crc32(s[i:i + n].encode()):x}" for i in range(len(s) - n + 1))


def per_language_threshold(values: Mapping[int, float], languages: Mapping[int, str],
                           k: float = 6.0) -> dict[str, float]:
    """Per language: the median plus ``k`` median absolute deviations of ``values`` (a statistic per document id)
    over that language's documents. A document above its language's threshold is filtered."""
    by_lang: dict[str, list[float]] = {}
    for i, v in values.items():
        by_lang.setdefault(languages[i], []).append(v)
    out = {}
    for lang, vs in by_lang.items():
        med = statistics.median(vs)
        mad = statistics.median(abs(v - med) for v in vs) or 1e-3
        out[lang] = med + k * mad
    return out


def language_shares(languages: Sequence[str], sizes: Sequence[int]) -> dict[str, float]:
    """Share of ``sizes`` (characters or tokens) per language label."""
    totals: dict[str, int] = {}
    for lang, size in zip(languages, sizes):
        totals[lang] = totals.get(lang, 0) + size
    total = sum(totals.values()) or 1
    return {lang: v / total for lang, v in sorted(totals.items(), key=lambda kv: -kv[1])}
