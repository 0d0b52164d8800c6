"""The plots on small data, as the notebooks call them: what they show, that every numeric
axis names its unit, and that nothing is clipped or printed over something else."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier

from workbench.network import latency
from workbench.report import layout, plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_confusion_counts_every_pair_including_absent_classes():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 2, 0])
    fig = plots.confusion(y_true, y_pred, ["cat", "dog", "frog", "ship"], title="Test set")
    ax = fig.axes[0]
    expected = [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    assert ax.images[0].get_array().tolist() == expected
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(v) for row in expected for v in row)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "frog", "ship"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "frog", "ship"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "predicted class",
        "true class",
        "Test set",
    )
    assert len(fig.axes) == 2  # the matrix and its colour bar
    assert fig.axes[1].get_ylabel() == "samples [count]"


def test_confusion_has_a_default_title():
    fig = plots.confusion(np.array([0, 1]), np.array([0, 1]), ["a", "b"])
    assert fig.axes[0].get_title() == "Confusion matrix"


def test_decision_regions_colour_each_class_like_its_samples():
    iris = load_iris()
    x2, y = iris.data[:, [2, 3]], iris.target
    model = KNeighborsClassifier(5).fit(x2, y)
    fig = plots.decision_regions(
        model,
        x2,
        y,
        feature_names=["petal length (cm)", "petal width (cm)"],
        class_names=list(iris.target_names),
        title="k = 5",
    )
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "petal length (cm)",
        "petal width (cm)",
        "k = 5",
    )
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(iris.target_names)
    regions, *points = ax.collections
    assert len(points) == 3 and [len(p.get_offsets()) for p in points] == [50, 50, 50]
    # The region of class c (contour level c) has the colour of class c's points.
    for c, p in enumerate(points):
        assert regions.get_facecolor()[c][:3] == pytest.approx(p.get_facecolor()[0][:3])
    # The regions cover the data with a margin of 0.5.
    assert ax.get_xlim()[0] <= x2[:, 0].min() - 0.49 and ax.get_xlim()[1] >= x2[:, 0].max() + 0.49


def test_decision_regions_draw_on_a_given_axis():
    x2 = np.array([[0.0, 0.0], [0.1, 0.2], [1.0, 1.0], [1.1, 0.9]])
    y = np.array([0, 0, 1, 1])
    model = KNeighborsClassifier(1).fit(x2, y)
    fig, (left, right) = plt.subplots(1, 2)
    out = plots.decision_regions(
        model, x2, y, feature_names=["a", "b"], class_names=["low", "high"], ax=right
    )
    assert out is fig and right.collections and not left.collections


def boxes(fig, texts):
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]


def overlapping(bbs) -> list[tuple[int, int]]:
    return [(i, j) for i, a in enumerate(bbs) for j, b in enumerate(bbs[:i]) if a.overlaps(b)]


def inside(fig, bbs) -> bool:
    frame = fig.bbox
    return all(
        b.x0 >= frame.x0 - 1
        and b.x1 <= frame.x1 + 1
        and b.y0 >= frame.y0 - 1
        and b.y1 <= frame.y1 + 1
        for b in bbs
    )


def tick_labels(ax, axis="x"):
    return [t for t in getattr(ax, f"get_{axis}ticklabels")() if t.get_text()]


# Points as crowded as notebook 03's variants (gzip KiB, accuracy %): near-ties on both axes.
VARIANTS = {
    "float32": (536.6, 37.7),
    "dynamic_range": (147.2, 38.0),
    "float16": (268.3, 37.7),
    "int8": (146.9, 37.3),
    "qat_int8": (146.5, 34.0),
    "slim25_float32": (317.9, 28.3),
    "slim25_int8": (88.0, 28.0),
    "slim25_dynamic_range": (88.3, 28.0),
    "slim25_pruned50_int8": (63.5, 30.7),
    "slim25_pruned80_int8": (35.4, 30.7),
    "slim25_pruned80_float32": (100.4, 30.7),
    "slim25_pruned80_all_int8": (33.0, 18.0),
    "slim25_pqat80_int8": (42.0, 34.0),
    "slim25_pcqat80_c8_int8": (29.6, 27.0),
}


def test_the_pareto_frontier_is_the_best_accuracy_for_each_size():
    front = plots.pareto_frontier(VARIANTS)
    assert front == [
        "slim25_pcqat80_c8_int8",
        "slim25_pruned80_int8",
        "slim25_pqat80_int8",
        "int8",
        "dynamic_range",
    ]
    # equal size: only the more accurate one; equal accuracy: only the smaller one
    assert plots.pareto_frontier({"a": (1, 1), "b": (1, 2), "c": (2, 2)}) == ["b"]


def test_a_tradeoff_names_the_frontier_and_highlights_without_overlap():
    points = {**VARIANTS, "distilled student int8": (40.0, 31.0)}
    fig = plots.scatter_tradeoff(
        points,
        xlabel="gzip size [KiB] (log)",
        ylabel="test accuracy [%]",
        highlight=["distilled student int8"],
    )
    fig.canvas.draw()
    ax = fig.axes[0]
    named = sorted(t.get_text() for t in ax.texts)
    assert named == sorted([*plots.pareto_frontier(VARIANTS), "distilled student int8"])
    labels = boxes(fig, ax.texts)
    assert not overlapping(labels), "labels printed over each other"
    assert inside(fig, labels)
    ticks = boxes(fig, tick_labels(ax))
    assert len(ticks) >= 3 and not overlapping(ticks), "x ticks run together"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == f"other points ({len(points) - len(named)}; named in the table)"


def test_place_labels_keeps_crowded_labels_apart():
    fig, ax = layout.new_figure(5, 4)
    xs = np.linspace(1, 2, 8)
    ax.scatter(xs, xs)
    ax.set(xlim=(0, 3), ylim=(0, 3))
    placed = layout.place_labels(ax, [(x, x, f"point number {i}") for i, x in enumerate(xs)])
    assert len(placed) == 8 and not overlapping(boxes(fig, placed))


def test_log_axes_label_round_numbers_that_do_not_run_together():
    fig, ax = layout.new_figure(5, 3)
    ax.plot([28, 600], [0, 1])
    layout.log_axis(ax, "x")
    fig.canvas.draw()
    texts = [t.get_text() for t in tick_labels(ax)]
    assert "50" in texts and "100" in texts and "500" in texts
    assert not overlapping(boxes(fig, tick_labels(ax)))


def test_histogram_buckets_are_labelled_with_both_edges():
    assert plots.bucket_labels([0.001, 0.002, 0.005, float("inf")]) == [
        "0-1 ms",
        "1-2 ms",
        "2-5 ms",
        "> 5 ms",
    ]
    fig = plots.latency_histogram([(0.002, 3), (0.005, 7), (0.01, 0), (float("inf"), 0)])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0-2 ms", "2-5 ms"]
    assert [int(p.get_height()) for p in ax.patches] == [3, 7]
    assert ax.get_ylabel() == "requests [count]" and "[ms]" in ax.get_xlabel()


def crossover_figure():
    rtts, ups = np.logspace(-1, 3, 60), np.logspace(-1, 3, 60)
    grid = latency.latency_grid(2.0, 4000, 200, rtts_ms=rtts, uplinks_mbps=ups)
    return plots.crossover(
        grid,
        rtts_ms=rtts,
        uplinks_mbps=ups,
        edge_ms=9.5,
        links=latency.LINKS,
        point=(10.0, 50.0),
        point_cloud_ms=55.0,
    )


def test_the_crossover_keeps_every_label_inside_the_plot():
    fig = crossover_figure()
    fig.canvas.draw()
    ax = fig.axes[0]
    link_names = {p.label for p in latency.LINKS.values()}
    assert link_names <= {t.get_text() for t in ax.texts}
    frame = ax.get_window_extent(fig.canvas.get_renderer())
    for box, text in zip(boxes(fig, ax.texts), [t for t in ax.texts if t.get_text()], strict=True):
        assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1, f"{text.get_text()!r} clipped"
        assert frame.y0 - 1 <= box.y0 and box.y1 <= frame.y1 + 1, f"{text.get_text()!r} clipped"
    contour_labels = [t.get_text() for t in ax.texts if t.get_text().endswith(" ms")]
    assert len(contour_labels) >= 3
    assert ax.get_xlabel() == "uplink [Mbit/s]" and ax.get_ylabel() == "round-trip time [ms]"


SPLIT_ROWS = [
    {"index": i, "after": name, "edge_ms": e, "cloud_ms": c, "int8_bytes": b}
    for i, (name, e, c, b) in enumerate(
        [
            ("input", 0.0, 3.0, 3072),
            ("conv1", 0.1, 2.8, 32768),
            ("pool1", 0.15, 2.0, 8192),
            ("dense", 0.4, 0.5, 512),
            ("probs", 0.45, 0.0, 10),
        ]
    )
]


def test_best_split_panels_give_every_rtt_its_own_visible_line():
    fig = plots.best_split_panels(
        SPLIT_ROWS,
        slowdowns={"this CPU": 1.0, "slow": 30.0},
        server_overhead_ms=1.0,
        response_bytes=200,
    )
    axes = [ax for ax in fig.axes if ax.lines]
    assert len(axes) == 6 and all(len(ax.lines) == 1 for ax in axes)
    titles = [ax.get_title() for ax in axes]
    assert sum("RTT 5 ms" in t for t in titles) == 2 and sum("RTT 300 ms" in t for t in titles) == 2
    # every cut a panel picks is named on the shared y axis
    picked = {int(round(y)) for ax in axes for y in ax.lines[0].get_ydata()}
    names = {t.get_text() for t in tick_labels(axes[0], "y")}
    assert {SPLIT_ROWS[i]["after"] for i in picked} <= names


def test_split_times_name_the_runtime_of_each_part():
    fig = plots.split_times(SPLIT_ROWS, cloud_runtime="TensorFlow")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["edge prefix (TFLite (LiteRT))", "cloud suffix (TensorFlow)"]
    assert fig.axes[0].get_legend().get_title().get_text() == "different runtimes, one CPU"
    same = plots.split_times(SPLIT_ROWS)
    assert same.axes[0].get_legend().get_title().get_text() == "one runtime, one CPU"
    assert fig.axes[0].get_ylabel() == "time [ms]"


def test_numeric_axes_name_their_units():
    figs = [
        plots.cv_curve({1: 0.9, 3: 0.95, 5: 0.93}, 3),
        plots.training_curves({"a": {"loss": [2.0, 1.0], "accuracy": [0.3, 0.5]}}),
        plots.cascade(
            {
                "edge": [
                    {"cloud_fraction": 0.0, "accuracy": 0.5},
                    {"cloud_fraction": 1.0, "accuracy": 0.6},
                ]
            },
            {},
            cloud_accuracy=0.6,
        ),
        crossover_figure(),
    ]
    for fig in figs:
        for ax in fig.axes:
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                assert "[" in label, f"no unit in {label!r}"
    cv = figs[0].axes[0]
    assert list(cv.lines[0].get_ydata()) == pytest.approx([90.0, 95.0, 93.0])
