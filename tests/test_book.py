"""The book: every chapter of _toc.yml renders with its figures, widgets work offline, and a failing cell fails.

The build here runs in fast mode into ``_build/fast`` (its own execution cache, so it never feeds fast-mode outputs
to ``make book``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from book_pages import page_problems  # noqa: E402
from toc import ROOT, executed_copy, toc_files, toc_notebooks, uses_widgets  # noqa: E402

pytestmark = pytest.mark.slow
JB = [str(Path(sys.executable).parent / "jupyter-book"), "build", "-W", "--keep-going"]


def _env() -> dict[str, str]:
    env = dict(os.environ, MINILLM_MODE="fast")
    env.pop("MINILLM_FAST", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _reusable(nb_path: Path) -> Path | None:
    """The copy of ``nb_path`` that nbval executed in fast mode in this test session (``conftest.py``), if its cells
    are exactly the current notebook's and, if it shows widgets, nbval's run saved their state; else None."""
    copy = executed_copy(nb_path)
    if not copy.is_file():
        return None
    current, executed = nbformat.read(nb_path, as_version=4), nbformat.read(copy, as_version=4)
    if executed.metadata.get("minillm_session") != os.environ.get("MINILLM_PYTEST_SESSION"):
        return None                                                         # executed by an earlier pytest run
    if executed.metadata.get("minillm_mode") != "fast":
        return None
    if uses_widgets(current) and "widgets" not in executed.metadata:
        return None                                             # no saved widget state: the build must execute it
    same = [(c.cell_type, c.source) for c in current.cells] == [(c.cell_type, c.source) for c in executed.cells]
    return copy if same else None


@pytest.fixture(scope="module")
def html() -> Path:
    """Build the fast-mode book from a copy of the sources in which every chapter nbval already executed is replaced
    by its executed copy and excluded from execution; the rest is executed by the build."""
    out = ROOT / "_build" / "fast"
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(ROOT / "book", src / "book", ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "_toc.yml", src / "_toc.yml")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    reused = []
    for nb_path in toc_notebooks():
        copy = _reusable(nb_path)
        if copy is not None:
            shutil.copy(copy, src / nb_path.relative_to(ROOT))
            reused.append(f"*{nb_path.stem}*")
    config["execute"]["exclude_patterns"] = reused
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = subprocess.run([*JB, "--path-output", str(out), str(src)], env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    print(f"reused {len(reused)} nbval-executed chapters: {reused}")
    return out / "_build" / "html"


def test_every_toc_page_is_rendered(html):
    assert (html / "index.html").is_file()
    for entry in toc_files():
        assert (html / f"{entry}.html").is_file(), f"{entry} missing from the built book"


def test_rendered_pages_have_no_machine_paths_unrendered_roles_or_broken_links(html):
    """What a reader would notice on a page: ``tests/book_pages.py`` (its own tests plant each problem)."""
    from minillm.artifacts import cache_root

    machine = (str(ROOT), str(cache_root()), str(Path.home()), sys.prefix)
    pages = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts)   # theme templates
    assert len(pages) > len(toc_files())
    problems = [p for page in pages for p in page_problems(page, html, machine)]
    assert not problems, "\n".join(problems[:30])


def test_every_chapter_shows_its_figures(html):
    for nb_path in toc_notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        plots = sum("plt.show()" in c.source or "savefig" in c.source for c in nb.cells if c.cell_type == "code")
        page = (html / nb_path.relative_to(ROOT).with_suffix(".html")).read_text()
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
        assert len(images) >= plots > 0, f"{nb_path.name}: {len(images)} images for {plots} plotting cells"
        for src in images:
            assert (html / nb_path.relative_to(ROOT).parent / src).resolve().is_file(), f"{src} not in the build"


def test_widgets_render_offline_from_vendored_scripts(html):
    page = (html / "book" / "00_llama3_herd.html").read_text()
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', page)
    assert any(s.startswith("../_static/embed-amd.js") for s in scripts)
    assert any(s.startswith("../_static/require.js") for s in scripts)
    assert not any("jupyter-widgets" in s or "require.min.js" in s for s in scripts if s.startswith("http"))
    state = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', page, re.S)
    assert state, "no widget state saved: the calculator would be blank in the static book"
    models = json.loads(state.group(1))["state"]
    kinds = {m["model_name"] for m in models.values()}
    assert {"DropdownModel", "IntSliderModel", "HTMLModel"} <= kinds
    assert any("KV cache" in m["state"].get("value", "") for m in models.values() if m["model_name"] == "HTMLModel")
    # exactly one copy of each script (files in _static/ itself would be loaded twice)
    assert sum(s.startswith("../_static/embed-amd.js") for s in scripts) == 1


def test_every_explorer_embeds_its_default_figure(html):
    """Each chapter that builds a ``figure_explorer`` carries, in the page's saved widget state, an Image model whose
    PNG (the figure at the default knob values) the static page shows without a kernel."""
    import base64

    explorers = [p for p in toc_notebooks() if "figure_explorer(" in p.read_text()]
    assert len(explorers) >= 5
    for nb_path in explorers:
        page = (html / nb_path.relative_to(ROOT).with_suffix(".html")).read_text()
        state = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', page, re.S)
        assert state, f"{nb_path.name}: no widget state in the page: its explorers would be empty boxes"
        models = json.loads(state.group(1))["state"].values()
        images = [base64.b64decode(b["data"]) for m in models if m["model_name"] == "ImageModel"
                  for b in m.get("buffers", []) if b["path"] == ["value"]]
        expected = sum(c.source.count("figure_explorer(") for c in nbformat.read(nb_path, as_version=4).cells
                       if c.cell_type == "code")
        assert len(images) >= expected >= 1 and all(i.startswith(b"\x89PNG") for i in images), nb_path.name
        assert "application/vnd.jupyter.widget-view+json" in page, nb_path.name


def _tiny_book(tmp: Path, cell: str) -> Path:
    (tmp / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", tmp / "_config.yml")
    shutil.copytree(ROOT / "book" / "_widgets", tmp / "book" / "_widgets")
    shutil.copy(ROOT / "book" / "references.bib", tmp / "book" / "references.bib")   # _config.yml names it
    (tmp / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/probe\n")
    (tmp / "book" / "intro.md").write_text("# Probe\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Probe"), nbformat.v4.new_code_cell(cell)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp / "book" / "probe.ipynb")
    return tmp


@pytest.mark.parametrize("cell, should_pass", [("print(1 + 1)", True), ("raise RuntimeError('boom')", False)])
def test_a_raising_cell_fails_both_the_book_build_and_nbval(tmp_path, cell, should_pass):
    book = _tiny_book(tmp_path / "b", cell)
    build = subprocess.run([*JB, str(book)], env=_env(), capture_output=True, text=True, cwd=book)
    nbval = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
         str(book / "book" / "probe.ipynb")],
        env=_env(), capture_output=True, text=True, cwd=book,
    )
    assert (build.returncode == 0) == should_pass, build.stdout[-3000:]
    assert (nbval.returncode == 0) == should_pass, nbval.stdout[-3000:]
