"""Split computing for any Keras graph: the model cut in two, edge half and cloud half.

Split computing (Neurosurgeon, Kang et al., ASPLOS 2017): run the first layers on
the edge, send the intermediate activation (quantized to int8) over the network, run the
rest in the cloud. A cut is only possible where exactly one tensor crosses from the edge
part to the cloud part: :func:`cut_points` derives those cuts from the model's graph of
calls, layers and ``keras.ops`` operations alike, in the Keras the model came in (Keras 3
or tf-keras; a call inside a residual branch, a squeeze-and-excitation block or one arm of
a concatenation is not a cut point);
:func:`split_model` builds the two halves; :func:`measure_splits` measures each cut and
:func:`best_splits` picks the fastest per link; :func:`run_split` runs one for real
through the model server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench.models import graph
from workbench.network import latency

# ===================================================================== split computing

INPUT = "input"  # the cut before the first layer: everything runs in the cloud


@dataclass(frozen=True)
class CutPoint:
    """A valid cut: the output of the call ``after`` (a layer or an operation) is the only
    tensor crossing the network.

    ``index`` orders the cuts from the input (0, all cloud) to the output (all edge).
    """

    index: int
    after: str  # the last edge-side call ("input": nothing runs on the edge)
    activation_shape: tuple[int, ...]  # per image, what crosses the network
    depth: int  # how many calls run on the edge side (a proxy for edge work)

    @property
    def values(self) -> int:
        return int(np.prod(self.activation_shape))


def cut_points(model) -> list[CutPoint]:
    """Every valid cut of ``model``, from the input (all cloud) to the output (all edge).

    Works on the model in the Keras it came in: a Keras 3 functional model (whose graph
    also holds ``keras.ops`` operations, such as the ``x + 3.0`` inside a hard sigmoid) or a
    tf-keras one. A call's output is a valid cut when every path from the input to the
    output passes through it: the call and everything it depends on (the edge part) then
    hand exactly one tensor, that output, to the rest (the cloud part). The inside of a
    residual block, of an inverted-residual block and of a squeeze-and-excitation block is
    no cut (the skip, or the tensor the excitation multiplies, crosses too); the block's
    output is. Shared layers (called more than once) are skipped. Both ends are always
    cuts: the input (all cloud) and the last call (all edge).

    Raises:
        ValueError: the model has no usable graph (e.g. a subclassed model), or more than
            one input or output.
    """
    g = graph.OpGraph(model)
    points = [CutPoint(0, INPUT, _shape(g.input), 0)]
    for n in g.cut_nodes():
        points.append(CutPoint(len(points), n.name, _shape(n.outputs[0]), len(g.ancestors(n))))
    last = g.producer[id(g.output)]
    points.append(CutPoint(len(points), last.name, _shape(g.output), len(g.nodes)))
    return points


def _shape(tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape[1:])


def choose_cuts(points: list[CutPoint], max_cuts: int) -> list[CutPoint]:
    """At most ``max_cuts`` cuts worth profiling: both ends, and the smallest activation in
    each stretch of the network between them (where a cut is cheapest to send)."""
    if len(points) <= max_cuts:
        return list(points)
    inner = points[1:-1]
    segments = np.array_split(np.arange(len(inner)), max(1, max_cuts - 2))
    chosen = [min((inner[i] for i in seg), key=lambda p: (p.values, -p.depth)) for seg in segments]
    return [points[0], *chosen, points[-1]]


def split_model(model, after: str):
    """``(prefix, suffix)`` models around the cut after the call named ``after``.

    ``after="input"`` gives ``(None, model)``; the last call gives ``(model, None)``. The
    halves are models of the same Keras as ``model`` (Keras 3 or tf-keras) and share its
    layers (and weights).

    Raises:
        ValueError: ``after`` is not a valid cut point (names the valid ones).
    """
    if after == INPUT:
        graph.OpGraph(model)  # the same checks as for any other cut
        return None, model
    g = graph.OpGraph(model)
    node = next((n for n in g.nodes if n.name == after), None)
    last = g.producer[id(g.output)]
    if node is last:
        return model, None
    if node is None or not g.is_cut(node):
        raise ValueError(
            f"{after!r} is not a cut point of {model.name!r}: only calls whose output is the "
            f"single tensor crossing from edge to cloud are. Valid cuts: "
            f"{[p.after for p in cut_points(model)]}"
        )
    cut = node.outputs[0]
    if graph.is_keras3_model(g.model):
        import keras

        prefix = keras.Model(g.input, cut, name=f"edge_until_{after}")
        suffix = keras.Model(cut, g.output, name=f"cloud_after_{after}")  # cut: its input
        return prefix, suffix
    import tf_keras

    prefix = tf_keras.Model(g.input, cut, name=f"edge_until_{after}")
    edge_ids = g.ancestors(node)
    activation = tf_keras.Input(_shape(cut), name="activation")
    tensors = {id(cut): activation}
    for n in g.nodes:
        if id(n) in edge_ids:
            continue
        args, kwargs = _replace_tensors((n.args, n.kwargs), tensors)
        outputs = n.op(*args, **kwargs)
        for old, new in zip(n.outputs, graph.flat(outputs), strict=True):
            tensors[id(old)] = new
    suffix = tf_keras.Model(activation, tensors[id(g.output)], name=f"cloud_after_{after}")
    return prefix, suffix


def _replace_tensors(structure, tensors: dict):
    import tensorflow as tf

    def swap(x):
        if hasattr(x, "_keras_history"):
            if id(x) not in tensors:
                raise ValueError(f"tensor {x.name} is needed in the cloud but was not sent")
            return tensors[id(x)]
        return x

    return tf.nest.map_structure(swap, structure)


def activation_quantization(activations: np.ndarray) -> tuple[float, int]:
    """Per-tensor affine int8 ``(scale, zero_point)`` calibrated on sample activations."""
    lo, hi = min(float(activations.min()), 0.0), max(float(activations.max()), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zero_point


def quantize_activation(a: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(a / scale) + zero_point, -128, 127).astype(np.int8)


def measure_splits(
    model,
    x_sample: np.ndarray,
    *,
    threads: int = 1,
    repeats: int = 50,
    points: list[CutPoint] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Measure every cut: edge prefix and cloud suffix latency, both TFLite float32 on this CPU.

    Args:
        model: the float Keras model (Keras 3 or tf-keras).
        x_sample: images in model units; the first one is timed.
        points: the cuts to measure (default: all of :func:`cut_points`).

    Returns:
        One row per cut: ``index, after, shape, values, float32_bytes, int8_bytes,
        edge_ms, cloud_ms`` (p50 after warm-up).
    """

    from workbench.core.progressbar import track
    from workbench.edge import convert, runtime

    rows = []
    one = np.asarray(x_sample[:1], dtype=np.float32)
    for p in track(
        points or cut_points(model), desc="cut points", unit="cut", disable=not progress
    ):
        prefix, suffix = split_model(model, p.after)
        edge_ms, activation = 0.0, one
        if prefix is not None:
            em = runtime.EdgeModel(
                convert.to_tflite(prefix, "float32", input_scale=None), num_threads=threads
            )
            edge_ms = em.benchmark(one, warmup=5, repeats=repeats, max_seconds=5).p50_ms
            activation = em.predict(one)
        cloud_ms = 0.0
        if suffix is not None:  # the cloud's faster runtime (notebook 04): TFLite too
            cm = runtime.EdgeModel(
                convert.to_tflite(suffix, "float32", input_scale=None), num_threads=threads
            )
            cloud_ms = cm.benchmark(activation, warmup=5, repeats=repeats, max_seconds=5).p50_ms
        rows.append(
            {
                "index": p.index,
                "after": p.after,
                "shape": "x".join(map(str, p.activation_shape)),
                "values": p.values,
                "float32_bytes": 4 * p.values,
                "int8_bytes": p.values,
                "edge_ms": edge_ms,
                "cloud_ms": cloud_ms,
            }
        )
    return rows


