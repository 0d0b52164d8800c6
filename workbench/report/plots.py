"""Plots the notebooks share. Each returns its matplotlib Figure (and records nothing).

Every figure is laid out by matplotlib's constrained layout, so titles, tick labels and
legends stay inside it; every axis names its unit; log axes carry plain numbers at a few
round values (1, 2, 5 per decade at most), so tick labels never run together. Text labels
on points are placed so that they do not overlap (:func:`place_labels`), and only where they
carry the message (the Pareto frontier, the links of a crossover plot); everything else is
named in a legend. The layout helpers live in :mod:`workbench.report.layout`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from workbench.report.layout import log_axis, new_figure, place_labels


def cv_curve(scores: dict[int, float], chosen: int, *, title: str = "Cross-validated accuracy"):
    """Mean cross-validated accuracy [%] against k, with the chosen k marked."""
    fig, ax = new_figure(6, 3.2)
    ks = sorted(scores)
    ax.plot(ks, [100 * scores[k] for k in ks], marker="o")
    ax.axvline(chosen, color="tab:red", ls="--", label=f"chosen k = {chosen}")
    ax.set(xlabel="k [neighbours]", ylabel="mean CV accuracy [%]", title=title)
    if len(ks) <= 15:
        ax.set_xticks(ks)
    else:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=12, integer=True))
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def confusion(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    *,
    title: str = "",
    unit: str = "samples",
):
    """A labelled confusion matrix with counts in each cell (scikit-learn's display).

    Rows are the true classes, columns the predicted ones, both in the order of
    ``class_names`` (labels ``0 .. n-1``); classes absent from both arrays still get
    their row and column. ``unit`` names what is counted (on the colour bar).
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    n = len(class_names)
    size = 3.4 + 0.45 * n
    fig, ax = new_figure(size, size * 0.85)
    display = ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        labels=list(range(n)),
        display_labels=list(class_names),
        cmap="Blues",
        values_format="d",
        xticks_rotation=45,
        text_kw={"fontsize": 8},
        ax=ax,
    )
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    ax.set(xlabel="predicted class", ylabel="true class", title=title or "Confusion matrix")
    display.im_.colorbar.set_label(f"{unit} [count]")
    return fig


def decision_regions(
    model,
    x2: np.ndarray,
    y: np.ndarray,
    *,
    feature_names: Sequence[str],
    class_names: Sequence[str],
    title: str = "",
    ax=None,
):
    """Decision regions of a classifier fitted on two features, with the samples on top.

    The regions are scikit-learn's ``DecisionBoundaryDisplay`` of ``model.predict`` over
    the data's range plus a margin of 0.5; each class's samples share its region's colour.
    The feature names are the axis labels (name them with their unit, e.g. ``petal length
    (cm)``).
    """
    from sklearn.inspection import DecisionBoundaryDisplay

    if ax is None:
        fig, ax = new_figure(5.5, 4.2)
    else:
        fig = ax.figure
    display = DecisionBoundaryDisplay.from_estimator(
        model,
        x2,
        grid_resolution=250,
        eps=0.5,
        response_method="predict",
        plot_method="contourf",
        alpha=0.3,
        xlabel=feature_names[0],
        ylabel=feature_names[1],
        ax=ax,
    )
    colors = getattr(display, "multiclass_colors_", None)  # set for three or more classes
    for c, name in enumerate(class_names):
        color = colors[c] if colors is not None else f"C{c}"
        ax.scatter(*x2[y == c].T, s=18, color=color, label=name, edgecolor="k", linewidth=0.3)
    ax.set(title=title)
    ax.legend(loc="best", fontsize=8)
    return fig


