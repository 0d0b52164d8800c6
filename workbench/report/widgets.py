"""The notebooks' interactive controls and their callbacks, out of the cells and tested.

Each control pairs a function that draws the figure for one setting (a plain function,
tested like any plot) with a slider that calls it again when moved. A saved notebook cannot
run a callback: what GitHub or nbconvert shows for a widget is its plain-text form, so a
:class:`Control` replaces ipywidgets' ``interactive(children=(IntSlider(...`` with a sentence,
and the notebook shows (and records) the static figure of the chosen setting beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from workbench.models import knn
from workbench.report import plots
from workbench.report.layout import new_figure


class Control:
    """An ipywidgets control whose plain-text form is ``text`` (what a static view shows).

    Displaying it shows the live widget in JupyterLab; a saved notebook viewed without a
    kernel shows ``text`` instead of the widget's repr.
    """

    def __init__(self, widget, text: str) -> None:
        self.widget = widget
        self.text = text

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = self.text
        return bundle

    def __repr__(self) -> str:
        return self.text


def control(draw: Callable[..., None], *, text: str, **sliders: Any) -> Control:
    """A :class:`Control` that calls ``draw(**values)`` whenever a slider moves.

    Args:
        draw: shows its output itself (``display(fig)``) and returns None, so the control
            draws each figure once.
        text: what a static view of the saved notebook shows in the control's place.
        sliders: ipywidgets sliders (or values ``interactive`` accepts), by ``draw``'s
            parameter names.
    """
    import ipywidgets

    return Control(ipywidgets.interactive(draw, **sliders), text)


def show(fig) -> None:
    """Display ``fig`` once and close it (a control redraws often: closed figures free
    their memory and are not drawn again at the end of the cell)."""
    from IPython.display import display

    display(fig)
    plt.close(fig)


@dataclass
class KnnRegions:
    """k-NN's decision regions on two features of a data set, for any k (notebook 01).

    The model is :func:`workbench.models.knn.build_knn` fitted on the training rows' two
    ``features``; its accuracy is measured on the test rows' same two features.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: Sequence[str]
    class_names: Sequence[str]
    features: tuple[int, int] = (2, 3)  # iris: petal length and petal width

    def fit(self, k: int):
        """k-NN fitted on the two features of the training rows."""
        return knn.build_knn(k).fit(self.x_train[:, list(self.features)], self.y_train)

    def accuracy(self, k: int) -> float:
        """Test accuracy of :meth:`fit` (k) on the two features."""
        predicted = self.fit(k).predict(self.x_test[:, list(self.features)])
        return float(np.mean(predicted == self.y_test))

    def figure(self, k: int):
        """The decision regions for ``k``, titled with the two-feature test accuracy."""
        model = self.fit(k)
        accuracy = float(np.mean(model.predict(self.x_test[:, list(self.features)]) == self.y_test))
        return plots.decision_regions(
            model,
            self.x_train[:, list(self.features)],
            self.y_train,
            feature_names=[self.feature_names[i] for i in self.features],
            class_names=self.class_names,
            title=f"k = {k}: test accuracy on these {len(self.features)} features {accuracy:.3f}",
        )

    def draw(self, k: int) -> None:
        """The control's callback: show the figure for ``k``."""
        show(self.figure(k))

    def control(self, *, k: int, k_max: int) -> Control:
        """A k slider (odd values 1..``k_max``, starting at ``k``) redrawing the regions."""
        import ipywidgets

        def redraw(k_neighbours: int) -> None:
            self.draw(k_neighbours)

        slider = ipywidgets.IntSlider(
            value=k, min=1, max=k_max, step=2, description="k", continuous_update=False
        )
        names = " and ".join(self.feature_names[i] for i in self.features)
        return control(
            redraw,
            text=(
                f"[interactive: a k slider (1 to {k_max}) redraws k-NN's decision regions on "
                f"{names}; it needs a running kernel. A static view shows the regions of the "
                "chosen k in the recorded figure above.]"
            ),
            k_neighbours=slider,
        )


@dataclass
class CrossoverExplorer:
    """Edge against cloud over a grid of links, per device (notebook 04).

    ``cloud``: a :class:`workbench.collab.compare.CloudMeasurement` (its smallest encoding's
    loopback time and bytes); ``edge_ms``: each device's edge latency (p50) by name.
    """

    cloud: Any
    edge_ms: dict[str, float]
    links: dict
    rtts_ms: np.ndarray = None  # type: ignore[assignment]
    uplinks_mbps: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        from workbench.network import latency

        if self.rtts_ms is None:
            self.rtts_ms = np.logspace(-1, 3, 120)
        if self.uplinks_mbps is None:
            self.uplinks_mbps = np.logspace(-1, 3, 120)
        best = self.cloud.best
        self._req, self._resp = int(best["request_bytes"]), int(best["response_bytes"])
        self._loopback = float(best["loopback_p50_ms"])
        self.grid = latency.latency_grid(
            self._loopback,
            self._req,
            self._resp,
            rtts_ms=self.rtts_ms,
            uplinks_mbps=self.uplinks_mbps,
        )

    def cloud_ms(self, rtt_ms: float, uplink_mbps: float) -> float:
        """The modelled cloud latency over a link (downlink 3x the uplink, no jitter)."""
        from workbench.network import latency

        link = latency.Link("custom", "you", rtt_ms, uplink_mbps, 3 * uplink_mbps, 0, "slider")
        return latency.cloud_latency_ms(self._loopback, link, self._req, self._resp)

    def edge_wins_share(self) -> dict[str, float]:
        """Per device, the share of the grid where it answers before the cloud."""
        return {name: float(np.mean(self.grid > ms)) for name, ms in self.edge_ms.items()}

    def figure(self, rtt_ms: float = 50.0, uplink_mbps: float = 10.0):
        return plots.crossover_devices(
            self.grid,
            rtts_ms=self.rtts_ms,
            uplinks_mbps=self.uplinks_mbps,
            edge_ms=self.edge_ms,
            links=self.links,
            point=(uplink_mbps, rtt_ms),
            point_cloud_ms=self.cloud_ms(rtt_ms, uplink_mbps),
        )

    def draw(self, rtt_ms: float = 50.0, uplink_mbps: float = 10.0) -> None:
        show(self.figure(rtt_ms, uplink_mbps))

    def interact(self) -> Control:
        """RTT and uplink sliders moving the star: which devices answer before the cloud?"""
        import ipywidgets

        def slider(value: float, description: str):
            return ipywidgets.FloatLogSlider(
                value=value,
                base=10,
                min=-1,
                max=3,
                step=0.05,
                description=description,
                continuous_update=False,
            )

        return control(
            self.draw,
            text=(
                "[interactive: RTT and uplink sliders move a star over the crossover plot and "
                "name the devices that answer before the cloud there; it needs a running "
                "kernel. A static view shows the plot for RTT 50 ms and 10 Mbit/s above.]"
            ),
            rtt_ms=slider(50.0, "RTT [ms]"),
            uplink_mbps=slider(10.0, "uplink [Mbit/s]"),
        )


