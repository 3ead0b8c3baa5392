"""The rendered-page checker (``tests/book_pages.py``) catches what it is for, on planted pages."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from book_pages import page_problems  # noqa: E402

GOOD = """<html><body><h1 id="top">Chapter</h1><p>See <a href="other.html#sec">the other page</a>
and <a href="#top">the top</a>; the report is <a href="https://arxiv.org/abs/2407.21783">on arXiv</a>.</p>
<pre>x = "{cite}`example`"  # a role inside code is an example</pre></body></html>"""
OTHER = '<html><body><h2 id="sec">Section</h2></body></html>'


def _site(tmp_path: Path, page: str) -> Path:
    (tmp_path / "other.html").write_text(OTHER)
    (tmp_path / "page.html").write_text(page)
    return tmp_path / "page.html"


def test_a_clean_page_has_no_problems(tmp_path):
    assert page_problems(_site(tmp_path, GOOD), tmp_path) == []


def test_a_leaked_path_of_the_build_machine_is_caught(tmp_path):
    for leak in ("[artifacts] base_model: loaded from cache /home/ada/.cache/minillm/base_model/3f2a",
                 "File /root/project/.venv/lib/python3.11/site-packages/torch/nn/modules/module.py",
                 "saved to /tmp/tmpk2x9/ckpt", r"C:\Users\ada\minillm", "/Users/ada/minillm/book"):
        page = _site(tmp_path, GOOD.replace("</body>", f"<pre>{leak}</pre></body>"))
        assert any("machine path" in p for p in page_problems(page, tmp_path)), leak
    page = _site(tmp_path, GOOD.replace("</body>", "<p>built in /srv/build/minillm</p></body>"))
    assert page_problems(page, tmp_path, extra_paths=("/srv/build/minillm",))


def test_an_unrendered_myst_role_is_caught(tmp_path):
    page = _site(tmp_path, GOOD.replace("</p>", " as {cite}`dubey2024llama3` shows</p>", 1))
    assert any("unrendered role" in p for p in page_problems(page, tmp_path))


def test_a_broken_link_or_missing_anchor_is_caught(tmp_path):
    page = _site(tmp_path, GOOD.replace("other.html#sec", "missing.html"))
    assert any("broken link" in p for p in page_problems(page, tmp_path))
    page = _site(tmp_path, GOOD.replace("other.html#sec", "other.html#nowhere"))
    assert any("missing anchor" in p for p in page_problems(page, tmp_path))
