"""Model-based quality filtering (report §3.1.1, "Model-based quality filtering").

The report trains fast classifiers (fastText, and Roberta-based ones on Llama 2 annotations) to recognise text that is
worth training on. Offline we have no Llama 2 annotator, so we *make* the labels: ``high`` = chunks of the reference
sources (Wikipedia, news, plays, code, maths: the kind of text a quality classifier is meant to recognise), ``low`` =
generated junk of the kinds a crawl is full of (word-salad pages with SEO phrases, log spam, garbage tokens), built with
a different seed from the crawl's. The positives come from the same packages as the crawl's clean pages, so its
precision on our crawl is optimistic: a real crawl's low-quality pages are far more varied than our generators.
"""

from __future__ import annotations

import random

from minillm.data import plants
from minillm.data.classifier import FastText, FastTextConfig, train_fasttext
from minillm.data.crawl import DOMAIN_OF_SOURCE, SHARE, _chunks
from minillm.data.sources import SOURCES, available_sources, math_problems

QUALITY_CLASSES = ("high", "low")


def reference_chunks(per_source: int, seed: int = 1, words: tuple[int, int] = (120, 500),
                     sources: list[str] | None = None) -> list[tuple[str, str]]:
    """``(source, text)``: up to ``per_source`` page-sized chunks of each available source (seeded)."""
    rng = random.Random(seed)
    out = []
    for name in sources or [n for n in available_sources() if n in SHARE]:
        if name == "math":
            per_page = max(1, words[0] // 30)
            problems = [d.text for d in math_problems(limit=per_source * per_page, seed=seed + 1000)]
            pieces = ["\n\n".join(problems[i:i + per_page]) for i in range(0, len(problems), per_page)]
        else:
            docs = list(SOURCES[name](seed=seed))
            pieces = []
            for doc in docs:
                pieces += _chunks(doc.text, *words, rng, code=name == "python_code")
                if len(pieces) > 4 * per_source:
                    break
            rng.shuffle(pieces)
        out += [(name, p) for p in pieces[:per_source]]
    return out


def quality_training_set(per_class: int = 300, seed: int = 1) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` with labels ``high``/``low`` (see the module docstring), ``per_class`` of each."""
    from faker import Faker

    rng = random.Random(seed)
    faker = Faker("en_US")
    faker.seed_instance(seed + 7)
    sources = [n for n in available_sources() if n in SHARE]
    high = [text for _, text in reference_chunks(-(-per_class // max(1, len(sources))), seed, sources=sources)]
    low = []
    for i in range(per_class):
        r = i % 6
        low.append(plants.spam_page(rng) if r == 4 else plants.garbage_page(rng) if r == 5
                   else plants.low_quality_page(faker, rng))
    texts, labels = high[:per_class] + low, ["high"] * len(high[:per_class]) + ["low"] * len(low)
    return texts, labels


def train_quality_classifier(per_class: int = 300, seed: int = 1,
                             config: FastTextConfig = FastTextConfig()) -> FastText:
    """A ``FastText`` with classes ``("high", "low")``; ``predict_proba(texts)[:, 0]`` is the quality score."""
    texts, labels = quality_training_set(per_class, seed)
    return train_fasttext(texts, labels, QUALITY_CLASSES, config, seed)


def domain_training_set(per_source: int = 150, seed: int = 2) -> tuple[list[str], list[str]]:
    """``(texts, domains)``: chunks of each source labelled with its domain (``DOMAIN_OF_SOURCE``)."""
    pairs = reference_chunks(per_source, seed)
    return [text for _, text in pairs], [DOMAIN_OF_SOURCE[source] for source, _ in pairs]
