"""Line-level de-duplication inside buckets of documents (report §3.1.1, "De-duplication").

The report: "we perform aggressive line-level de-duplication similar to ccNet (Wenzek et al., 2019). We remove lines
that appeared more than 6 times in each bucket of 30M documents." It removes navigation menus and cookie warnings,
"but also frequent high-quality text" (a speaker's name in a play, ``return None`` in code); the report found the
trade worth it. A line is compared after normalisation (lower case, whitespace collapsed); empty lines are kept.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

from minillm.data.minhash import check_documents

_SPACE = re.compile(r"\s+")


def normalize_line(line: str) -> str:
    """The key a line is counted under: lower-cased, whitespace collapsed and stripped."""
    return _SPACE.sub(" ", line).strip().lower()


def line_counts(texts: Sequence[str]) -> Counter:
    """How many of ``texts`` contain each normalised non-empty line (a line repeated inside one text counts once)."""
    counts: Counter = Counter()
    for text in texts:
        counts.update({normalize_line(line) for line in text.split("\n")} - {""})
    return counts


def line_dedup(texts: Sequence[str], max_repeats: int = 6, bucket_size: int = 30_000_000) -> list[str]:
    """``texts`` with every line removed that occurs in more than ``max_repeats`` texts of its bucket.

    Buckets are consecutive runs of ``bucket_size`` texts (shuffle first if order carries meaning). Shapes: a list of
    ``N`` strings in, ``N`` strings out (a text may become empty).
    """
    check_documents(texts)
    if max_repeats < 1:
        raise ValueError(f"max_repeats must be >= 1, got {max_repeats}")
    if bucket_size < 1:
        raise ValueError(f"bucket_size must be >= 1, got {bucket_size}")
    out: list[str] = []
    for start in range(0, len(texts), bucket_size):
        bucket = texts[start:start + bucket_size]
        counts = line_counts(bucket)
        for text in bucket:
            lines = [line for line in text.split("\n") if counts[normalize_line(line)] <= max_repeats]
            out.append("\n".join(lines).strip("\n"))
    return out
