"""HTML → clean text (report §3.1.1, "Text extraction and cleaning").

The report builds "a custom parser that extracts HTML content and optimizes for precision in boilerplate removal and
content recall", keeps the structure of code and maths, and removes all markdown markers ("markdown is harmful to the
performance of a model that is primarily trained on web data compared to plain text"). Here:

- ``extract(html)``: the text of a page, one line per block element (``<p>``, ``<div>``, ``<li>``, headings, table
  rows, ...); ``<script>``/``<style>``/``<head>`` dropped; ``<pre>`` kept verbatim (code keeps its indentation and
  ``#`` comments); markdown markers stripped from everything else (``strip_markdown``).
- ``extract_page(raw, max_bytes)``: the same for raw crawl bytes, robust to bad input. It returns ``(text, issue)``
  where ``issue`` names what was wrong (``None`` for a clean page) so that the pipeline *counts* every skipped or
  repaired page: ``too_large`` and ``empty`` pages are skipped (text ``None``), ``non_utf8`` bytes are decoded as
  cp1252 (or with replacement characters), ``broken_html`` (unclosed or malformed tags) is parsed leniently.
  Boilerplate that is not inside ``<nav>``-like tags (cookie banners in ``<div>``s) is left for line-level
  deduplication, as in the report.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

SKIP_TAGS = {"script", "style", "head", "noscript", "template", "svg", "iframe"}
BLOCK_TAGS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
              "article", "header", "footer", "main", "nav", "aside", "blockquote", "dt", "dd", "dl", "hr", "body",
              "title", "form", "figure", "figcaption", "address"}
VOID_TAGS = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "track", "wbr"}

# markdown markers, applied line by line outside <pre> (order matters: images before links, ** before *); the first
# four are line-start markers
_MARKDOWN = [
    (re.compile(r"^\s{0,3}#{1,6}\s+"), ""),                      # # Heading
    (re.compile(r"^\s{0,3}>\s?"), ""),                           # > quote
    (re.compile(r"^\s{0,3}(?:[-*_]\s*){3,}$"), ""),              # --- rule
    (re.compile(r"^\s*(?:[-*+]+\s+)+"), ""),                     # - bullet, ** nested (wikitext) bullet
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),              # ![alt](src)
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),               # [text](url)
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),        # **bold**, __bold__
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *em*
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"\1"),    # _em_ (not snake_case)
    (re.compile(r"`{1,3}([^`\n]*)`{1,3}"), r"\1"),               # `code`
]
MARKDOWN_RESIDUE = re.compile(r"^\s{0,3}#{1,6}\s|\*\*|__\w|\]\(|`|^\s{0,3}>\s|^\s*[-*+]\s", re.M)


def strip_markdown(text: str) -> str:
    """Remove markdown markers from prose, keeping the words (``**bold** [link](u)`` → ``bold link``)."""
    lines = []
    for line in text.split("\n"):
        previous = None
        while line != previous:  # line-start markers nest: "- # item", "## > quote"
            previous = line
            for pattern, repl in _MARKDOWN[:4]:
                line = pattern.sub(repl, line)
        for pattern, repl in _MARKDOWN[4:]:
            line = pattern.sub(repl, line)
        lines.append(line)
    return "\n".join(lines)


class _TextParser(HTMLParser):
    """Collects text chunks: ``("pre", text)`` verbatim, ``("text", text)`` to be cleaned."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[tuple[str, str]] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.open_tags = 0
        self.malformed = False

    def handle_starttag(self, tag, attrs):
        if tag in SKIP_TAGS:
            self.skip_depth += 1
        elif tag == "pre":
            self.pre_depth += 1
            self.chunks.append(("text", "\n"))
        elif tag in BLOCK_TAGS:
            self.chunks.append(("text", "\n"))
        if tag not in VOID_TAGS:
            self.open_tags += 1

    def handle_startendtag(self, tag, attrs):
        if tag in BLOCK_TAGS:
            self.chunks.append(("text", "\n"))

    def handle_endtag(self, tag):
        if tag in SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
            self.chunks.append(("text", "\n"))
        elif tag in BLOCK_TAGS:
            self.chunks.append(("text", "\n"))
        if tag not in VOID_TAGS:
            self.open_tags -= 1

    def handle_data(self, data):
        if self.skip_depth:
            return
        self.chunks.append(("pre" if self.pre_depth else "text", data))

    def unknown_decl(self, data):
        self.malformed = True