def wire_bytes(int8_bytes: int) -> int:
    """Request size for ``int8_bytes`` of activation sent base64 in a TF Serving JSON body."""
    return 4 * ((int8_bytes + 2) // 3) + 60


def best_splits(
    rows: list[dict],
    links: dict[str, latency.Link],
    *,
    server_overhead_ms: float,
    response_bytes: int,
) -> list[dict]:
    """End-to-end latency of every split on every link; the best cut per link.

    A split with a cloud part costs: edge prefix + server overhead + cloud suffix + RTT +
    request bytes / uplink + response bytes / downlink. The all-edge cut has no network part.
    """
    out = []
    last = max(r["index"] for r in rows)
    for name, link in links.items():
        totals = []
        for r in rows:
            total = r["edge_ms"]
            if r["index"] < last:
                total += (
                    server_overhead_ms
                    + r["cloud_ms"]
                    + latency.link_ms(link, wire_bytes(r["int8_bytes"]), response_bytes)
                )
            totals.append(total)
        best = int(np.argmin(totals))
        out.append(
            {
                "link": link.label,
                "key": name,
                "best_index": rows[best]["index"],
                "best_after": rows[best]["after"],
                "best_ms": totals[best],
                "all_edge_ms": totals[-1],
                "all_cloud_ms": totals[0],
                "totals": totals,
            }
        )
    return out


def best_split_curve(
    rows: list[dict],
    *,
    rtt_ms: float,
    uplinks_mbps,
    server_overhead_ms: float,
    response_bytes: int,
    downlink_ratio: float = 3.0,
) -> list[int]:
    """The best cut index at each uplink bandwidth, for one RTT (downlink = ratio x uplink)."""
    return [
        best_splits(
            rows,
            {"x": latency.Link("x", "x", rtt_ms, up, downlink_ratio * up, 0.0, "grid")},
            server_overhead_ms=server_overhead_ms,
            response_bytes=response_bytes,
        )[0]["best_index"]
        for up in uplinks_mbps
    ]


def suffix_serving_module(suffix, activation_shape: tuple[int, ...], scale: float, zero_point: int):
    """A tf.Module serving a model suffix on int8 activations (TF Serving signatures).

    - ``serving_default``: ``activation`` int8 [batch, *shape] as JSON integers.
    - ``activation_b64``: ``activation_bytes`` string [batch], each the raw int8 bytes of one
      activation, sent as ``{"b64": ...}`` (a quarter of JSON's size).
    Both dequantize with the calibrated ``scale`` and ``zero_point`` and return ``probabilities``.
    """
    import tensorflow as tf

    shape = [int(d) for d in activation_shape]

    class Suffix(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = suffix

        @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.int8, name="activation")])
        def serve(self, activation):
            a = (tf.cast(activation, tf.float32) - float(zero_point)) * scale
            return {"probabilities": self.model(a, training=False)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="activation_bytes")])
        def serve_bytes(self, activation_bytes):
            raw = tf.io.decode_raw(activation_bytes, tf.int8)
            return self.serve(tf.reshape(raw, [-1, *shape]))

    return Suffix()


