"""Per-stage timelines of a pipeline: what each rank computed when, the idle time (the *bubble*), and a Gantt chart.

Every forward (``F``) and backward (``B``) of a micro-batch on a stage is one ``StageEvent`` with its start and end
(``time.perf_counter()``, seconds). On one machine all processes read the same monotonic clock, so events of
different ranks line up directly; across machines, align each rank's clock to a barrier first.

GPipe (Huang et al., 2019, §2.2) with ``K`` stages and ``M`` micro-batches, each F and B taking the same time on
every stage, keeps each stage idle for a fraction

    bubble = (K − 1) / (M + K − 1)

of the step: a stage waits ``K − 1`` slots before its first forward and ``K − 1`` slots after its last backward,
out of ``M + K − 1`` slots per phase. ``bubble_fraction`` measures the same quantity on recorded events:
1 − (time spent computing, summed over stages) / (K × the step's span).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class StageEvent:
    """One unit of pipeline work: ``kind`` ``"F"`` or ``"B"`` of micro-batch ``micro`` on pipeline stage ``stage``
    (``step`` numbers decode steps in inference; 0 in training)."""

    stage: int
    kind: str
    micro: int
    start: float
    end: float
    step: int = 0

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        return asdict(self)


def gpipe_bubble(n_stages: int, n_microbatches: int) -> float:
    """The GPipe bubble fraction ``(K − 1) / (M + K − 1)`` (GPipe §2.2)."""
    if n_stages < 1 or n_microbatches < 1:
        raise ValueError(f"n_stages and n_microbatches must be >= 1, got {n_stages}, {n_microbatches}")
    return (n_stages - 1) / (n_microbatches + n_stages - 1)



def gpipe_schedule(n_stages: int, n_microbatches: int, forward_s: float = 1.0,
                   backward_s: float = 2.0) -> list[StageEvent]:
    """GPipe's schedule on paper (``GPipe.run``'s order: all forwards, then all backwards, micro-batches in order),
    each F lasting ``forward_s`` and each B ``backward_s`` on every stage, messages instant. F of micro-batch ``m`` on
    stage ``k`` starts at ``(m + k) · f``; B of ``m`` on stage ``k`` at ``(M + K − 1) · f + (m + K − 1 − k) · b``.
    Its ``bubble_fraction`` is exactly ``gpipe_bubble(K, M)``."""
    gpipe_bubble(n_stages, n_microbatches)                          # validates K, M
    if forward_s <= 0 or backward_s <= 0:
        raise ValueError(f"forward_s and backward_s must be > 0, got {forward_s}, {backward_s}")
    K, M, f, b = n_stages, n_microbatches, forward_s, backward_s
    fwd = [StageEvent(k, "F", m, (m + k) * f, (m + k + 1) * f) for k in range(K) for m in range(M)]
    t_f = (M + K - 1) * f
    bwd = [StageEvent(k, "B", m, t_f + (m + K - 1 - k) * b, t_f + (m + K - k) * b) for k in range(K) for m in range(M)]
    return fwd + bwd

def shift(events: list[StageEvent], t0: float | None = None) -> list[StageEvent]:
    """Events with times relative to ``t0`` (default: the earliest start), sorted by start."""
    t0 = min(e.start for e in events) if t0 is None else t0
    return sorted((StageEvent(e.stage, e.kind, e.micro, e.start - t0, e.end - t0, e.step) for e in events),
                  key=lambda e: e.start)


def bubble_fraction(events: list[StageEvent], n_stages: int) -> float:
    """Measured idle fraction: ``1 − Σ busy / (n_stages × span)``, span = first start to last end of all events."""
    if not events:
        raise ValueError("bubble_fraction needs at least one event")
    span = max(e.end for e in events) - min(e.start for e in events)
    busy = sum(e.seconds for e in events)
    return 1.0 - busy / (n_stages * span)


def plot_timeline(events: list[StageEvent], n_stages: int, ax=None, title: str | None = None, label: bool = True):
    """Gantt chart: one row per stage (stage 0 on top), forwards blue, backwards orange, labelled by micro-batch."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * n_stages))
    events = shift(events)
    colors = {"F": "tab:blue", "B": "tab:orange"}
    for e in events:
        ax.broken_barh([(e.start * 1e3, e.seconds * 1e3)], (e.stage - 0.4, 0.8), facecolors=colors[e.kind],
                       edgecolors="white", linewidth=0.5)
        if label:
            ax.text((e.start + e.seconds / 2) * 1e3, e.stage, f"{e.micro}", ha="center", va="center", fontsize=6,
                    color="white")
    ax.set_yticks(range(n_stages), [f"stage {s}" for s in range(n_stages)])
    ax.set_ylim(n_stages - 0.5, -0.5)
    ax.set_xlabel("ms")
    if title:
        ax.set_title(title, fontsize=9)
    return ax
