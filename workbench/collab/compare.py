"""Edge against cloud for any image classifier: measure both, then compare them link by link.

- **Cloud**: the float model is exported in TensorFlow Serving's layout, served by the
  workbench's model server (a real HTTP server in its own process), scored through it, and
  timed on loopback for each request encoding the data allows (:func:`measure_cloud`).
- **Edge**: a TFLite variant on LiteRT, on this CPU (measured by :mod:`workbench.edge.variants`).
- **Links**: cloud latency = measured loopback time + modelled link time (RTT + bytes /
  bandwidth); :func:`compare` puts both side by side for each link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.core import timing
from workbench.network import emulation, latency, validation


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


def encodings_for(images: np.ndarray, *, has_png: bool = True, grpc: bool = True) -> dict[str, str]:
    """Request encodings that make sense for these images (name -> what it is).

    uint8 pixels go as JSON integers, base64 PNG files (lossless, usually smaller) or, over
    gRPC, a binary TensorProto (float32) or PNG bytes without base64; float pixels go as JSON
    numbers (PNG would round them) or a TensorProto.
    """
    from workbench.cloud import serving

    if images.dtype == np.uint8:
        names = ["json", "json_columnar", "json_float"]
        if has_png and images.shape[-1] in (1, 3):
            names.append("png_b64")
        if grpc:
            names.append("tensor_proto")
            if has_png and images.shape[-1] in (1, 3):
                names.append("tensor_proto_png")
        return {n: serving.ENCODINGS[n] for n in names}
    out = {"json_float32": "REST, row format, pixels as JSON numbers (float32 precision)"}
    if grpc:
        out["tensor_proto"] = serving.ENCODINGS["tensor_proto"]
    return out


def request_body(images: np.ndarray, encoding: str) -> bytes:
    """A TF Serving predict request for images in their stored units (REST body or gRPC)."""
    from workbench.cloud import serving

    if encoding == "json_float32":  # orjson writes float32 at float32 precision
        import orjson

        values = np.ascontiguousarray(images, dtype=np.float32)
        return orjson.dumps({"instances": values}, option=orjson.OPT_SERIALIZE_NUMPY)
    if encoding == "tensor_proto" and images.dtype != np.uint8:
        return serving.encode_images(np.asarray(images, dtype=np.float32), encoding)
    return serving.encode_images(np.asarray(images), encoding)


def export_cloud_model(classifier, *, base: Path, name: str, input_scale: float | None) -> Path:
    """Export the float model for the server at ``<base>/<name>/1/``.

    A plain SavedModel is copied as it is (it already has its ``serving_default``); a Keras
    model (Keras 3 or tf-keras) is exported with :func:`workbench.cloud.export.export_saved_model`,
    which takes pixels in stored units and applies ``input_scale`` inside.
    """
    import shutil

    from workbench.cloud import export

    target = Path(base) / name / "1"
    if getattr(classifier, "_signature", None) is not None:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(classifier.path, target)
        return target
    model = classifier.native  # the model as it came (Keras 3 needs no bridge to be served)
    return Path(export.export_saved_model(model, base=base, name=name, input_scale=input_scale))


def score(client, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """The served model's answers for ``images`` (stored units), in batches over REST."""
    encoding = "json" if images.dtype == np.uint8 else "json_float32"
    return np.concatenate(
        [
            np.asarray(
                client.predict_body(request_body(images[i : i + batch_size], encoding)).outputs
            )
            for i in range(0, len(images), batch_size)
        ]
    )


def measure_payloads(
    server, name: str, images: np.ndarray, *, repeats: int = 100, has_png: bool = True
) -> list[dict]:
    """Bytes up and down and loopback latency of one image in every sensible encoding
    (:func:`encodings_for`), measured by :func:`workbench.cloud.client.measure_encodings`.

    REST encodings go to ``server.url``, gRPC ones to ``server.grpc_url`` (when the server
    speaks gRPC).
    """
    from workbench.cloud import serving

    grpc_url = getattr(server, "grpc_url", None)
    return serving.measure_encodings(
        server.url,
        name,
        images[:1],
        grpc_url=grpc_url,
        encodings=encodings_for(images, has_png=has_png, grpc=bool(grpc_url)),
        body=request_body,
        repeats=repeats,
    )


