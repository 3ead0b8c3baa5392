"""A cloze benchmark generated offline from the curated corpus: MMLU-style questions with 4 options (report §5.1).

We have no MMLU offline, so we make a multiple-choice test the same shape from our own held-out text. A question is
a sentence of a held-out document with one word blanked out; the options are the true word and three *distractors*,
other words of the corpus with about the same frequency (so "pick the common word" does not win), each followed by
the rest of the sentence:

    prompt : "...preceding text. The king sent his"
    options: [" army to the north.", " basket to the north.", " sermon to the north.", " ladder to the north."]

Scored by log-likelihood (``choice.py``; the headline is ``acc``, the summed log-likelihood: the options differ in
one word only). Chance is 25%. Everything is a
pure function of the documents and the seed, so the benchmark is the same on every machine.

``split_documents`` decides which documents are held out: a hash of ``(seed, document id)``, so the split does not
depend on the order of the corpus and a document never moves between splits when others are added.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from typing import Sequence

from minillm.eval.choice import ChoiceItem

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]")                   # a run of text ending in . ! or ?, on one line
_WORD = re.compile(r"\b[a-z]{4,}\b")                            # candidate blanks and distractors: lowercase words


def is_held_out(doc_id, fraction: float, seed: int = 0) -> bool:
    """Whether document ``doc_id`` is in the held-out split (a stable hash, ``fraction`` of documents)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"held-out fraction must lie in [0, 1], got {fraction}")
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_documents(docs: Sequence[dict], fraction: float = 0.05, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``(train, held_out)``: corpus documents (dicts with an ``id``) split by ``is_held_out``, order kept."""
    train, held = [], []
    for doc in docs:
        (held if is_held_out(doc["id"], fraction, seed) else train).append(doc)
    return train, held


def word_counts(texts: Sequence[str]) -> Counter:
    """Counts of lowercase words of 4+ letters (the distractor vocabulary)."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(_WORD.findall(text))
    return counts


def cloze_benchmark(docs: Sequence[dict], vocabulary: Counter, n_items: int, seed: int = 0, n_options: int = 4,
                    context_chars: int = 300, min_count: int = 3, band: int = 50,
                    per_doc: int = 3) -> list[ChoiceItem]:
    """Up to ``n_items`` cloze questions from ``docs`` (dicts with ``id`` and ``text``; the held-out split).

    Each question blanks one lowercase word (4+ letters, seen ``>= min_count`` times in ``vocabulary``, not among the
    first three words of its sentence) and draws ``n_options - 1`` distractors among the ``band`` words ranked
    nearest to it by frequency that do not occur in the sentence. The prompt is up to ``context_chars`` characters
    of the document before the blank. At most ``per_doc`` questions (from different sentences) per document,
    documents in a seeded random order.
    """
    if n_options < 2:
        raise ValueError(f"n_options must be >= 2, got {n_options}")
    ranked = [w for w, c in sorted(vocabulary.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_count]
    rank = {w: i for i, w in enumerate(ranked)}
    if len(ranked) < 2 * band:
        raise ValueError(f"the vocabulary has {len(ranked)} words seen >= {min_count} times; cloze distractors need "
                         f"at least {2 * band}: pass word_counts of more text or lower min_count/band")
    order = sorted(range(len(docs)), key=lambda i: hashlib.sha256(f"{seed}:{docs[i]['id']}".encode()).digest())
    items = []
    for i in order:
        if len(items) >= n_items:
            break
        doc = docs[i]
        rng = random.Random(f"cloze:{seed}:{doc['id']}")                    # str seeds are stable across runs
        sentences = [m for m in _SENTENCE.finditer(doc["text"]) if len(m.group().split()) >= 8]
        rng.shuffle(sentences)
        taken = 0
        for sentence in sentences:
            if taken >= per_doc or len(items) >= n_items:
                break
            text = sentence.group()
            blanks = [m for m in _WORD.finditer(text) if m.group() in rank and text[m.start() - 1] == " "
                      and len(text[:m.start()].split()) >= 3]
            if not blanks:
                continue
            blank = rng.choice(blanks)
            word, r = blank.group(), rank[blank.group()]
            present = set(_WORD.findall(text.lower()))
            nearby = [w for w in ranked[max(0, r - band // 2): r + band // 2 + 1] if w not in present]
            if len(nearby) < n_options - 1:
                continue
            distractors = rng.sample(nearby, n_options - 1)
            start = sentence.start() + blank.start()                        # the blank, in document coordinates
            prompt = doc["text"][max(0, start - context_chars):start].rstrip(" ")
            rest = text[blank.end():]
            options = [" " + w + rest for w in [word, *distractors]]
            rng.shuffle(options)
            items.append(ChoiceItem(prompt, tuple(options), options.index(" " + word + rest),
                                    id=f"cloze:{doc['id']}:{start}"))
            taken += 1
    return items


def cloze_distractors(item: ChoiceItem, vocabulary: Counter, k: int, min_count: int = 3, band: int = 50) -> list[str]:
    """``k`` more options for a ``cloze_benchmark`` item: words ranked near its answer by frequency in ``vocabulary``
    (as the benchmark drew its distractors), not already an option and not in the prompt's last sentence, each
    followed by the rest of the sentence. Seeded by the item's id. Used with ``mmlu.add_options`` (MMLU-Pro)."""
    answer = item.options[item.answer]
    word = re.match(r"\s*([a-z]+)", answer).group(1)                      # " army to the north." -> "army"
    rest = answer[len(" " + word):]
    ranked = [w for w, c in sorted(vocabulary.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_count]
    if word not in ranked:
        raise ValueError(f"the answer {word!r} of item {item.id!r} is not in the vocabulary (seen >= {min_count} "
                         f"times); pass the word_counts the benchmark was built from")
    r = ranked.index(word)
    taken = {re.match(r"\s*([a-z]*)", o).group(1) for o in item.options}
    sentence = re.split(r"[.!?\n]", item.prompt)[-1] + rest
    present = set(_WORD.findall(sentence.lower()))
    nearby = [w for w in ranked[max(0, r - band): r + band + 1] if w not in taken and w not in present]
    if len(nearby) < k:
        raise ValueError(f"only {len(nearby)} distractors within {band} ranks of {word!r}; widen band")
    return [" " + w + rest for w in random.Random(f"cloze_distractors:{item.id}").sample(nearby, k)]