def _clean_prose(text: str) -> str:
    """Collapse spaces inside lines, strip markdown, drop empty lines (prose outside ``<pre>``)."""
    lines = (re.sub(r"[ \t\r\f\v\u00a0]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in strip_markdown("\n".join(lines)).split("\n") if line.strip())


def _parse(markup: str) -> _TextParser:
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    return parser


def extract(markup: str | bytes) -> str:
    """Plain text of an HTML page: block elements become lines, ``<pre>`` stays verbatim, markdown is removed.

    ``markup`` may be ``bytes`` (decoded as UTF-8, falling back to cp1252). Text outside any tag (a page that is not
    HTML at all) is kept. Never raises on malformed HTML.
    """
    if isinstance(markup, bytes):
        markup = decode(markup)[0]
    if "<" not in markup:  # plain text
        return _clean_prose(html.unescape(markup))
    parser = _parse(markup)
    out, prose = [], []
    for kind, data in parser.chunks:
        if kind == "pre":
            if prose:
                out.append(_clean_prose("".join(prose)))
                prose = []
            out.append(data.strip("\n"))
        else:
            prose.append(data)
    if prose:
        out.append(_clean_prose("".join(prose)))
    return "\n".join(part for part in out if part.strip())


def decode(raw: bytes) -> tuple[str, bool]:
    """``(text, was_utf8)``: UTF-8 if the bytes are valid, else cp1252 (the usual culprit), else UTF-8 with U+FFFD."""
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), False


_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)")


def looks_broken(markup: str) -> bool:
    """True when the HTML is malformed: a tag cut off at the end, ``<`` runs, or many more opened than closed tags."""
    tail = markup[-200:]
    if tail.rfind("<") > tail.rfind(">"):
        return True
    if "<<" in markup or "<>" in markup:
        return True
    opened = closed = 0
    for match in _TAG.finditer(markup):
        name = match.group(2).lower()
        if name in VOID_TAGS:
            continue
        if match.group(1):
            closed += 1
        else:
            opened += 1
    return opened > 0 and closed < 0.5 * opened


def extract_page(raw: bytes | str | None, max_bytes: int = 2_000_000,
                 min_chars: int = 1) -> tuple[str | None, str | None]:
    """``(text, issue)`` for one crawled page; ``text`` is ``None`` when the page is skipped.

    Issues: ``"too_large"`` (more than ``max_bytes``, skipped before parsing), ``"empty"`` (no text at all or fewer
    than ``min_chars`` characters after extraction, skipped), ``"non_utf8"`` (decoded leniently, kept),
    ``"broken_html"`` (parsed leniently, kept), ``"parse_error"`` (the parser raised; tags stripped by regex, kept).
    """
    if raw is None:
        return None, "empty"
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="replace")
    if len(raw) > max_bytes:
        return None, "too_large"
    markup, utf8 = decode(raw)
    issue = None if utf8 else "non_utf8"
    if issue is None and looks_broken(markup):
        issue = "broken_html"
    try:
        text = extract(markup)
    except Exception:  # noqa: BLE001 - never crash on a page; fall back to stripping tags
        issue = "parse_error"
        text = _clean_prose(html.unescape(re.sub(r"<[^>]*>?", " ", markup)))
    text = text.replace("\x00", "")
    if len(text.strip()) < min_chars:
        return None, "empty"
    return text, issue