def export_cloud(cloud_model, *, base: Path) -> str:
    """Put the cloud's model in the serving base (unless notebook 02 already exported it
    there) and return the name the server knows it by.

    ``cloud_model``: a :class:`workbench.models.subject.CloudModel`.
    """
    exported = getattr(cloud_model, "exported", None)
    if exported is not None and Path(exported).is_dir():
        if Path(exported).parent.parent.resolve() == Path(base).resolve():
            return Path(exported).parent.name
    export_cloud_model(
        cloud_model.classifier,
        base=base,
        name=cloud_model.name,
        input_scale=cloud_model.input_scale,
    )
    return cloud_model.name


def measure_served(
    server,
    name: str,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    repeats: int = 100,
    batch_size: int = 64,
    has_png: bool = True,
    serving_base: Path | None = None,
) -> CloudMeasurement:
    """A running server's model: accuracy through it, and each encoding's bytes and latency.

    ``serving_base``: where the server loads it from (recorded with the measurement)."""
    from workbench.cloud import serving

    with serving.ServingClient(server.url, name) as client:
        probs = score(client, x_test, batch_size=batch_size)
    rows = measure_payloads(server, name, x_test, repeats=repeats, has_png=has_png)
    best = min(rows, key=lambda r: r["request_bytes"])
    return CloudMeasurement(
        probabilities=probs,
        accuracy=float(np.mean(probs.argmax(1) == y_test)),
        encodings=rows,
        best_encoding=best["encoding"],
        server_overhead_ms=float(best["overhead_p50_ms"]),
        model_name=name,
        serving_base=str(serving_base or ""),
    )


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
    from workbench.cloud import serving

    export_cloud_model(classifier, base=serving_base, name=name, input_scale=input_scale)
    has_png = getattr(classifier, "_signature", None) is None
    with serving.serving(serving_base, grpc=True) as server:
        return measure_served(
            server,
            name,
            x_test,
            y_test,
            repeats=repeats,
            batch_size=batch_size,
            has_png=has_png,
            serving_base=serving_base,
        )


def server_runtimes(base: Path, name: str, image: np.ndarray, *, repeats: int = 100) -> list[dict]:
    """The served model's compute per image with TensorFlow's runtime and with LiteRT's.

    The server runs twice on ``base``: as it is, and with ``prefer_tflite_model`` (a
    ``model.tflite`` next to the SavedModel, :func:`workbench.cloud.export.add_tflite`). Each
    time one image (``image``, shape ``(1, H, W, C)``) is sent ``repeats`` times after warm-up;
    the compute time is the server's own (``Server-Timing``), the loopback time the client's.
    """
    from workbench.cloud import serving

    rows = []
    encoding = "json" if image.dtype == np.uint8 else "json_float32"
    body = request_body(image, encoding)
    for runtime, prefer in (("TensorFlow", False), ("LiteRT", True)):
        with (
            serving.serving(base, prefer_tflite_model=prefer) as server,
            serving.ServingClient(server.url, name) as client,
        ):
            compute: list[float] = []

            def call(client=client, compute=compute) -> None:
                compute.append(client.predict_body(body).server_compute_ms or float("nan"))

            stats = timing.measure_latency(call, warmup=10, repeats=repeats)
        rows.append(
            {
                "runtime": runtime,
                "compute_p50_ms": float(np.nanmedian(compute[-stats.n :])),
                "loopback_p50_ms": stats.p50_ms,
                "loopback_p95_ms": stats.p95_ms,
            }
        )
    return rows


def compare(
    cloud: CloudMeasurement,
    *,
    edge_p50_ms: float,
    edge_p95_ms: float,
    edge_accuracy: float,
    links: dict[str, latency.Link] | None = None,
) -> list[dict]:
    """Edge against cloud on every link (the cloud sends its smallest encoding).

    Rows are those of :func:`workbench.network.validation.compare_links`, plus the link's key.
    """
    best = cloud.best
    links = links or latency.LINKS
    rows = validation.compare_links(
        edge_p50_ms=edge_p50_ms,
        edge_p95_ms=edge_p95_ms,
        loopback_p50_ms=best["loopback_p50_ms"],
        loopback_p95_ms=best["loopback_p95_ms"],
        request_bytes=int(best["request_bytes"]),
        response_bytes=int(best["response_bytes"]),
        edge_accuracy=edge_accuracy,
        cloud_accuracy=cloud.accuracy,
        links=links,
    )
    for key, row in zip(links, rows, strict=True):
        row["key"] = key
    return rows


