"""The notebooks' controls (workbench.report.widgets): the figure for one setting, the slider
that redraws it, and the plain text a saved notebook shows in the widget's place."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from workbench.report import widgets


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def regions() -> widgets.KnnRegions:
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=0.2, stratify=iris.target, random_state=0
    )
    return widgets.KnnRegions(
        x_train,
        y_train,
        x_test,
        y_test,
        feature_names=list(iris.feature_names),
        class_names=[str(n) for n in iris.target_names],
    )


def test_the_figure_shows_k_and_the_accuracy_on_the_two_features(regions):
    fig = regions.figure(7)
    ax = fig.axes[0]
    assert ax.get_title() == f"k = 7: test accuracy on these 2 features {regions.accuracy(7):.3f}"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("petal length (cm)", "petal width (cm)")
    # k = 1 memorises the training points: all training samples are classified as labelled.
    train2 = regions.x_train[:, [2, 3]]
    assert np.mean(regions.fit(1).predict(train2) == regions.y_train) > 0.98


def test_the_accuracy_is_measured_on_the_test_rows(regions):
    everyone = len(regions.x_train)  # every training point votes: the first majority class wins
    majority = np.bincount(regions.y_train).argmax()
    assert regions.accuracy(everyone) == pytest.approx(np.mean(regions.y_test == majority))


def test_moving_the_slider_redraws_with_the_new_k(regions, monkeypatch):
    drawn = []
    monkeypatch.setattr(regions, "draw", drawn.append)
    ctrl = regions.control(k=5, k_max=25)
    slider = ctrl.widget.children[0]
    assert (slider.value, slider.min, slider.max, slider.step) == (5, 1, 25, 2)
    slider.value = 9
    assert drawn and drawn[-1] == 9


def test_the_callback_shows_one_figure_and_closes_it(regions, monkeypatch):
    from IPython import display as ipy_display

    shown = []
    monkeypatch.setattr(ipy_display, "display", lambda obj: shown.append(obj))
    before = plt.get_fignums()
    regions.draw(3)
    assert len(shown) == 1 and shown[0].axes[0].get_title().startswith("k = 3:")
    assert plt.get_fignums() == before, "the figure is closed once shown"


def test_a_static_view_shows_a_sentence_not_the_widget_repr(regions):
    ctrl = regions.control(k=5, k_max=25)
    bundle = ctrl._repr_mimebundle_()
    assert bundle["text/plain"].startswith("[interactive: a k slider (1 to 25)")
    assert "interactive(children" not in bundle["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in bundle  # the live widget is kept
