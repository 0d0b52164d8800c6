"""Figure layout shared by the plots: figures laid out by constrained layout, log axes with
plain tick labels at round values, and point labels placed so they do not overlap."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker
from matplotlib.transforms import Bbox

# Offsets (points) tried in turn for a point's label: right, left, above, below, then further.
LABEL_OFFSETS = (
    (6, 4, "left"),
    (6, -11, "left"),
    (-6, 4, "right"),
    (-6, -11, "right"),
    (0, 9, "center"),
    (0, -17, "center"),
    (10, 14, "left"),
    (-10, 14, "right"),
    (10, -22, "left"),
    (-10, -22, "right"),
    (0, 24, "center"),
    (0, -30, "center"),
)


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kwargs):
    """``plt.subplots`` with constrained layout: nothing clipped, nothing overlapping."""
    return plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", **kwargs)


def log_axis(ax, which: str = "x") -> None:
    """A log scale whose ticks are plain numbers (``0.5``, ``2``, ``100``) at 1-2-5 steps.

    Within a range of two decades or less the 2 and 5 of each decade are labelled too;
    wider ranges label only the powers of ten. Minor ticks stay unlabelled, so labels
    never run together.
    """
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    low, high = ax.get_xlim() if which == "x" else ax.get_ylim()
    decades = np.log10(max(high, 1e-300) / max(low, 1e-300))
    subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0,)
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def place_labels(
    ax,
    items: Sequence[tuple[float, float, str]],
    *,
    fontsize: float = 8,
    avoid: Sequence[tuple[float, float]] = (),
) -> list:
    """Annotate points ``(x, y, text)`` so that no two labels overlap and none leaves the axes.

    Each label tries the offsets of :data:`LABEL_OFFSETS` in turn and takes the first that
    stays inside the axes without touching a label already placed or a marker (the labelled
    points and those in ``avoid``); when none fits, the one with the least overlap. Call it after the axes' limits and scales are final. The labels
    do not take part in the layout, so placing them does not move the axes they were fitted
    to.
    """
    fig = ax.figure
    fig.canvas.draw()  # the layout and limits as they will be shown
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    markers = [(x, y) for x, y, _ in items] + list(avoid)
    taken = [
        Bbox.from_bounds(px - 4, py - 4, 8, 8)
        for px, py in ax.transData.transform(np.asarray(markers, dtype=float).reshape(-1, 2))
    ]
    placed = []
    for x, y, text in items:
        best, best_cost = None, np.inf
        for dx, dy, ha in LABEL_OFFSETS:
            ann = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=fontsize,
                ha=ha,
                annotation_clip=False,
            )
            ann.set_in_layout(False)
            box = ann.get_window_extent(renderer)
            cost = sum(_overlap(box, other) for other in taken)
            outside = box.width * box.height - _overlap(box, frame)
            cost += 4 * outside
            if cost < best_cost:
                if best is not None:
                    best.remove()
                best, best_cost, best_box = ann, cost, box
            else:
                ann.remove()
            if cost == 0:
                break
        taken.append(best_box.expanded(1.05, 1.15))
        placed.append(best)
    return placed


def _overlap(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)
