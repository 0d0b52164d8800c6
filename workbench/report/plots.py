"""Plots the notebooks share. Each returns its matplotlib Figure (and records nothing)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np


def cv_curve(scores: dict[int, float], chosen: int, *, title: str = "Cross-validated accuracy"):
    """Accuracy against k, with the chosen k marked."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ks = sorted(scores)
    ax.plot(ks, [scores[k] for k in ks], marker="o")
    ax.axvline(chosen, color="tab:red", ls="--", label=f"chosen k = {chosen}")
    ax.set(xlabel="k (neighbours)", ylabel="mean CV accuracy", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], *, title: str = ""
):
    """A labelled confusion matrix with counts in each cell (scikit-learn's display).

    Rows are the true classes, columns the predicted ones, both in the order of
    ``class_names`` (labels ``0 .. n-1``); classes absent from both arrays still get
    their row and column.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    n = len(class_names)
    size = 3 + 0.45 * n
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ConfusionMatrixDisplay.from_predictions(
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
    ax.set(xlabel="predicted", ylabel="true", title=title or "Confusion matrix")
    fig.tight_layout()
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
    """
    from sklearn.inspection import DecisionBoundaryDisplay

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
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
    ax.legend(loc="lower right", fontsize=8)
    return fig


def image_grid(images: np.ndarray, labels: Sequence[str], *, cols: int = 8, title: str = ""):
    """A grid of small images with a caption under each."""
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.45))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, img, label in zip(np.ravel(axes), images, labels, strict=False):
        ax.imshow(img)
        ax.set_title(label, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_curves(histories: dict[str, dict[str, list[float]]]):
    """Loss and accuracy, train (solid) and validation (dashed), for each named run."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i}"
        epochs = np.arange(1, len(h["loss"]) + 1)
        ax_loss.plot(epochs, h["loss"], color=color, label=f"{name} train")
        ax_acc.plot(epochs, h["accuracy"], color=color, label=f"{name} train")
        if "val_loss" in h:
            ax_loss.plot(epochs, h["val_loss"], color=color, ls="--", label=f"{name} validation")
            ax_acc.plot(epochs, h["val_accuracy"], color=color, ls="--", label=f"{name} validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def bars(
    values: dict[str, float],
    *,
    ylabel: str,
    title: str = "",
    fmt: str = "{:.2f}",
    log: bool = False,
):
    """A labelled bar chart (e.g. inference time [ms] per variant)."""
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(values) + 2), 3.4))
    names = list(values)
    b = ax.bar(names, [values[n] for n in names], color=[f"C{i}" for i in range(len(names))])
    ax.bar_label(b, labels=[fmt.format(values[n]) for n in names], fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    if log:
        ax.set_yscale("log")
    ax.tick_params(axis="x", rotation=30)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def scatter_tradeoff(
    points: dict[str, tuple[float, float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = True,
    frontier: bool = True,
):
    """Labelled points (x, y) with the Pareto frontier (smaller x, larger y is better) drawn."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (name, (x, y)) in enumerate(points.items()):
        ax.scatter(x, y, s=40, color=f"C{i % 10}")
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if frontier and points:
        pts = sorted(points.values())
        best, front = -np.inf, []
        for x, y in pts:
            if y > best:
                front.append((x, y))
                best = y
        ax.step(
            *zip(*front, strict=True), where="post", color="gray", ls=":", label="Pareto frontier"
        )
        ax.legend(fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
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
        links: links to mark (``name -> Link``).
        point: an (uplink, RTT) to mark with a star, with its modelled cloud latency.
    """
    fig, ax = plt.subplots(figsize=(7.5, 5))
    if (grid > edge_ms).any():
        ax.contourf(
            uplinks_mbps,
            rtts_ms,
            grid > edge_ms,
            levels=[0.5, 1.5],
            colors=["tab:green"],
            alpha=0.25,
        )
    cs = ax.contour(
        uplinks_mbps,
        rtts_ms,
        grid,
        levels=[1, 3, 10, 30, 100, 300, 1000],
        colors="gray",
        linewidths=0.6,
    )
    ax.clabel(cs, fmt="%g ms", fontsize=7)
    if grid.min() < edge_ms < grid.max():
        ax.contour(uplinks_mbps, rtts_ms, grid, levels=[edge_ms], colors="tab:green", linewidths=2)
    for p in links.values():
        ax.scatter(p.uplink_mbps, p.rtt_ms, color="k", s=18)
        ax.annotate(
            p.label,
            (p.uplink_mbps, p.rtt_ms),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
        )
    title = f"{edge_label} (p50 {edge_ms:.2f} ms) wins in the green region"
    if point is not None and point_cloud_ms is not None:
        ax.scatter(*point, color="tab:red", s=80, marker="*", zorder=5)
        winner = "edge" if edge_ms < point_cloud_ms else "cloud"
        title += f"\nyou: cloud {point_cloud_ms:.1f} ms vs edge {edge_ms:.2f} ms -> {winner} wins"
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="uplink [Mbit/s]",
        ylabel="round-trip time [ms]",
        title=title,
    )
    fig.tight_layout()
    return fig


def best_split_steps(
    curves: dict[str, tuple[np.ndarray, list[int]]], *, labels: list[str], title: str, ax=None
):
    """Best split index against uplink bandwidth, one step line per named curve (e.g. per RTT)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 4))
    for name, (ups, chosen) in curves.items():
        ax.step(ups, chosen, where="mid", label=name)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set(xscale="log", xlabel="uplink [Mbit/s]", ylabel="best cut (after layer)", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax.figure


def split_times(rows: list[dict], *, title: str = "Where the time goes, by cut"):
    """Edge-prefix and cloud-suffix time per cut (top) and the int8 activation sent (bottom).

    Args:
        rows: :func:`workbench.collab.split.measure_splits` rows.
    """
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 0.45 * len(rows) + 3), 6), sharex=True)
    pos = np.arange(len(rows))
    ax1.bar(pos - 0.2, [r["edge_ms"] for r in rows], width=0.4, label="edge prefix (TFLite)")
    ax1.bar(pos + 0.2, [r["cloud_ms"] for r in rows], width=0.4, label="cloud suffix (TensorFlow)")
    ax1.set(ylabel="time [ms]", title=title)
    ax1.legend()
    ax1.grid(axis="y", alpha=0.3)
    ax2.bar(pos, [r["int8_bytes"] / 1024 for r in rows], color="tab:purple")
    ax2.set(ylabel="activation [KiB, int8]", xlabel="cut after layer")
    ax2.set_xticks(pos, [r["after"] for r in rows], rotation=75, fontsize=7)
    ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def cascade(
    sweeps: dict[str, list[dict]],
    choices: dict[str, dict],
    *,
    cloud_accuracy: float,
    title: str = "Cascade: accuracy against cloud calls (stars: chosen thresholds)",
):
    """Accuracy against the share of requests sent to the cloud, one curve per edge model.

    Args:
        sweeps: ``{edge model: cascade_sweep rows}`` (:func:`workbench.collab.cascade.cascade_sweep`).
        choices: ``{edge model: chosen row}`` (:func:`workbench.collab.cascade.pick_threshold`).
    """
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (name, rows) in enumerate(sweeps.items()):
        ax.plot(
            [r["cloud_fraction"] for r in rows],
            [100 * r["accuracy"] for r in rows],
            marker="o",
            ms=3,
            color=f"C{i}",
            label=name,
        )
        if name in choices:
            c = choices[name]
            ax.scatter(
                [c["cloud_fraction"]],
                [100 * c["accuracy"]],
                s=140,
                marker="*",
                color=f"C{i}",
                edgecolor="k",
                zorder=5,
            )
    ax.axhline(100 * cloud_accuracy, color="tab:red", ls="--", label="cloud only")
    ax.set(xlabel="share of requests sent to the cloud", ylabel="accuracy [%]", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def best_split_panels(
    rows: list[dict],
    *,
    edge_slowdown: float,
    server_overhead_ms: float,
    response_bytes: int,
    rtts_ms: Sequence[float] = (5, 50, 300),
):
    """The best cut against uplink bandwidth at a few RTTs: this CPU, and an edge
    ``edge_slowdown`` times slower (two panels). ``rows``: :func:`collab.measure_splits`."""
    from workbench.collab import split

    ups = np.logspace(-1, 3, 60)
    slow = [{**r, "edge_ms": r["edge_ms"] * edge_slowdown} for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, profile, title in (
        (axes[0], rows, "this CPU as the edge"),
        (axes[1], slow, f"what-if: edge {edge_slowdown:g}x slower"),
    ):
        curves = {
            f"RTT {rtt:g} ms": (
                ups,
                split.best_split_curve(
                    profile,
                    rtt_ms=rtt,
                    uplinks_mbps=ups,
                    server_overhead_ms=server_overhead_ms,
                    response_bytes=response_bytes,
                ),
            )
            for rtt in rtts_ms
        }
        positions = {r["index"]: i for i, r in enumerate(rows)}
        curves = {k: (u, [positions[c] for c in chosen]) for k, (u, chosen) in curves.items()}
        best_split_steps(
            curves, labels=[r["after"] for r in rows], title=f"Best cut: {title}", ax=ax
        )
    fig.tight_layout()
    return fig
