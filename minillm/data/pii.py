"""Personally identifiable information: find and redact e-mails, phone numbers and IP addresses (report §3.1.1).

The report filters "websites likely to contain ... high volumes of personally identifiable information (PII)"; at the
document level FineWeb-style pipelines also redact what is left. ``redact_pii`` replaces each match by a placeholder
(``[EMAIL]``, ``[PHONE]``, ``[IP]``) and returns the counts. Regexes are precise for the formats they know (North
American phone numbers as ``faker`` writes them: ``(460)648-7647x5938``, ``+1-641-985-8398``, ``281.256.5938``;
IPv4 addresses; RFC-5322-ish e-mails) and blind to others (names, street addresses, phone numbers of other countries):
say so wherever recall is quoted. ``presidio-analyzer`` is the heavier, NER-based alternative.
"""

from __future__ import annotations

import re
from collections import Counter

PII_PATTERNS: dict[str, re.Pattern] = {
    "EMAIL": re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])"),
    "PHONE": re.compile(
        r"(?<![\w.+-])(?:(?:\+1|001)[-. ]?)?"               # country code
        r"(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}"          # (ddd)ddd-dddd, ddd-ddd-dddd, ddd.ddd.dddd
        r"(?: ?(?:x|ext\.? ?)\d{1,6})?(?![\w-])"),          # extension
    # ten bare digits are a phone number only after a context word (as presidio's context enhancement does)
    "PHONE_BARE": re.compile(r"(?i:\b(?:call|tel|phone|mobile|cell|fax|text|reach)\b)[^\n\d]{0,20}?"
                             r"(?P<pii>[2-9]\d{9})(?![\w.])"),
    "IP": re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                     r"(?![\w.])"),
}


def _kind(name: str) -> str:
    return name.split("_")[0]


def _span(match: re.Match) -> tuple[int, int]:
    """The PII part of a match: the group ``pii`` where the pattern has one (context words stay), else all of it."""
    return match.span("pii") if "pii" in match.re.groupindex else match.span()


def find_pii(text: str) -> list[tuple[str, str]]:
    """``(kind, matched string)`` for every match of every pattern, in pattern order."""
    return [(_kind(name), text[slice(*_span(m))]) for name, pattern in PII_PATTERNS.items()
            for m in pattern.finditer(text)]


def redact_pii(text: str) -> tuple[str, Counter]:
    """``text`` with e-mails, phone numbers and IPs replaced by ``[EMAIL]``, ``[PHONE]``, ``[IP]``; and the counts.

    E-mails go first, so that the digits of an address are not mistaken for a phone number.
    """
    counts: Counter = Counter()
    for name, pattern in PII_PATTERNS.items():
        kind = _kind(name)

        def replace(match: re.Match) -> str:
            start, end = (s - match.start() for s in _span(match))
            return match.group(0)[:start] + f"[{kind}]" + match.group(0)[end:]

        text, n = pattern.subn(replace, text)
        if n:
            counts[kind] += n
    return text, counts
