"""MinHash + LSH dedup: our batched signatures vs the plain per-document ``datasketch.MinHash.update`` loop.

One run, same documents, JSON out. Documents: page-sized chunks of the offline sources (Wikipedia, news, plays, stdlib
code, maths; ``minillm.data.quality.reference_chunks``) plus planted near-duplicate copies at Jaccard 0.5-1.0
(``edit_to_jaccard``), so precision and recall are measured against known pairs.

Ours: ``minhash_clusters`` (signatures batched with numpy, LSH buckets grouped with numpy). Baseline: one
``datasketch.MinHash`` per document updated shingle by shingle, then a ``datasketch.MinHashLSH`` index. Both use word
5-gram shingles, 112 permutations with datasketch's seed and scheme (the signatures are bit-identical), and the same
union-find clustering. Two settings:

- ``lsh``: FineWeb's 14 bands × 8 rows, no verification (what the S-curve alone gives);
- ``verified``: ``minhash_dedup``'s default (bands picked from the threshold, exact-Jaccard check of candidates).

    python benchmarks/dedup.py --out benchmarks/out/dedup.json            # ~22,000 documents
    python benchmarks/dedup.py --docs 3000 --out /tmp/dedup_small.json    # smoke test

docs/s and MB/s are over the whole dedup (signatures + LSH + clustering); ``signature_speedup`` is the ratio of the
signature step alone. The machine is shared: run it twice and compare before quoting a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minillm.data.minhash import (jaccard, minhash_clusters, minhash_signatures,  # noqa: E402
                                  minhash_signatures_reference)
from minillm.data.plants import edit_to_jaccard  # noqa: E402
from minillm.data.quality import reference_chunks  # noqa: E402


def make_documents(n_docs: int, seed: int = 0) -> tuple[list[str], dict[int, tuple[int, float]]]:
    """``n_docs`` texts: ~90% source chunks, ~10% planted copies; ``{copy: (origin, exact jaccard)}``."""
    rng = random.Random(seed)
    n_copies = n_docs // 10
    chunks = [text for _, text in reference_chunks(per_source=n_docs, seed=seed, words=(60, 200))]
    rng.shuffle(chunks)
    originals = chunks[: n_docs - n_copies]
    if len(originals) < n_docs - n_copies:
        raise SystemExit(f"the sources give only {len(originals)} chunks; ask for fewer --docs")
    texts, planted = list(originals), {}
    for k in range(n_copies):
        origin = rng.randrange(len(originals))
        copy, j = edit_to_jaccard(originals[origin], rng.uniform(0.5, 1.0), rng)
        planted[len(texts)] = (origin, j)
        texts.append(copy)
    order = list(range(len(texts)))
    rng.shuffle(order)
    position = {old: new for new, old in enumerate(order)}
    return [texts[i] for i in order], {position[c]: (position[o], j) for c, (o, j) in planted.items()}


def score(labels: np.ndarray, planted: dict[int, tuple[int, float]], texts: list[str], threshold: float) -> dict:
    """Recall over planted pairs at Jaccard >= threshold; precision of the removed documents (a removed document is
    right when its exact Jaccard with the kept document of its cluster, or with its planted partner, is >= 0.7)."""
    at = [(c, o) for c, (o, j) in planted.items() if j >= threshold]
    recall = sum(labels[c] == labels[o] for c, o in at) / len(at)
    partner = {}
    for c, (o, _) in planted.items():
        partner.setdefault(c, set()).add(o)
        partner.setdefault(o, set()).add(c)
    removed = [i for i in range(len(labels)) if labels[i] != i]
    right = 0
    for i in removed:
        in_cluster = [p for p in partner.get(i, ()) if labels[p] == labels[i]]
        if any(jaccard(texts[i], texts[p]) >= 0.7 for p in in_cluster) or jaccard(texts[i], texts[labels[i]]) >= 0.7:
            right += 1
    return dict(recall=recall, precision=right / len(removed) if removed else 1.0, removed=len(removed),
                planted_pairs_at_threshold=len(at))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=22_000)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/out/dedup.json")
    args = parser.parse_args()

    texts, planted = make_documents(args.docs, args.seed)
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"{len(texts)} documents, {megabytes:.1f} MB, {len(planted)} planted copies")

    ours_sig, t_ours_sig = timed(lambda: minhash_signatures(texts))
    ref_sig, t_ref_sig = timed(lambda: minhash_signatures_reference(texts))
    results = dict(documents=len(texts), megabytes=round(megabytes, 2),
                   identical_signatures=bool(np.array_equal(ours_sig, ref_sig)),
                   signature_seconds=dict(ours=round(t_ours_sig, 2), datasketch=round(t_ref_sig, 2)),
                   signature_speedup=round(t_ref_sig / t_ours_sig, 2), settings={})
    for name, kwargs in (("lsh", dict(bands=14, verify=False)), ("verified", dict(bands=None, verify=True))):
        ours, t_ours = timed(lambda: minhash_clusters(texts, args.threshold, **kwargs))
        theirs, t_rest = timed(lambda: minhash_clusters(texts, args.threshold, signatures=ref_sig,
                                                        backend="datasketch", **kwargs))
        t_theirs = t_ref_sig + t_rest  # the loop's signatures, then a datasketch MinHashLSH index, same clustering
        row = {}
        for label, labels, seconds in (("ours", ours, t_ours), ("datasketch_loop", theirs, t_theirs)):
            row[label] = dict(seconds=round(seconds, 2), docs_per_s=round(len(texts) / seconds, 1),
                              mb_per_s=round(megabytes / seconds, 3), **score(labels, planted, texts, args.threshold))
        row["speedup"] = round(t_theirs / t_ours, 2)
        row["same_clusters"] = bool(np.array_equal(ours, theirs))
        results["settings"][name] = row
        print(f"[{name}] ours {row['ours']['docs_per_s']:.0f} docs/s {row['ours']['mb_per_s']:.2f} MB/s  "
              f"datasketch loop {row['datasketch_loop']['docs_per_s']:.0f} docs/s "
              f"{row['datasketch_loop']['mb_per_s']:.2f} MB/s  speedup {row['speedup']:.2f}x  same clusters "
              f"{row['same_clusters']}  recall {row['ours']['recall']:.3f}/{row['datasketch_loop']['recall']:.3f}  "
              f"precision {row['ours']['precision']:.3f}/{row['datasketch_loop']['precision']:.3f}")
    print(f"signatures: ours {t_ours_sig:.1f} s, datasketch loop {t_ref_sig:.1f} s "
          f"({results['signature_speedup']:.1f}x), identical {results['identical_signatures']}")
    results.update(machine=dict(platform=platform.platform(), cpus=os.cpu_count(), python=platform.python_version()),
                   command=" ".join(sys.argv))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
