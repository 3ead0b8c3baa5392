"""Document-level fuzzy deduplication: MinHash signatures + LSH banding (report §3.1.1, "De-duplication").

The report: "we perform global MinHash (Broder, 1997) de-duplication across the entire dataset to remove near duplicate
documents". A document is the set of its word ``ngram``-shingles; two documents are near duplicates when the Jaccard
similarity ``|A ∩ B| / |A ∪ B|`` of their shingle sets is at least ``threshold`` (FineWeb: 5-grams, 112 permutations in
14 bands × 8 rows).

How it works, in three steps:

1. **Signatures.** ``num_perm`` hash permutations ``π_k``; the signature of ``A`` holds ``min_{s∈A} π_k(s)`` for each
   ``k``. ``P[min π_k(A) = min π_k(B)] = J(A, B)``, so the fraction of equal entries estimates the Jaccard similarity.
   ``minhash_signatures`` computes them for many documents at once with numpy and gives *bit-identical* values to
   ``datasketch.MinHash`` (default ``affine32`` scheme: SHA-1 of each shingle, MurmurHash3 finalizer, ``a·h + b`` mod
   2^32); ``minhash_signatures_reference`` is the plain per-document ``MinHash.update`` loop, kept for tests and the
   benchmark.
2. **LSH.** Cut signatures into ``bands`` of ``rows`` values; documents that agree on a whole band become candidates.
   A pair of similarity ``s`` is a candidate with probability ``1 - (1 - s^rows)^bands`` (the S-curve,
   ``candidate_probability``). The buckets are found with numpy (``np.unique`` over each band's bytes) or, as the
   reference, with a ``datasketch.MinHashLSH`` index; both give the same pairs.
3. **Verification and clusters.** Each candidate pair is kept only if its exact shingle-set Jaccard is ``>= threshold``
   (``verify=True``; the hashed shingle sets are at hand), then union-find makes clusters and the first document of each
   cluster is kept. With verification the S-curve only has to be *high* at ``threshold``, so ``bands=None`` picks the
   most rows per band that still flag a pair at ``threshold`` with probability >= 0.995.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
from datasketch import MinHash, MinHashLSH

_M1, _M2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)  # MurmurHash3 fmix32 multipliers (datasketch's pre-mix)


def check_documents(texts, what: str = "texts") -> None:
    """``TypeError`` unless ``texts`` is a sequence of strings: a plain string would be taken for a list of
    one-character documents and "deduplicated" character by character."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of documents (e.g. a list of str), got a single "
                        f"{type(texts).__name__} of length {len(texts)}: wrap it in a list")
    if not hasattr(texts, "__len__") or not hasattr(texts, "__getitem__"):
        raise TypeError(f"{what} must be a sequence of documents (e.g. a list of str), got {type(texts).__name__}: "
                        f"materialise an iterator with list(...)")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] must be a str (one document), got {type(text).__name__}")


def shingles(text: str, ngram: int = 5) -> list[str]:
    """Word ``ngram``-shingles of ``text`` (whitespace-split, lower-cased); one shingle for shorter texts."""
    words = text.lower().split()
    if len(words) <= ngram:
        return [" ".join(words)] if words else []
    return list(map(" ".join, zip(*(words[i:] for i in range(ngram)))))


def jaccard(a: str, b: str, ngram: int = 5) -> float:
    """Exact Jaccard similarity of the word-shingle sets of two texts (1.0 for two empty texts)."""
    sa, sb = set(shingles(a, ngram)), set(shingles(b, ngram))
    return 1.0 if not sa and not sb else len(sa & sb) / len(sa | sb)


def shingle_hashes(text: str, ngram: int = 5) -> np.ndarray:
    """32-bit SHA-1 hashes of the shingles of ``text`` (datasketch's ``sha1_hash32``), shape ``(num_shingles,)``.

    The one per-shingle Python step left; ``map`` keeps it in C as far as possible."""
    digests = map(hashlib.sha1, map(str.encode, shingles(text, ngram)))
    return np.frombuffer(b"".join([d.digest()[:4] for d in digests]), dtype="<u4").astype(np.uint32)


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``affine32`` permutation parameters ``(a, b)``, each shape ``(num_perm,)`` uint32."""
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, elementwise (uint32 arithmetic wraps, as intended)."""
    h = h ^ (h >> np.uint32(16))
    h = h * _M1
    h = h ^ (h >> np.uint32(13))
    h = h * _M2
    return h ^ (h >> np.uint32(16))


