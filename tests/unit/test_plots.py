"""The scikit-learn based plots on small data, as notebooks 01 and 02 call them."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier

from workbench.report import plots


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
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted", "true", "Test set")
    assert len(fig.axes) == 2  # the matrix and its colour bar


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
