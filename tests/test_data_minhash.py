"""MinHash + LSH dedup: batched signatures equal datasketch's, clusters follow the Jaccard threshold."""

import random

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from minillm.data.minhash import (candidate_pairs, candidate_probability, jaccard, lsh_params, minhash_clusters,
                                  minhash_dedup, minhash_signatures, minhash_signatures_reference, shingle_hashes,
                                  shingles, signatures_from_hashes)
from minillm.data.line_dedup import line_dedup
from minillm.data.plants import edit_to_jaccard

WORDS = [f"w{i}" for i in range(5000)]


def _doc(rng, n=200):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def test_batched_signatures_are_bit_identical_to_the_datasketch_update_loop():
    rng = random.Random(0)
    texts = [_doc(rng, rng.randint(1, 300)) for _ in range(40)] + ["", "one", "a b c d e f"]
    ours = minhash_signatures(texts, num_perm=112)
    assert ours.shape == (len(texts), 112) and ours.dtype == np.uint32
    np.testing.assert_array_equal(ours, minhash_signatures_reference(texts, num_perm=112))
    # small chunks (documents split across chunk boundaries) give the same values
    np.testing.assert_array_equal(signatures_from_hashes([shingle_hashes(t) for t in texts], 112, chunk=50), ours)


def test_signature_agreement_estimates_jaccard():
    rng = random.Random(1)
    base = _doc(rng, 400)
    for target in (0.3, 0.6, 0.9):
        copy, j = edit_to_jaccard(base, target, rng)
        sig = minhash_signatures([base, copy], num_perm=256)
        estimate = (sig[0] == sig[1]).mean()
        assert abs(estimate - j) < 4 * np.sqrt(j * (1 - j) / 256) + 0.02


def test_lsh_params_reach_the_requested_recall_and_fineweb_setting():
    assert lsh_params(0.8, 112, bands=14) == (14, 8)
    bands, rows = lsh_params(0.8, 112)
    assert bands * rows <= 112 and candidate_probability(0.8, bands, rows) >= 0.995
    assert candidate_probability(0.8, 112 // (rows + 1), rows + 1) < 0.995  # the most rows that still reach it
    with pytest.raises(ValueError, match="threshold"):
        lsh_params(0.0, 112)
    with pytest.raises(ValueError, match="bands"):
        lsh_params(0.8, 112, bands=200)


def test_s_curve_matches_the_formula_on_random_signatures():
    # two signatures that agree on each entry with probability s: P(some band all equal) = 1 - (1 - s^r)^b
    rng = np.random.default_rng(0)
    bands, rows, s, trials = 14, 8, 0.8, 4000
    agree = rng.random((trials, bands, rows)) < s
    measured = agree.all(-1).any(-1).mean()
    assert abs(measured - candidate_probability(s, bands, rows)) < 0.02


def test_dedup_keeps_the_first_of_each_cluster_and_separates_by_jaccard():
    rng = random.Random(2)
    originals = [_doc(rng, 300) for _ in range(30)]
    texts, dup_of, sims = list(originals), {}, {}
    for k, origin in enumerate(originals[:20]):
        target = 0.9 if k < 10 else 0.4
        copy, j = edit_to_jaccard(origin, target, rng)
        dup_of[len(texts)], sims[len(texts)] = k, j
        texts.append(copy)
    keep = minhash_dedup(texts, threshold=0.8)
    expected = [i for i in range(len(texts)) if not (i in dup_of and sims[i] >= 0.8)]
    assert keep == expected
    labels = minhash_clusters(texts, threshold=0.8)
    assert all(labels[i] == dup_of[i] for i in dup_of if sims[i] >= 0.8)


def test_same_clusters_from_the_plain_datasketch_path_as_from_the_batched_one():
    rng = random.Random(3)
    texts = [_doc(rng, 150) for _ in range(20)] + ["", ""]
    texts += [edit_to_jaccard(t, rng.uniform(0.5, 0.95), rng)[0] for t in texts[:15]]
    reference = minhash_clusters(texts, signatures=minhash_signatures_reference(texts), verify=False, bands=14,
                                 backend="datasketch")
    np.testing.assert_array_equal(minhash_clusters(texts, verify=False, bands=14), reference)


@pytest.mark.parametrize("bands, rows", [(14, 8), (18, 6), (56, 2)])
def test_numpy_banding_finds_the_same_candidates_as_datasketch_minhashlsh(bands, rows):
    rng = np.random.default_rng(bands)
    signatures = rng.integers(0, 4, size=(60, bands * rows), dtype=np.uint32)  # few values: many shared bands
    assert candidate_pairs(signatures, bands, rows) == candidate_pairs(signatures, bands, rows, "datasketch")
    with pytest.raises(ValueError, match="backend"):
        candidate_pairs(signatures, bands, rows, "faiss")


def test_verified_clusters_agree_with_a_plain_datasketch_lsh_index():
    """Independent path: datasketch MinHash objects + MinHashLSH queried directly, exact Jaccard check by hand."""
    rng = random.Random(4)
    texts = [_doc(rng, 200) for _ in range(15)]
    texts += [edit_to_jaccard(t, 0.88, rng)[0] for t in texts[:8]]
    lsh = MinHashLSH(num_perm=112, params=lsh_params(0.8, 112))
    removed = set()
    for i, text in enumerate(texts):
        m = MinHash(num_perm=112)
        for s in shingles(text):
            m.update(s.encode())
        if any(jaccard(texts[j], text) >= 0.8 for j in lsh.query(m)):
            removed.add(i)
        lsh.insert(i, m)
    assert minhash_dedup(texts) == [i for i in range(len(texts)) if i not in removed]


def test_empty_and_tiny_documents_do_not_break_dedup():
    assert minhash_dedup([]) == []
    assert minhash_dedup(["", "", "x"]) == [0, 2]
    assert shingles("a b") == ["a b"] and shingles("") == []


@pytest.mark.parametrize("dedup", [minhash_dedup, minhash_clusters, minhash_signatures, minhash_signatures_reference,
                                   line_dedup])
def test_a_plain_string_is_a_type_error_not_a_list_of_one_character_documents(dedup):
    with pytest.raises(TypeError, match="texts must be a sequence of documents.*single str of length 14.*list"):
        dedup("a plain string")


@pytest.mark.parametrize("texts, match", [([b"bytes doc"], r"texts\[0\] must be a str"),
                                          (["ok", 3], r"texts\[1\] must be a str"),
                                          ((t for t in ["a", "b"]), "list\\(...\\)")])
def test_documents_that_are_not_strings_raise_naming_the_index(texts, match):
    with pytest.raises(TypeError, match=match):
        minhash_dedup(texts)