def image_grid(images: np.ndarray, labels: Sequence[str], *, cols: int = 8, title: str = ""):
    """A grid of small images with a caption under each."""
    rows = int(np.ceil(len(images) / cols))
    fig, axes = new_figure(cols * 1.3, rows * 1.5 + (0.3 if title else 0), rows, cols)
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, img, label in zip(np.ravel(axes), images, labels, strict=False):
        ax.imshow(img)
        ax.set_title(label, fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def training_curves(histories: dict[str, dict[str, list[float]]]):
    """Loss and accuracy [%], train (solid) and validation (dashed), for each named run."""
    fig, (ax_loss, ax_acc) = new_figure(11, 3.8, 1, 2)
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i}"
        epochs = np.arange(1, len(h["loss"]) + 1)
        accuracy = 100 * np.asarray(h["accuracy"], dtype=float)
        mark = "o" if len(epochs) < 3 else None  # a run of one epoch is a point, not a line
        ax_loss.plot(epochs, h["loss"], color=color, marker=mark, label=f"{name} train")
        ax_acc.plot(epochs, accuracy, color=color, marker=mark, label=f"{name} train")
        if "val_loss" in h:
            val_accuracy = 100 * np.asarray(h["val_accuracy"], dtype=float)
            # the epochs that were validated (all of them in histories without "val_epoch")
            val_epochs = np.asarray(h.get("val_epoch") or epochs[: len(val_accuracy)])
            mark = "o" if len(val_epochs) < len(epochs) or len(epochs) < 3 else None
            ax_loss.plot(
                val_epochs, h["val_loss"], color=color, ls="--", marker=mark, mfc="none",
                label=f"{name} validation",
            )  # fmt: skip
            ax_acc.plot(
                val_epochs, val_accuracy, color=color, ls="--", marker=mark, mfc="none",
                label=f"{name} validation",
            )  # fmt: skip
    ax_loss.set(xlabel="epoch [passes over the training set]", ylabel="loss [cross-entropy]")
    ax_acc.set(xlabel="epoch [passes over the training set]", ylabel="accuracy [%]")
    ax_loss.set_title("Loss")
    ax_acc.set_title("Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def bars(
    values: dict[str, float],
    *,
    ylabel: str,
    title: str = "",
    fmt: str = "{:.2f}",
    log: bool = False,
    xlabel: str = "",
    color: str | None = None,
):
    """A labelled bar chart (e.g. inference time [ms] per variant); name the unit in
    ``ylabel``. Long names are slanted and anchored at their bar. Each bar has its own
    colour unless ``color`` gives one for all."""
    names = list(values)
    fig, ax = new_figure(max(5, 0.6 * len(values) + 2.5), 3.8)
    colors = color or [f"C{i % 10}" for i in range(len(names))]
    b = ax.bar(names, [values[n] for n in names], color=colors)
    ax.bar_label(b, labels=[fmt.format(values[n]) for n in names], fontsize=7, padding=2)
    ax.set(ylabel=ylabel, title=title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if log:
        ax.set_yscale("log")
        ax.margins(y=0.25)
    else:
        ax.margins(y=0.12)
    if len(names) > 3 or max((len(n) for n in names), default=0) > 10:
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor")
    ax.grid(axis="y", alpha=0.3)
    return fig


def bucket_labels(upper_bounds: Sequence[float], *, scale: float = 1e3, unit: str = "ms") -> list:
    """Range labels for histogram buckets given by their upper bounds (as Prometheus'
    ``le``): ``0-1 ms``, ``1-2 ms``, ..., ``> 5000 ms`` for the last, unbounded one.

    A bucket holds what lies above the previous bound and up to its own, so a label names
    both edges; ``scale`` converts the bounds (seconds) into ``unit``.
    """
    labels, low = [], 0.0
    for bound in upper_bounds:
        if np.isfinite(bound):
            labels.append(f"{low * scale:g}-{bound * scale:g} {unit}")
            low = bound
        else:
            labels.append(f"> {low * scale:g} {unit}")
    return labels


def latency_histogram(
    buckets: Sequence[tuple[float, float]],
    *,
    title: str = "Latency histogram",
    ylabel: str = "requests [count]",
    scale: float = 1e3,
    unit: str = "ms",
    drop_empty_tail: bool = True,
):
    """A histogram from non-cumulative ``(upper bound, count)`` buckets (as
    :func:`workbench.cloud.client.histogram_buckets` returns them), each bar labelled with
    its range (:func:`bucket_labels`). Empty buckets above the last full one are left out
    (``drop_empty_tail``); the ranges of the others stay true."""
    buckets = list(buckets)
    labels = bucket_labels([b for b, _ in buckets], scale=scale, unit=unit)
    counts = [c for _, c in buckets]
    if drop_empty_tail and any(counts):
        last = max(i for i, c in enumerate(counts) if c)
        labels, counts = labels[: last + 1], counts[: last + 1]
    fig = bars(
        dict(zip(labels, counts, strict=True)),
        ylabel=ylabel,
        xlabel=f"latency bucket [{unit}]",
        title=title,
        fmt="{:.0f}",
        color="tab:blue",
    )
    fig.axes[0].yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    return fig


def pareto_frontier(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the points no other point beats (smaller or equal x with larger y, or
    smaller x with equal y), in order of x: the best y for each budget of x."""
    order = sorted(points, key=lambda n: (points[n][0], -points[n][1]))
    front, best = [], -np.inf
    for name in order:
        if points[name][1] > best:
            front.append(name)
            best = points[name][1]
    return front


def scatter_tradeoff(
    points: dict[str, tuple[float, float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = True,
    frontier: bool = True,
    highlight: Sequence[str] = (),
):
    """Points (x, y) with the Pareto frontier (smaller x, larger y is better) drawn.

    The points on the frontier (:func:`pareto_frontier`) and those in ``highlight`` are
    coloured and named on the plot (labels placed apart by :func:`place_labels`); the
    others are grey and counted in the legend: the tables beside the plot name them.
    With ``frontier=False`` every point is named.
    """
    fig, ax = new_figure(7.5, 4.6)
    front = pareto_frontier(points) if frontier and points else list(points)
    named = [n for n in points if n in front or n in highlight]
    others = [n for n in points if n not in named]
    if others:
        ax.scatter(
            [points[n][0] for n in others],
            [points[n][1] for n in others],
            s=28,
            facecolor="none",
            edgecolor="gray",
            label=f"other points ({len(others)}; named in the table)",
        )
    for i, n in enumerate(named):
        marker = "*" if n in highlight else "o"
        ax.scatter(*points[n], s=90 if marker == "*" else 40, color=f"C{i % 10}", marker=marker)
    if frontier and len(front) > 1:
        ax.step(
            *zip(*(points[n] for n in front), strict=True),
            where="post",
            color="gray",
            ls=":",
            label="Pareto frontier (named points)",
        )
    if logx and points:
        log_axis(ax, "x")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    ax.margins(x=0.08, y=0.1)
    place_labels(ax, [(*points[n], n) for n in named], avoid=[points[n] for n in others])
    return fig


def crossover(
    grid: np.ndarray,
    *,
    rtts_ms: np.ndarray,
    uplinks_mbps: np.ndarray,
    edge_ms: float,
    links: dict,
    point: tuple[float, float] | None = None,
    point_cloud_ms: float | None = None,
    edge_label: str = "edge",
):
    """Where the edge wins: cloud latency contours over (uplink, RTT), edge-wins region shaded.

    Args:
        grid: modelled cloud latency [ms], rows = RTTs, columns = uplinks
            (:func:`workbench.network.latency.latency_grid`).
        edge_ms: the edge's latency; the region where the cloud is slower is shaded green.
        links: links to mark (``name -> Link``); their names are placed inside the plot.
        point: an (uplink, RTT) to mark with a star, with its modelled cloud latency.
    """
    fig, ax = new_figure(7.8, 5.2)
    if (grid > edge_ms).any():
        ax.contourf(
            uplinks_mbps,
            rtts_ms,
            grid > edge_ms,
            levels=[0.5, 1.5],
            colors=["tab:green"],
            alpha=0.25,
        )
    levels = [v for v in (1, 3, 10, 30, 100, 300, 1000, 3000) if grid.min() < v < grid.max()]
    if levels:
        cs = ax.contour(uplinks_mbps, rtts_ms, grid, levels=levels, colors="gray", linewidths=0.6)
        ax.clabel(
            cs,
            fmt="%g ms",
            fontsize=7,
            manual=_inner_label_positions(cs, uplinks_mbps, rtts_ms),
        )
    if grid.min() < edge_ms < grid.max():
        ax.contour(uplinks_mbps, rtts_ms, grid, levels=[edge_ms], colors="tab:green", linewidths=2)
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(uplinks_mbps.min(), uplinks_mbps.max()),
        ylim=(rtts_ms.min(), rtts_ms.max()),
        xlabel="uplink [Mbit/s]",
        ylabel="round-trip time [ms]",
    )
    log_axis(ax, "x")
    log_axis(ax, "y")
    items = [(p.uplink_mbps, p.rtt_ms, p.label) for p in links.values()]
    ax.scatter([i[0] for i in items], [i[1] for i in items], color="k", s=18, clip_on=False)
    title = f"{edge_label} (p50 {edge_ms:.2f} ms) wins in the green region"
    if point is not None and point_cloud_ms is not None:
        ax.scatter(*point, color="tab:red", s=80, marker="*", zorder=5, clip_on=False)
        winner = "edge" if edge_ms < point_cloud_ms else "cloud"
        title += f"\nyou: cloud {point_cloud_ms:.1f} ms vs edge {edge_ms:.2f} ms -> {winner} wins"
    ax.set_title(title)
    place_labels(ax, items, avoid=[point] if point is not None else ())
    return fig


def crossover_devices(
    grid: np.ndarray,
    *,
    rtts_ms: np.ndarray,
    uplinks_mbps: np.ndarray,
    edge_ms: dict[str, float],
    links: dict,
    point: tuple[float, float] | None = None,
    point_cloud_ms: float | None = None,
):
    """Where each device's edge model answers before the cloud, over (uplink, RTT).

    Args:
        grid: modelled cloud latency [ms], rows = RTTs, columns = uplinks
            (:func:`workbench.network.latency.latency_grid`).
        edge_ms: each device's edge latency (p50, measured or estimated) by name; one line
            per device where the cloud's latency equals it: below and left of its line the
            cloud answers first, above and right the device does. A device faster than the
            cloud anywhere on the grid, or slower everywhere, is named in the legend.
        links: links to mark (``name -> Link``).
        point: an (uplink, RTT) to mark with a star, with its modelled cloud latency.
    """
    from matplotlib.lines import Line2D

    fig, ax = new_figure(8.4, 5.4)
    levels = [v for v in (1, 3, 10, 30, 100, 300, 1000, 3000) if grid.min() < v < grid.max()]
    if levels:
        cs = ax.contour(uplinks_mbps, rtts_ms, grid, levels=levels, colors="0.7", linewidths=0.6)
        ax.clabel(
            cs, fmt="%g ms", fontsize=7, manual=_inner_label_positions(cs, uplinks_mbps, rtts_ms)
        )
    handles = [Line2D([], [], color="0.7", lw=0.6, label="cloud latency [ms]")]
    for i, (name, ms) in enumerate(sorted(edge_ms.items(), key=lambda kv: kv[1])):
        color = f"C{i % 10}"
        if grid.min() < ms < grid.max():
            ax.contour(uplinks_mbps, rtts_ms, grid, levels=[ms], colors=color, linewidths=2)
            label = f"{name} ({ms:.2f} ms)"
        elif ms <= grid.min():
            label = f"{name} ({ms:.2f} ms): faster than the cloud everywhere here"
        else:
            label = f"{name} ({ms:.1f} ms): the cloud is faster everywhere here"
        handles.append(Line2D([], [], color=color, lw=2, label=label))
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(uplinks_mbps.min(), uplinks_mbps.max()),
        ylim=(rtts_ms.min(), rtts_ms.max()),
        xlabel="uplink [Mbit/s]",
        ylabel="round-trip time [ms]",
    )
    log_axis(ax, "x")
    log_axis(ax, "y")
    items = [(p.uplink_mbps, p.rtt_ms, p.label) for p in links.values()]
    ax.scatter([i[0] for i in items], [i[1] for i in items], color="k", s=18, clip_on=False)
    title = "Each line: where the cloud is as fast as that device (cloud first below-left)"
    if point is not None and point_cloud_ms is not None:
        ax.scatter(*point, color="tab:red", s=80, marker="*", zorder=5, clip_on=False)
        first = [n for n, ms in edge_ms.items() if ms < point_cloud_ms]
        title += (
            f"\nyou: cloud {point_cloud_ms:.1f} ms; devices first: {', '.join(first) or 'none'}"
        )
    ax.set_title(title, fontsize=10)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    place_labels(ax, items, avoid=[point] if point is not None else ())
    return fig


def _inner_label_positions(cs, xs: np.ndarray, ys: np.ndarray) -> list[tuple[float, float]]:
    """One label position per contour level: the point of its line nearest the plot's
    centre (in log coordinates) among those well inside the frame, so no label is clipped."""
    lx, ly = np.log10(xs), np.log10(ys)
    centre = np.array([lx.mean(), ly.mean()])
    span = np.array([np.ptp(lx), np.ptp(ly)])
    low, high = centre - 0.46 * span, centre + 0.46 * span
    positions = []
    for path in cs.get_paths():
        vertices = path.vertices
        if not len(vertices):
            continue
        logs = np.log10(np.clip(vertices, 1e-300, None))
        inside = np.all((logs >= low) & (logs <= high), axis=1)
        if not inside.any():
            continue
        candidates = logs[inside]
        best = candidates[np.argmin(np.sum(((candidates - centre) / span) ** 2, axis=1))]
        positions.append((10 ** best[0], 10 ** best[1]))
    return positions


def best_split_steps(
    curves: dict[str, tuple[np.ndarray, list[int]]], *, labels: list[str], title: str, ax=None
):
    """Best split (position in ``labels``) against uplink bandwidth, one step line per named
    curve (e.g. per RTT). Only the cuts some curve picks are named on the y axis."""
    if ax is None:
        fig, ax = new_figure(8, 4)
    used = sorted({c for _, chosen in curves.values() for c in chosen})
    for i, (name, (ups, chosen)) in enumerate(curves.items()):
        ax.step(ups, chosen, where="mid", label=name, color=f"C{i}", lw=1.8)
    if used:
        ax.set_yticks(used, [labels[c] for c in used], fontsize=7)
        ax.set_ylim(min(used) - 0.6, max(used) + 0.6)
    ax.set(xlabel="uplink [Mbit/s]", ylabel="best cut [after layer]", title=title)
    log_axis(ax, "x")
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


def split_times(
    rows: list[dict],
    *,
    title: str = "Where the time goes, by cut",
    edge_runtime: str = "TFLite (LiteRT)",
    cloud_runtime: str = "TFLite (LiteRT)",
):
    """Edge-prefix and cloud-suffix time per cut (top) and the int8 activation sent (bottom).

    The legend names each part's runtime (both TFLite on this CPU by default, as
    :func:`workbench.collab.split.measure_splits` measures them), so that times of two
    different runtimes are never read as one model cut in two.

    Args:
        rows: :func:`workbench.collab.split.measure_splits` rows.
    """
    fig, (ax1, ax2) = new_figure(max(8, 0.45 * len(rows) + 3), 6.4, 2, 1, sharex=True)
    pos = np.arange(len(rows))
    ax1.bar(
        pos - 0.2, [r["edge_ms"] for r in rows], width=0.4, label=f"edge prefix ({edge_runtime})"
    )
    ax1.bar(
        pos + 0.2, [r["cloud_ms"] for r in rows], width=0.4, label=f"cloud suffix ({cloud_runtime})"
    )
    ax1.set(ylabel="time [ms]", title=title)
    same = edge_runtime == cloud_runtime
    ax1.legend(
        fontsize=8,
        title="one runtime, one CPU" if same else "different runtimes, one CPU",
        title_fontsize=8,
    )
    ax1.grid(axis="y", alpha=0.3)
    ax2.bar(pos, [r["int8_bytes"] / 1024 for r in rows], color="tab:purple")
    ax2.set(ylabel="activation sent [KiB, int8]", xlabel="cut [after layer]")
    ax2.set_xticks(
        pos, [r["after"] for r in rows], rotation=60, fontsize=7, ha="right", rotation_mode="anchor"
    )
    ax2.grid(axis="y", alpha=0.3)
    return fig


def cascade(
    sweeps: dict[str, list[dict]],
    choices: dict[str, dict],
    *,
    cloud_accuracy: float,
    title: str = "Cascade: accuracy against cloud calls (stars: chosen thresholds)",
):
    """Accuracy [%] against the share of requests sent to the cloud [%], one curve per edge
    model.

    Args:
        sweeps: ``{edge model: cascade_sweep rows}`` (:func:`workbench.collab.cascade.cascade_sweep`).
        choices: ``{edge model: chosen row}`` (:func:`workbench.collab.cascade.pick_threshold`).
    """
    fig, ax = new_figure(8, 4.2)
    for i, (name, rows) in enumerate(sweeps.items()):
        ax.plot(
            [100 * r["cloud_fraction"] for r in rows],
            [100 * r["accuracy"] for r in rows],
            marker="o",
            ms=3,
            color=f"C{i}",
            label=name,
        )
        if name in choices:
            c = choices[name]
            ax.scatter(
                [100 * c["cloud_fraction"]],
                [100 * c["accuracy"]],
                s=140,
                marker="*",
                color=f"C{i}",
                edgecolor="k",
                zorder=5,
            )
    ax.axhline(100 * cloud_accuracy, color="tab:red", ls="--", label="cloud only")
    ax.set(
        xlabel="requests sent to the cloud [%]",
        ylabel="accuracy [%]",
        title=title,
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def best_split_panels(
    rows: list[dict],
    *,
    slowdowns: dict[str, float],
    server_overhead_ms: float,
    response_bytes: int,
    rtts_ms: Sequence[float] = (5, 50, 300),
):
    """The best cut against uplink bandwidth: one row of panels per device, one column per
    RTT. A device's prefix takes ``slowdowns[device]`` times this CPU's measured time (its
    peak against this CPU's: an estimate). One line per panel, so no line hides another when
    several settings pick the same cut. ``rows``: :func:`workbench.collab.split.measure_splits`."""
    from workbench.collab import split

    ups = np.logspace(-1, 3, 60)
    positions = {r["index"]: i for i, r in enumerate(rows)}
    labels = [r["after"] for r in rows]
    devices = list(slowdowns)
    panels = {
        (d, c): [
            positions[i]
            for i in split.best_split_curve(
                [{**r, "edge_ms": r["edge_ms"] * slowdowns[device]} for r in rows],
                rtt_ms=rtt,
                uplinks_mbps=ups,
                server_overhead_ms=server_overhead_ms,
                response_bytes=response_bytes,
            )
        ]
        for d, device in enumerate(devices)
        for c, rtt in enumerate(rtts_ms)
    }
    used = sorted({i for chosen in panels.values() for i in chosen})
    fig, axes = new_figure(
        4.2 * len(rtts_ms), 1.6 * len(devices) + 1.0, len(devices), len(rtts_ms),
        sharex=True, sharey=True,
    )  # fmt: skip
    axes = np.atleast_2d(axes)
    for (d, c), chosen in panels.items():
        ax = axes[d, c]
        best_split_steps(
            {f"RTT {rtts_ms[c]:g} ms": (ups, chosen)},
            labels=labels,
            title=f"{devices[d]} ({slowdowns[devices[d]]:.3g}x this CPU), RTT {rtts_ms[c]:g} ms",
            ax=ax,
        )
        ax.title.set_fontsize(8)
        if d < len(devices) - 1:
            ax.set_xlabel("")
        if c > 0:
            ax.set_ylabel("")
    for ax in axes.flat:  # shared y: every panel names every cut some panel picks
        ax.set_yticks(used, [labels[i] for i in used], fontsize=7)
        ax.set_ylim(min(used) - 0.6, max(used) + 0.6)
    fig.suptitle("Best cut against uplink bandwidth, per device (downlink 3x the uplink)")
    return fig
