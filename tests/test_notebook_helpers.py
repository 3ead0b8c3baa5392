"""``minillm.notebook``'s explorer: drawn at the defaults before display (what the static book keeps), redrawn on
every change, and refused without a control."""

import pytest

widgets = pytest.importorskip("ipywidgets")


def test_figure_explorer_draws_the_defaults_at_once_and_redraws_on_each_change():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minillm.notebook import figure_explorer

    calls = []

    def draw(k, m):
        calls.append((k, m))
        fig, ax = plt.subplots()
        ax.plot(range(k + m))
        return fig

    k = widgets.IntSlider(value=4, min=1, max=8, description="stages K")
    m = widgets.SelectionSlider(options=[1, 2, 4], value=2, description="micro-batches M")
    box = figure_explorer(draw, k=k, m=m)
    image = box.children[1]
    assert calls == [(4, 2)] and bytes(image.value).startswith(b"\x89PNG")   # the default state, already drawn
    first = bytes(image.value)
    k.value = 7
    assert calls[-1] == (7, 2) and bytes(image.value) != first                     # a change redraws
    assert list(box.children[0].children) == [k, m]
    assert not plt.get_fignums()                                              # figures are closed, not leaked
    with pytest.raises(ValueError, match="at least one control"):
        figure_explorer(draw)
