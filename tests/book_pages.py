"""Checks of a rendered page that a reader would notice: a path of the build machine, a MyST role that did not
render (``{cite}`x``` shown as text), a link to a page or anchor that does not exist.

``page_problems(page, html_root)`` returns one line per problem; ``tests/test_book.py`` runs it on every page of
the fast-mode build and ``tests/test_book_pages.py`` shows it catching each kind on a planted page.
"""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

# home folders, temp folders and virtual environments of Linux, macOS and Windows
MACHINE_PATH = re.compile(r"(?<![\w.:/])(/home/\w|/root/|/tmp/|/Users/\w|/private/var/|/var/folders/"
                          r"|[A-Za-z]:\\\\?Users\\|site-packages/|\.cache/minillm)")
UNRENDERED_ROLE = re.compile(r"\{(cite|cite:p|cite:t|ref|doc|numref|eq|term|download|glue|bibliography)\}`")
HREF = re.compile(r"""(?:href|src)="([^"]+)\"""")
ID = re.compile(r"""\bid="([^"]+)\"""")
CODE = re.compile(r"<(pre|code)\b.*?</\1>", re.S)
SKIP_LINKS = ("http://", "https://", "mailto:", "data:", "javascript:", "//")


def _visible_text(page_html: str) -> str:
    text = re.sub(r"<script\b.*?</script>|<style\b.*?</style>", " ", page_html, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", text))


def page_problems(page: Path, html_root: Path, extra_paths: tuple[str, ...] = ()) -> list[str]:
    """Problems of the rendered ``page`` (an ``.html`` file under ``html_root``); ``extra_paths``: more strings that
    must not appear (the repository and cache folders of this machine)."""
    page_html = page.read_text(encoding="utf-8", errors="replace")
    name = page.relative_to(html_root).as_posix()
    problems = []
    text = _visible_text(page_html)          # outputs are in <pre> too: paths are searched everywhere
    for m in MACHINE_PATH.finditer(text):
        problems.append(f"{name}: machine path {text[max(0, m.start() - 40):m.end() + 40]!r}")
    for path in extra_paths:
        if path and path in text:
            problems.append(f"{name}: machine path {path!r}")
    prose = _visible_text(CODE.sub(" ", page_html))   # a role inside code is an example, not a failure
    for m in UNRENDERED_ROLE.finditer(prose):
        problems.append(f"{name}: unrendered role {prose[max(0, m.start() - 30):m.end() + 30]!r}")
    for link in HREF.findall(page_html):
        link = html_lib.unescape(link)
        if link.startswith(SKIP_LINKS) or link.startswith("#") and len(link) == 1:
            continue
        parts = urlsplit(link)
        target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
        if not target.exists():
            problems.append(f"{name}: broken link {link!r}")
        elif parts.fragment and target.suffix == ".html":
            ids = set(ID.findall(target.read_text(encoding="utf-8", errors="replace")))
            if unquote(parts.fragment) not in ids:
                problems.append(f"{name}: link {link!r} to a missing anchor")
    return problems