@dataclass
class LadderExplorer:
    """The sparsity ladder, one level at a time (notebook 03): what each level measured.

    ``rows``: :func:`workbench.edge.search.ladder`'s rows (target and measured sparsity,
    accuracy, deltas, gzip bytes, compression).
    """

    rows: list[dict]

    def describe(self, sparsity: float) -> str:
        r = next(r for r in self.rows if r["target_sparsity"] == sparsity)
        return (
            f"target sparsity {sparsity:.0%}: measured {r['measured_sparsity']:.1%}, test accuracy "
            f"{r['accuracy']:.4f} ({r['delta_pp']:+.2f} pp; validation {r['val_delta_pp']:+.2f} "
            f"pp), gzip {int(r['gzip_bytes']):,} bytes ({r['compression_x']:.1f}x smaller than "
            "the float32 TFLite file)"
        )

    def draw(self, sparsity: float) -> None:
        print(self.describe(sparsity))

    def interact(self) -> Control:
        """A slider over the levels the search built, printing what each measured."""
        import ipywidgets

        levels = [r["target_sparsity"] for r in self.rows]
        return control(
            self.draw,
            text=(
                "[interactive: a slider over the sparsity levels prints what each measured; it "
                "needs a running kernel. A static view: the ladder table above has every level.]"
            ),
            sparsity=ipywidgets.SelectionSlider(
                options=levels, value=levels[0], description="sparsity", continuous_update=False
            ),
        )


@dataclass
class CascadeExplorer:
    """The edge-first cascade at any confidence threshold (notebook 05).

    ``edge_probs``, ``cloud_probs``: each model's class probabilities on the same test images;
    ``edge_ms``: the edge model's latency on the device chosen; ``cloud_ms``: the cloud's
    end-to-end latency per link.
    """

    edge_probs: np.ndarray
    cloud_probs: np.ndarray
    y: np.ndarray
    edge_ms: float
    cloud_ms: dict[str, float]
    device: str = "the device"

    def row(self, threshold: float) -> dict:
        """Accuracy, share sent to the cloud, mean and p95 latency per link at ``threshold``."""
        from workbench.collab import cascade

        (row,) = cascade.cascade_sweep(
            self.edge_probs,
            self.cloud_probs,
            self.y,
            thresholds=np.array([threshold]),
            edge_ms=self.edge_ms,
            cloud_ms_per_link=self.cloud_ms,
        )
        return row

    def figure(self, threshold: float = 0.6):
        """Mean and p95 latency per link at ``threshold``, titled with accuracy and cloud share."""
        r = self.row(threshold)
        fig, ax = new_figure(8, 3.8)
        names = list(self.cloud_ms)
        x = np.arange(len(names))
        ax.bar(x - 0.2, [r[f"{n}_mean_ms"] for n in names], 0.4, label="mean")
        ax.bar(x + 0.2, [r[f"{n}_p95_ms"] for n in names], 0.4, label="p95")
        ax.set_xticks(x, names)
        ax.set_yscale("log")
        ax.set(
            xlabel="link",
            ylabel="latency per request [ms] (log)",
            title=(
                f"threshold {threshold:.2f} on {self.device}: accuracy {r['accuracy']:.1%}, "
                f"{r['cloud_fraction']:.0%} of requests sent to the cloud"
            ),
        )
        ax.legend(fontsize=8)
        return fig

    def draw(self, threshold: float = 0.6) -> None:
        show(self.figure(threshold))

    def interact(self, threshold: float = 0.6) -> Control:
        """A threshold slider: accuracy, cloud share, mean and p95 latency per link."""
        import ipywidgets

        return control(
            self.draw,
            text=(
                "[interactive: a confidence-threshold slider shows the cascade's accuracy, its "
                "share of requests sent to the cloud and its mean and p95 latency per link; it "
                "needs a running kernel. A static view shows the chosen threshold above.]"
            ),
            threshold=ipywidgets.FloatSlider(
                value=threshold,
                min=0.0,
                max=1.0,
                step=0.01,
                description="threshold",
                continuous_update=False,
            ),
        )
