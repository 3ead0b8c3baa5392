"""The notebooks listed in _toc.yml (``python tests/toc.py`` prints their paths, for ``make test``)."""

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


if __name__ == "__main__":
    print(" ".join(str(p.relative_to(ROOT)) for p in toc_notebooks()))


EXECUTED = ROOT / "_build" / "nbval"


def executed_copy(notebook: Path) -> Path:
    """Where the copy of ``notebook`` executed by nbval is kept (``conftest.py`` writes it, ``test_book`` reads it)."""
    return EXECUTED / notebook.resolve().relative_to(ROOT)