def export_suffix(suffix, *, base, name: str, activation_shape, scale: float, zero_point: int):
    """Export a suffix model for the model server (``<base>/<name>/1/``, atomic)."""
    from workbench.cloud import export

    module = suffix_serving_module(suffix, activation_shape, scale, zero_point)
    return export.save_module(
        module,
        base=base,
        name=name,
        version=1,
        signatures={"serving_default": module.serve, "activation_b64": module.serve_bytes},
    )


def split_request(q_activations: np.ndarray) -> bytes:
    """A predict body sending int8 activations as raw bytes (``activation_b64`` signature)."""
    import base64
    import json

    instances = [
        {"b64": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()} for a in q_activations
    ]
    return json.dumps(
        {"signature_name": "activation_b64", "instances": instances}, separators=(",", ":")
    ).encode()


def best_intermediate_cut(rows: list[dict], totals: list[float]) -> dict:
    """The fastest cut that really splits (some layers on each side), for one link."""
    last = max(r["index"] for r in rows)
    inner = [(t, r) for t, r in zip(totals, rows, strict=True) if 0 < r["index"] < last]
    if not inner:
        raise ValueError("the model has no intermediate cut point (only all-edge and all-cloud)")
    return min(inner, key=lambda pair: pair[0])[1]


def run_split(
    model,
    after: str,
    *,
    x_calibration: np.ndarray,
    x_test: np.ndarray,
    reference_probs: np.ndarray,
    serving_base: Path,
    threads: int = 1,
    batch_size: int = 32,
    name: str = "suffix",
) -> dict:
    """Run the split after ``after`` for real: TFLite prefix here, suffix behind the server.

    The edge runs the prefix (TFLite float32), quantizes the activation to int8 with a
    scale and zero point calibrated on ``x_calibration``, and sends the raw bytes (base64)
    to the suffix served by the model server, which dequantizes and finishes the job.

    Args:
        x_calibration, x_test: images in model units.
        reference_probs: the full model's answers on ``x_test`` (for the agreement).
        serving_base: model base folder for the suffix export.

    Returns:
        ``after, activation_shape, scale, zero_point, agreement, wire_bytes_per_image,
        server_overhead_ms`` (median of client time minus the server's compute time).
    """
    from workbench.cloud import serving
    from workbench.edge import convert, runtime

    prefix, suffix = split_model(model, after)
    if prefix is None or suffix is None:
        raise ValueError(f"cut {after!r} is not an intermediate cut: nothing to split")
    edge_prefix = runtime.EdgeModel(
        convert.to_tflite(prefix, "float32", input_scale=None), num_threads=threads, name="prefix"
    )
    calib = edge_prefix.predict(x_calibration)
    scale, zero_point = activation_quantization(calib)
    export_suffix(
        suffix,
        base=serving_base,
        name=name,
        activation_shape=calib.shape[1:],
        scale=scale,
        zero_point=zero_point,
    )
    probs, wire, overhead = [], [], []
    with serving.serving(serving_base) as server, serving.ServingClient(server.url, name) as client:
        for i in range(0, len(x_test), batch_size):
            q = quantize_activation(
                edge_prefix.predict(x_test[i : i + batch_size]), scale, zero_point
            )
            answer = client.predict_body(split_request(q))
            probs.append(answer.outputs)
            wire.append(answer.request_bytes / len(q))
            if answer.server_compute_ms is not None:
                overhead.append(answer.elapsed_ms - answer.server_compute_ms)
    probs = np.concatenate(probs)
    return {
        "after": after,
        "activation_shape": list(calib.shape[1:]),
        "scale": float(scale),
        "zero_point": int(zero_point),
        "agreement": float(np.mean(probs.argmax(1) == reference_probs.argmax(1))),
        "probabilities": probs,
        "wire_bytes_per_image": float(np.mean(wire)),
        "server_overhead_ms": float(np.median(overhead)) if overhead else None,
        "images": int(len(x_test)),
    }


