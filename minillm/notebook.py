"""Small display helpers the chapters share, so that notebooks show the package's code instead of copying it."""

from __future__ import annotations

import inspect
import textwrap
from typing import Any, Callable, Iterable, Sequence


def show_source(obj: Any, lines: tuple[int, int] | None = None) -> Any:
    """Display the source of a function/class/module of ``minillm`` (optionally a 1-based ``lines`` range of it)."""
    from IPython.display import Code

    source = textwrap.dedent(inspect.getsource(obj))
    if lines is not None:
        start, stop = lines
        source = "\n".join(source.splitlines()[start - 1 : stop])
    return Code(source, language="python")


def markdown_table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> Any:
    """Display rows as a Markdown table (renders in Jupyter and in the built book)."""
    from IPython.display import Markdown

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(out))


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (powers of 1024, as memory is sold)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_count(n: float) -> str:
    """8.03e9 -> '8.03B'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"


def figure_explorer(draw: Callable[..., Any], **controls: Any) -> Any:
    """An ipywidgets explorer: each change of a ``controls`` widget (name -> widget) calls ``draw(**values)``, which
    returns a matplotlib figure, and shows it as a PNG ``Image`` widget. The image is drawn once with the default
    values before the explorer is displayed, so the widget state saved with the notebook (and embedded in the HTML
    book, which has no kernel behind its widgets) holds the default figure, never an empty box."""
    import io

    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if not controls:
        raise ValueError("figure_explorer needs at least one control widget (name=widget)")
    image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))

    def render(_=None) -> None:
        figure = draw(**{name: w.value for name, w in controls.items()})
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(figure)
        image.value = buffer.getvalue()

    for w in controls.values():
        w.style.description_width = "initial"                   # show the whole label, not "micro-bat..."
        w.observe(render, names="value")
    render()
    return widgets.VBox([widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap")), image])
