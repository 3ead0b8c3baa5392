"""Repository-wide pytest hooks: keep the notebooks that nbval executed, so the book is not executed twice.

``make test`` runs nbval over every chapter (in two processes), then ``tests/test_book.py`` renders the fast-mode
book. Executing each chapter twice would double the longest part of the suite, so when every cell of a notebook
passes under nbval, the notebook is written *with its outputs* to ``_build/nbval/<path>`` (with the run mode in its
metadata), and the book test renders those copies. ``test_book`` checks that a copy's cells are exactly the current
notebook's and executes anything it cannot reuse (a notebook changed since, or run alone).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))
from toc import executed_copy, uses_widgets  # noqa: E402

_failed: set[Path] = set()
# copies from an earlier test run are never reused. ``make test`` runs the notebooks, the unit tests and the book
# build as separate pytest processes and names one session for all three in the environment.
SESSION = os.environ.get("MINILLM_PYTEST_SESSION") or f"{os.getpid()}-{time.time_ns()}"


def pytest_configure(config):
    os.environ["MINILLM_PYTEST_SESSION"] = SESSION


def _notebook_of(item) -> Path | None:
    if not (hasattr(item, "test_outputs") and hasattr(item, "cell") and hasattr(item.parent, "nb")):
        return None                                                         # not an nbval cell
    path = Path(str(item.parent.path)).resolve()
    return path if ROOT in path.parents else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    path = _notebook_of(item)
    if path is None:
        return
    report = outcome.get_result()
    if call.when == "setup" and item.cell_num == 0:
        _failed.discard(path)
        executed_copy(path).unlink(missing_ok=True)                          # never leave a stale copy behind
    if report.failed:
        _failed.add(path)
    if call.when == "call" and item.test_outputs is not None:
        import nbformat       # only for notebooks: the unit tests also run where it is absent (the GPU machine)

        item.cell.outputs = [nbformat.from_dict(dict(out)) for out in item.test_outputs]
        item.cell.execution_count = item.cell_num + 1
        for out in item.cell.outputs:
            if out.output_type == "execute_result":
                out.execution_count = item.cell.execution_count


def pytest_runtest_teardown(item, nextitem):
    path = _notebook_of(item)
    if path is None or (nextitem is not None and getattr(nextitem, "parent", None) is item.parent):
        return
    if path in _failed:
        return                                                              # a failed notebook is never reused
    nb = item.parent.nb
    if any(c.cell_type == "code" and c.get("execution_count") is None for c in nb.cells):
        return                                                              # not every cell ran (e.g. -k selection)
    if uses_widgets(nb) and (state := _widget_state(item)) is not None:
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": state}
    nb.metadata["minillm_mode"] = os.environ.get("MINILLM_MODE", "book")
    nb.metadata["minillm_session"] = SESSION
    out = executed_copy(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    import nbformat

    nbformat.write(nb, out)


def _widget_state(item) -> dict | None:
    """The live widget state of the notebook's kernel, in the form nbclient saves as ``metadata.widgets``: with it the
    book renders nbval's copy with working widgets (Jupyter Book embeds that state) instead of executing it again."""
    import json

    kernel = getattr(item.parent, "kernel", None)
    if kernel is None or not kernel.is_alive():
        return None
    code = ("import json as _json, sys as _sys\n_w = _sys.modules.get('ipywidgets')\n"
            "print(_json.dumps(_w.Widget.get_manager_state(drop_defaults=True)) if _w else 'null')")
    chunks = []

    def hook(msg) -> None:
        if msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
            chunks.append(msg["content"]["text"])

    reply = kernel.kc.execute_interactive(code, store_history=False, timeout=120, output_hook=hook)
    if reply["content"]["status"] != "ok":
        return None
    return json.loads("".join(chunks))
