"""Contamination by 8-gram overlap: hashing agrees with exact n-gram sets, coverage with a brute-force count, and
planted overlaps are found while fresh examples are not."""

import numpy as np
import pytest

from minillm.eval.contamination import (NgramIndex, contamination_report, ngram_hashes, performance_gain, word_ids)


def _brute_coverage(train_streams, tokens, n):
    grams = {tuple(s[i:i + n]) for s in train_streams for i in range(len(s) - n + 1)}
    hit = [False] * len(tokens)
    for i in range(len(tokens) - n + 1):
        if tuple(tokens[i:i + n]) in grams:
            for j in range(i, i + n):
                hit[j] = True
    return sum(hit) / len(tokens) if tokens else 0.0


def test_hashes_agree_with_exact_ngram_identity():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 5, 20_000).tolist()                            # small alphabet: many repeats
    h = ngram_hashes(tokens, 4)
    grams = [tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3)]
    assert len(h) == len(grams)
    assert len(set(h.tolist())) == len(set(grams))                          # no collision, no split
    first = {}
    for g, x in zip(grams, h.tolist()):
        assert first.setdefault(g, x) == x
    assert len(ngram_hashes([1, 2], 8)) == 0


def test_coverage_equals_a_brute_force_count():
    rng = np.random.default_rng(1)
    train = [rng.integers(0, 4, 300).tolist() for _ in range(3)]
    index = NgramIndex(train, n=5)
    for _ in range(30):
        ex = rng.integers(0, 4, int(rng.integers(1, 40))).tolist()
        assert index.coverage(ex) == pytest.approx(_brute_coverage(train, ex, 5))


def test_planted_copies_are_flagged_and_fresh_examples_are_not():
    rng = np.random.default_rng(2)
    train = [rng.integers(0, 8000, 5000).tolist() for _ in range(20)]
    index = NgramIndex(train, n=8)
    copied = [train[i % 20][100 * i:100 * i + 30] for i in range(20)]       # leaked verbatim
    partial = [rng.integers(0, 8000, 11).tolist() + train[3][7:15] + rng.integers(0, 8000, 11).tolist()]
    fresh = [rng.integers(0, 8000, 30).tolist() for _ in range(20)]
    rep = contamination_report(index, copied + fresh, threshold=0.5)
    assert rep.contaminated.tolist() == [True] * 20 + [False] * 20
    assert rep.rate == 0.5 and (rep.scores[:20] == 1).all() and (rep.scores[20:] == 0).all()
    assert index.coverage(partial[0]) == pytest.approx(8 / 30)              # exactly the planted 8-gram


def test_ngrams_do_not_cross_document_boundaries():
    index = NgramIndex([[1, 2, 3], [4, 5, 6]], n=4)
    assert len(index) == 0 and index.coverage([2, 3, 4, 5]) == 0.0


def test_word_ids_are_case_insensitive_and_shared_through_the_vocabulary():
    vocab: dict[str, int] = {}
    a = word_ids("The cat, the CAT!", vocab)
    b = word_ids("cat the dog", vocab)
    assert a == [0, 1, 0, 1] and b == [1, 0, 2]


def test_performance_gain_is_accuracy_on_all_minus_accuracy_on_clean():
    out = performance_gain([1, 1, 1, 0, 1, 0], [True, True, False, False, False, False])
    assert out["acc_all"] == pytest.approx(4 / 6) and out["acc_clean"] == pytest.approx(2 / 4)
    assert out["acc_dirty"] == 1.0 and out["gain"] == pytest.approx(4 / 6 - 2 / 4)
    assert (out["n_clean"], out["n_dirty"]) == (4, 2)