def signatures_from_hashes(hashes: Sequence[np.ndarray], num_perm: int = 112, seed: int = 1,
                           chunk: int = 1 << 16) -> np.ndarray:
    """MinHash signatures from per-document shingle hashes: ``(num_docs, num_perm)`` uint32.

    All shingles of all documents are permuted in one ``(chunk, num_perm)`` matrix at a time, then reduced to a minimum
    per document with ``np.minimum.reduceat``. Documents without shingles get the all-``2^32-1`` (empty) signature.
    """
    a, b = _permutations(num_perm, seed)
    out = np.full((len(hashes), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    lengths = np.array([len(h) for h in hashes], dtype=np.int64)
    nonempty = np.flatnonzero(lengths)
    if len(nonempty) == 0:
        return out
    flat = _fmix32(np.concatenate([hashes[i] for i in nonempty]))        # (S,) all shingles, document after document
    starts = np.concatenate([[0], np.cumsum(lengths[nonempty])[:-1]])   # (D',) first shingle of each document
    # process documents in groups whose shingles fit in ``chunk`` rows (a single long document may exceed it)
    group_start = 0
    while group_start < len(nonempty):
        first = starts[group_start]
        group_end = int(np.searchsorted(starts, first + chunk, side="right"))
        group_end = max(group_end, group_start + 1)
        last = starts[group_end] if group_end < len(nonempty) else len(flat)
        permuted = flat[first:last, None] * a[None, :] + b[None, :]       # (S_group, num_perm), mod 2^32
        out[nonempty[group_start:group_end]] = np.minimum.reduceat(permuted, starts[group_start:group_end] - first,
                                                                   axis=0)
        group_start = group_end
    return out


def minhash_signatures(texts: Sequence[str], num_perm: int = 112, ngram: int = 5, seed: int = 1) -> np.ndarray:
    """Batched MinHash signatures of ``texts``: ``(len(texts), num_perm)`` uint32, equal to datasketch's."""
    check_documents(texts)
    return signatures_from_hashes([shingle_hashes(t, ngram) for t in texts], num_perm, seed)


def minhash_signatures_reference(texts: Sequence[str], num_perm: int = 112, ngram: int = 5,
                                 seed: int = 1) -> np.ndarray:
    """The plain loop: one ``datasketch.MinHash`` per document, ``update`` once per shingle. Shape as above."""
    check_documents(texts)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=seed)
        for s in shingles(text, ngram):
            m.update(s.encode("utf-8"))
        out[i] = m.hashvalues
    return out


def candidate_probability(similarity, bands: int, rows: int):
    """The LSH S-curve: probability that a pair of Jaccard ``similarity`` shares at least one band."""
    return 1.0 - (1.0 - np.asarray(similarity, dtype=float) ** rows) ** bands


def lsh_params(threshold: float, num_perm: int, bands: int | None = None, recall_at_threshold: float = 0.995):
    """``(bands, rows)``: ``rows = num_perm // bands`` when ``bands`` is given, else the most rows per band whose
    S-curve still reaches ``recall_at_threshold`` at ``threshold`` (18 × 6 for 0.8 and 112 permutations)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    if bands is not None:
        if not 1 <= bands <= num_perm:
            raise ValueError(f"bands must be in [1, num_perm={num_perm}], got {bands}")
        return bands, num_perm // bands
    for rows in range(num_perm, 0, -1):
        if candidate_probability(threshold, num_perm // rows, rows) >= recall_at_threshold:
            return num_perm // rows, rows
    return num_perm, 1


def candidate_pairs(signatures: np.ndarray, bands: int, rows: int, backend: str = "numpy",
                    seed: int = 1) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, whose signatures are equal on at least one band of ``rows`` values.

    ``backend="numpy"`` groups each band's ``(N, rows)`` block by its bytes with ``np.unique``;
    ``backend="datasketch"`` inserts every document into a ``datasketch.MinHashLSH`` and reads its hash tables bucket
    by bucket. Both give the same pairs (tested); numpy is several times faster.
    """
    if backend == "datasketch":
        return _candidate_pairs_datasketch(signatures, bands, rows, seed)
    if backend != "numpy":
        raise ValueError(f"backend must be 'numpy' or 'datasketch', got {backend!r}")
    pairs = set()
    for b in range(bands):
        block = np.ascontiguousarray(signatures[:, b * rows:(b + 1) * rows])       # (N, rows) uint32
        keys = block.view(np.dtype((np.void, 4 * rows))).ravel()                  # (N,) one bytes key per document
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        shared = np.flatnonzero(counts[inverse] > 1)                              # documents in a bucket of >= 2
        if len(shared) == 0:
            continue
        order = shared[np.argsort(inverse[shared], kind="stable")]                # grouped by bucket, index order
        starts = np.flatnonzero(np.diff(inverse[order], prepend=-1))
        for bucket in np.split(order, starts[1:]):
            ids = bucket.tolist()
            pairs.update((a, c) for k, a in enumerate(ids) for c in ids[k + 1:])
    return pairs


def _candidate_pairs_datasketch(signatures: np.ndarray, bands: int, rows: int, seed: int) -> set[tuple[int, int]]:
    num_perm = signatures.shape[1]
    lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))
    permutations = np.stack(_permutations(num_perm, seed))
    with lsh.insertion_session() as session:
        for i, sig in enumerate(signatures):
            m = MinHash(num_perm=num_perm, hashvalues=sig, permutations=permutations, scheme="affine32")
            session.insert(i, m, check_duplication=False)
    pairs = set()
    for table in lsh.hashtables:
        for key in table.keys():
            bucket = table.get(key)
            if len(bucket) > 1:
                bucket = sorted(bucket)
                pairs.update((a, c) for k, a in enumerate(bucket) for c in bucket[k + 1:])
    return pairs