def split_stage(
    model,
    evaluation,
    *,
    links: dict[str, latency.Link],
    server_overhead_ms: float,
    response_bytes: int,
    serving_base: Path,
    max_cuts: int = 12,
    repeats: int = 30,
    devices: dict[str, float] | None = None,
    split_link: str = "4g",
    split_device: str | None = None,
    input_bytes: int | None = None,
    threads: int = 1,
    unavailable: str | None = None,
) -> dict:
    """Split computing end to end: cut points, measured, the best cut per device and link, and
    one split run for real through the model server.

    Args:
        model: the float Keras model, Keras 3 or tf-keras, as it was loaded (None: skipped,
            with ``unavailable`` as the reason).
        evaluation: :class:`workbench.models.subject.Evaluation` (test and validation images in
            model units, the float model's answers).
        server_overhead_ms, response_bytes: from the cloud measurement (loopback).
        devices: ``{device: slowdown}``, how many times longer than this CPU each device takes
            for the prefix (:func:`workbench.edge.devices.slowdowns`); default this CPU alone.
        split_link, split_device: whose best intermediate cut is run for real (default device:
            the slowest, where a split matters most).
        input_bytes: the compressed input's request size; a best cut whose activation is
            larger is marked ``larger_than_input``.

    Returns:
        ``status`` ("ok" or "skipped" with ``reason``), ``cut_points`` (names), ``points``
        (:class:`CutPoint`), ``measured`` (rows of :func:`measure_splits`), ``devices``,
        ``best_per_device_link`` (one row per device and link: the best cut, its time, the
        all-edge and all-cloud times, the activation's bytes, whether the cut is
        ``intermediate`` and ``larger_than_input``), ``run`` (:func:`run_split`'s result with
        its ``device`` and ``link``).
    """
    if model is None:
        return {"status": "skipped", "reason": f"needs a Keras model with a graph: {unavailable}"}
    try:
        points = cut_points(model)
    except ValueError as err:
        return {"status": "skipped", "reason": str(err)}
    rows = measure_splits(
        model,
        evaluation.x_test[:8],
        threads=threads,
        repeats=repeats,
        points=choose_cuts(points, max_cuts),
    )
    devices = dict(devices or {"this CPU": 1.0})
    first, last = min(r["index"] for r in rows), max(r["index"] for r in rows)
    best, totals = [], {}
    for device, slowdown in devices.items():
        scaled = [{**r, "edge_ms": r["edge_ms"] * slowdown} for r in rows]
        for b in best_splits(
            scaled, links, server_overhead_ms=server_overhead_ms, response_bytes=response_bytes
        ):
            chosen = next(r for r in rows if r["index"] == b["best_index"])
            totals[(device, b["key"])] = b.pop("totals")
            best.append(
                {
                    "device": device,
                    **b,
                    "activation_bytes": wire_bytes(chosen["int8_bytes"])
                    if b["best_index"] != last
                    else 0,
                    "choice": "all in the cloud"
                    if b["best_index"] == first
                    else "all on the device"
                    if b["best_index"] == last
                    else f"split after {b['best_after']}",
                    "intermediate": first < b["best_index"] < last,
                    "larger_than_input": bool(
                        input_bytes
                        and first < b["best_index"] < last
                        and wire_bytes(chosen["int8_bytes"]) > input_bytes
                    ),
                }
            )
    result = {
        "status": "ok",
        "cut_points": [p.after for p in points],
        "points": points,
        "measured": rows,
        "server_overhead_ms": server_overhead_ms,
        "response_bytes": response_bytes,
        "devices": devices,
        "best_per_device_link": best,
    }
    device = split_device or max(devices, key=devices.get)
    key = split_link if split_link in links else next(iter(links))
    if (device, key) not in totals:
        result["run"] = {"status": "skipped", "reason": f"no device {device!r} or link {key!r}"}
        return result
    scaled = [{**r, "edge_ms": r["edge_ms"] * devices[device]} for r in rows]
    try:
        cut = best_intermediate_cut(scaled, totals[(device, key)])
    except ValueError as err:
        result["run"] = {"status": "skipped", "reason": str(err)}
        return result
    x_calibration = evaluation.x_val[:256] if len(evaluation.x_val) else evaluation.x_test[:256]
    run = run_split(
        model,
        cut["after"],
        x_calibration=x_calibration,
        x_test=evaluation.x_test,
        reference_probs=evaluation.float_probs,
        serving_base=serving_base,
        threads=threads,
    )
    result["run"] = {"status": "ok", "device": device, "link": key, **run}
    return result


def bad_split_requests(url: str, activation_shape, name: str = "suffix") -> list[dict]:
    """Send the served suffix requests it must refuse: ``{request, status, error}`` each.

    A wrong-sized activation, floats instead of bytes, a wrong shape in the int8 signature,
    and a value outside int8: each must get a 4xx with a message, never a 500.
    """
    import httpx

    values = int(np.prod(activation_shape))
    smaller = np.zeros((1, max(1, values // 2)), np.int8)
    cases = [
        ("wrong size (bytes of a smaller activation)", split_request(smaller)),
        (
            "wrong dtype (floats instead of base64 bytes)",
            b'{"signature_name": "activation_b64", "instances": [[0.5, 0.25]]}',
        ),
        ("wrong shape in the int8 signature", b'{"instances": [[1, 2, 3]]}'),
        ("outside the int8 range", b'{"instances": [[[[300]]]]}'),
    ]
    out = []
    for what, body in cases:
        r = httpx.post(f"{url}/v1/models/{name}:predict", content=body, timeout=30)
        try:
            message = r.json().get("error", r.text)
        except ValueError:
            message = r.text
        out.append({"request": what, "status": r.status_code, "error": message})
    return out