def compare_devices(
    cloud: CloudMeasurement,
    *,
    edge_devices: list[dict],
    edge_accuracy: float,
    links: dict[str, latency.Link] | None = None,
) -> list[dict]:
    """Edge against cloud for every device class and link.

    ``edge_devices``: rows ``{device, source, p50_ms, p95_ms, ...}`` (measured on the device
    or estimated from its MACs, :func:`workbench.edge.devices.device_table`); a row without a
    p95 uses its p50. Each result row is :func:`compare`'s for that device, plus ``device``
    and ``edge_source``. Devices the model has no estimate for (``p50_ms`` None) are left out.
    """
    rows = []
    for d in edge_devices:
        if d.get("p50_ms") is None or d["p50_ms"] != d["p50_ms"]:  # None or NaN: no estimate
            continue
        for row in compare(
            cloud,
            edge_p50_ms=d["p50_ms"],
            edge_p95_ms=d.get("p95_ms") or d["p50_ms"],
            edge_accuracy=edge_accuracy,
            links=links,
        ):
            rows.append({"device": d["device"], "edge_source": d["source"], **row})
    return rows


def validate_links(
    names: tuple[str, ...],
    *,
    model_base,
    model_name: str,
    body: bytes,
    loopback_p50_ms: float,
    response_bytes: int,
    requests: int = 20,
) -> list[dict]:
    """:func:`validate_model` on each named link (``workbench.network.latency.LINKS``)."""
    return [
        validate_model(
            latency.LINKS[name],
            model_base=model_base,
            model_name=model_name,
            body=body,
            loopback_p50_ms=loopback_p50_ms,
            response_bytes=response_bytes,
            requests=requests,
        )
        for name in names
    ]


def batching_verdict(rows: list[dict], *, gain: float = 1.1) -> dict:
    """Where server-side batching paid: client counts at which it raised throughput by more
    than ``gain`` (rows of :func:`workbench.cloud.serving.batching_comparison`)."""
    by = {(r["batching"], r["clients"]): r for r in rows}
    clients = sorted({r["clients"] for r in rows})
    pays = [
        c
        for c in clients
        if (True, c) in by
        and (False, c) in by
        and by[(True, c)]["throughput_rps"] > gain * by[(False, c)]["throughput_rps"]
    ]
    ratios = {
        c: by[(True, c)]["throughput_rps"] / by[(False, c)]["throughput_rps"]
        for c in clients
        if (True, c) in by and (False, c) in by and by[(False, c)]["throughput_rps"]
    }
    return {"pays_at_clients": pays, "throughput_ratio": ratios}


# ===================================================================== checks on real links


def validate_model(
    link: latency.Link,
    *,
    model_base,
    model_name: str,
    body: bytes,
    loopback_p50_ms: float,
    response_bytes: int,
    requests: int = 20,
    warmup: int = 3,
) -> dict:
    """Measure real round trips over a netem-emulated ``link`` and compare with the model.

    Returns:
        measured p50, predicted, and the relative error ``|predicted - measured| / measured``.
    """
    from workbench.cloud import serving

    with (
        emulation.emulated_link(link) as net,
        serving.serving(model_base, host=net.ns_ip, netns=net.netns) as server,
    ):
        with serving.ServingClient(server.url, model_name, timeout_s=60) as client:
            samples = _timed(lambda: client.predict_body(body).elapsed_ms, warmup, requests)
    return _model_check(link, samples, loopback_p50_ms, len(body), response_bytes)


def _timed(request, warmup: int, requests: int) -> list[float]:
    for _ in range(warmup):
        request()
    return [request() for _ in range(requests)]


def _model_check(
    link: latency.Link,
    samples: list[float],
    loopback_p50_ms: float,
    body_bytes: int,
    response_bytes: int,
) -> dict:
    from workbench.core import timing

    measured = timing.summarize_ms(samples)
    # HTTP headers add ~200 bytes each way (counted roughly), TCP/IP framing the rest.
    predicted = latency.cloud_latency_ms(
        loopback_p50_ms,
        link,
        latency.wire_bytes(body_bytes + 200),
        latency.wire_bytes(response_bytes + 200),
    )
    return {
        "link": link.name,
        "measured_p50_ms": measured.p50_ms,
        "measured_p95_ms": measured.p95_ms,
        "predicted_ms": predicted,
        "error": abs(predicted - measured.p50_ms) / measured.p50_ms,
        "requests": len(samples),
    }