def _exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique hash arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def minhash_clusters(texts: Sequence[str], threshold: float = 0.8, num_perm: int = 112, ngram: int = 5,
                     bands: int | None = None, verify: bool = True, signatures: np.ndarray | None = None,
                     backend: str = "numpy", seed: int = 1) -> np.ndarray:
    """Cluster label of each text: the index of the first text of its near-duplicate cluster, shape ``(len(texts),)``.

    ``signatures``: precomputed ``(len(texts), num_perm)`` values (e.g. from ``minhash_signatures_reference``), so
    different signature code paths share the LSH and clustering steps. ``backend``: see ``candidate_pairs``.
    """
    check_documents(texts)
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    bands, rows = lsh_params(threshold, num_perm, bands)
    hashes = [np.unique(shingle_hashes(t, ngram)) for t in texts] if verify or signatures is None else None
    if signatures is None:
        signatures = signatures_from_hashes(hashes, num_perm, seed)
    if signatures.shape != (len(texts), num_perm):
        raise ValueError(f"signatures must have shape ({len(texts)}, {num_perm}), got {signatures.shape}")
    parent = np.arange(len(texts))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in sorted(candidate_pairs(signatures, bands, rows, backend, seed)):
        if verify and _exact_jaccard(hashes[i], hashes[j]) < threshold:
            continue
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)  # the smaller index stays the root: "keep the first of each cluster"
    return np.array([root(i) for i in range(len(texts))], dtype=np.int64)


def minhash_dedup(texts: Sequence[str], threshold: float = 0.8, num_perm: int = 112, ngram: int = 5,
                  bands: int | None = None, verify: bool = True) -> list[int]:
    """Indices of the texts to keep: the first of each near-duplicate cluster, in increasing order.

    ``threshold``: Jaccard similarity of word ``ngram``-shingle sets at which two documents are duplicates;
    ``bands``: LSH bands (``num_perm // bands`` rows each; FineWeb uses 14 for 112 permutations), ``None`` picks them
    from ``threshold`` (see ``lsh_params``); ``verify``: confirm each LSH candidate with the exact Jaccard.
    """
    labels = minhash_clusters(texts, threshold, num_perm, ngram, bands, verify)
    return [i for i, label in enumerate(labels) if label == i]
