"""Edge against cloud for any image classifier: measure both, then compare them link by link.

- **Cloud**: the float model is exported in TensorFlow Serving's layout, served by the
  workbench's model server (a real HTTP server in its own process), scored through it, and
  timed on loopback for each request encoding the data allows (:func:`measure_cloud`).
- **Edge**: a TFLite variant on LiteRT, on this CPU (measured by :mod:`workbench.variants`).
- **Links**: cloud latency = measured loopback time + modelled link time (RTT + bytes /
  bandwidth); :func:`compare` puts both side by side for each link profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench import bench, network


@dataclass
class CloudMeasurement:
    """The float model behind the server: its answers and what a request costs."""

    probabilities: np.ndarray  # on the test images, through the server
    accuracy: float
    encodings: list[dict]  # one row per request encoding (bytes, loopback latency)
    best_encoding: str  # the encoding with the fewest request bytes
    server_overhead_ms: float  # loopback p50 minus compute p50 for that encoding
    model_name: str
    serving_base: str
    extra: dict = field(default_factory=dict)

    @property
    def best(self) -> dict:
        return next(r for r in self.encodings if r["encoding"] == self.best_encoding)


def encodings_for(images: np.ndarray, *, has_png: bool = True) -> dict[str, str]:
    """Request encodings that make sense for these images (REST; name -> description).

    uint8 pixels go as JSON integers or as base64 PNG files (lossless, usually smaller);
    float pixels go as JSON numbers (PNG would round them).
    """
    if images.dtype == np.uint8:
        out = {"json": "row format, pixels as JSON integers"}
        if has_png and images.shape[-1] in (1, 3):
            out["png_b64"] = "row format, each image a base64 PNG (predict_png signature)"
        return out
    return {"json_float": "row format, pixels as JSON numbers (float32 precision)"}


def request_body(images: np.ndarray, encoding: str) -> bytes:
    """A TF Serving predict body for images in their stored units."""
    from workbench import serving

    if encoding == "json_float":  # orjson writes float32 at float32 precision (shortest repr)
        import orjson

        values = np.ascontiguousarray(images, dtype=np.float32)
        return orjson.dumps({"instances": values}, option=orjson.OPT_SERIALIZE_NUMPY)
    return serving.encode_images(np.asarray(images), encoding)


def export_cloud_model(
    classifier, *, base: Path, name: str, input_scale: float | None
) -> Path:
    """Export the float model for the server at ``<base>/<name>/1/``.

    A plain SavedModel is copied as it is (it already has its ``serving_default``); a Keras
    model (Keras 3 or tf-keras) is exported with :func:`workbench.export.export_saved_model`,
    which takes pixels in stored units and applies ``input_scale`` inside.
    """
    import shutil

    from workbench import export

    target = Path(base) / name / "1"
    if getattr(classifier, "_signature", None) is not None:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(classifier.path, target)
        return target
    model = classifier.keras_model if classifier.keras_model is not None else classifier.native
    return Path(export.export_saved_model(model, base=base, name=name, input_scale=input_scale))


def measure_cloud(
    classifier,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    input_scale: float | None,
    serving_base: Path,
    name: str = "model",
    repeats: int = 100,
    batch_size: int = 64,
) -> CloudMeasurement:
    """Export, serve and measure the float model: accuracy through the server, payloads, latency.

    Args:
        x_test, y_test: test images in stored units and their labels.
        serving_base: model base folder for the export (a fresh one per run).
        repeats: timed single-image requests per encoding (after warm-up).
    """
    from workbench import serving

    export_cloud_model(classifier, base=serving_base, name=name, input_scale=input_scale)
    has_png = getattr(classifier, "_signature", None) is None
    encodings = encodings_for(x_test, has_png=has_png)
    first = next(iter(encodings))
    rows = []
    with serving.serving(serving_base) as server, serving.ServingClient(server.url, name) as client:
        probs = np.concatenate(
            [
                np.asarray(client.predict_body(request_body(x_test[i : i + batch_size], first)).outputs)
                for i in range(0, len(x_test), batch_size)
            ]
        )
        for encoding, what in encodings.items():
            body = request_body(x_test[:1], encoding)
            answer = client.predict_body(body)
            compute: list[float] = []

            def call(body=body, compute=compute) -> None:
                compute.append(client.predict_body(body).server_compute_ms or float("nan"))

            stats = bench.measure_latency(call, warmup=10, repeats=repeats)
            compute_p50 = float(np.nanmedian(compute[-stats.n :]))
            rows.append(
                {
                    "encoding": encoding,
                    "request_bytes": answer.request_bytes,
                    "response_bytes": answer.response_bytes,
                    "loopback_p50_ms": stats.p50_ms,
                    "loopback_p95_ms": stats.p95_ms,
                    "compute_p50_ms": compute_p50,
                    "overhead_p50_ms": stats.p50_ms - compute_p50,
                    "what": what,
                }
            )
    best = min(rows, key=lambda r: r["request_bytes"])
    return CloudMeasurement(
        probabilities=probs,
        accuracy=float(np.mean(probs.argmax(1) == y_test)),
        encodings=rows,
        best_encoding=best["encoding"],
        server_overhead_ms=float(best["overhead_p50_ms"]),
        model_name=name,
        serving_base=str(serving_base),
    )


def compare(
    cloud: CloudMeasurement,
    *,
    edge_p50_ms: float,
    edge_p95_ms: float,
    edge_accuracy: float,
    links: dict[str, network.LinkProfile] | None = None,
    edge_slowdown: float = 1.0,
) -> list[dict]:
    """Edge against cloud on every link (the cloud sends its smallest encoding).

    ``edge_slowdown`` scales the edge's measured latency: a what-if for a device that many
    times slower than this CPU (1: as measured). Rows are those of
    :func:`workbench.network.compare_links`, plus the link's key.
    """
    best = cloud.best
    links = links or network.PROFILES
    rows = network.compare_links(
        edge_p50_ms=edge_p50_ms * edge_slowdown,
        edge_p95_ms=edge_p95_ms * edge_slowdown,
        loopback_p50_ms=best["loopback_p50_ms"],
        loopback_p95_ms=best["loopback_p95_ms"],
        request_bytes=int(best["request_bytes"]),
        response_bytes=int(best["response_bytes"]),
        edge_accuracy=edge_accuracy,
        cloud_accuracy=cloud.accuracy,
        profiles=links,
    )
    for key, row in zip(links, rows, strict=True):
        row["key"] = key
    return rows
