"""The notebooks listed in _toc.yml (``python tests/toc.py [--lane 1|2]`` prints their paths, for ``make test``)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def toc_files(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Every ``file:`` entry of the table of contents, in order, without suffix."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))
            for part in entry.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return files


def toc_notebooks(toc_path: Path = ROOT / "_toc.yml") -> list[Path]:
    """Paths of the ``.ipynb`` chapters in the table of contents."""
    return [ROOT / f"{f}.ipynb" for f in toc_files(toc_path) if (ROOT / f"{f}.ipynb").exists()]


# ``make test`` runs two pytest processes side by side, one per core, and these lists balance them. Lane 1: the
# chapters up to 3 (which trains the base model) and 8, in book order. Lane 2: the unit tests, then the chapters
# below in this order: 4, 6 and 7 need nothing of lane 1 (4 trains its own sweep, 6 loads SmolLM2, 7 only tiny
# models); 5 comes last because it loads the base model chapter 3 trains. The split only balances time: an artifact
# is built under a file lock by whichever process asks first and loaded by the other, so every chapter passes in
# either lane, or alone.
SECOND_LANE = ("book/04_scaling_laws", "book/06_serving", "book/07_parallelism", "book/05_post_training")


def lane_notebooks(lane: int, toc_path: Path = ROOT / "_toc.yml") -> list[Path]:
    """The chapters of ``lane``: 1, the chapters not in ``SECOND_LANE`` in book order; 2, ``SECOND_LANE`` in its
    order (entries missing from the table of contents are skipped; a test checks there are none)."""
    if lane not in (1, 2):
        raise ValueError(f"lane must be 1 or 2, got {lane}")
    chapters = toc_notebooks(toc_path)
    second = [ROOT / f"{f}.ipynb" for f in SECOND_LANE]
    if lane == 2:
        return [p for p in second if p in chapters]
    return [p for p in chapters if p not in second]


if __name__ == "__main__":
    import sys

    paths = lane_notebooks(int(sys.argv[2])) if sys.argv[1:2] == ["--lane"] else toc_notebooks()
    print(" ".join(str(p.relative_to(ROOT)) for p in paths))


EXECUTED = ROOT / "_build" / "nbval"


def executed_copy(notebook: Path) -> Path:
    """Where the copy of ``notebook`` executed by nbval is kept (``conftest.py`` writes it, ``test_book`` reads it)."""
    return EXECUTED / notebook.resolve().relative_to(ROOT)


def uses_widgets(nb) -> bool:
    """Whether a notebook (``nbformat`` node) displays ipywidgets: it imports them or builds a ``figure_explorer``."""
    code = "".join(c.source for c in nb.cells if c.cell_type == "code")
    return "import ipywidgets" in code or "figure_explorer" in code
