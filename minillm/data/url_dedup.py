"""URL-level de-duplication: keep the most recent crawl of each URL (report §3.1.1, "De-duplication").

The report: "we perform de-duplication at the URL-level across the entire dataset. We keep the most recent version for
pages corresponding to each URL." A record is anything with ``url`` and ``timestamp`` attributes (or dict keys).
"""

from __future__ import annotations

from typing import Any, Sequence, TypeVar

R = TypeVar("R")


def _field(record: Any, name: str) -> Any:
    return record[name] if isinstance(record, dict) else getattr(record, name)


def url_dedup(records: Sequence[R]) -> list[R]:
    """The newest record of each URL (largest ``timestamp``; the later record wins a tie), in input order.

    URLs are compared as given (normalise them first if ``http://a/`` and ``https://a`` should be one page).
    """
    newest: dict[str, int] = {}
    for i, record in enumerate(records):
        url = _field(record, "url")
        j = newest.get(url)
        if j is None or _field(record, "timestamp") >= _field(records[j], "timestamp"):
            newest[url] = i
    keep = sorted(newest.values())
    return [records[i] for i in keep]
