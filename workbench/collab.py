"""Edge-cloud collaboration: split computing, edge-first cascades, and distillation.

- **Split computing** (Neurosurgeon, Kang et al., ASPLOS 2017): run the first layers
  on the edge, send the intermediate activation (quantized to int8) over the
  network, run the rest in the cloud. :func:`split_points` lists every cut of a
  layer chain; :func:`split_model` builds the two halves; :func:`best_splits`
  picks the fastest cut per link.
- **Cascade**: the edge model answers when confident, otherwise asks the cloud
  (:func:`cascade_sweep`).
- **Distillation**: a small student learns from the cloud model's soft outputs
  (:func:`distill`), the seed's "fit a small model to the large model's outputs".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench import bench, network, train

# ===================================================================== split computing


@dataclass(frozen=True)
class SplitPoint:
    """Cut after layer ``index`` (0: before the first layer, i.e. all cloud)."""

    index: int
    after: str  # name of the last edge-side layer ("input" for all-cloud)
    activation_shape: tuple[int, ...]  # per image, what crosses the network

    @property
    def values(self) -> int:
        return int(np.prod(self.activation_shape))


def split_points(model) -> list[SplitPoint]:
    """Every cut of a layer chain: before the first layer (all cloud) to after the last (all edge).

    Raises:
        ValueError: if the model is not a simple chain (a layer with several inputs).
    """
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    for layer in layers:
        if len(layer._inbound_nodes) and isinstance(layer.input, list):
            raise ValueError(f"Layer {layer.name} has several inputs: split points need a chain.")
    points = [SplitPoint(0, "input", tuple(model.input_shape[1:]))]
    for i, layer in enumerate(layers, start=1):
        points.append(SplitPoint(i, layer.name, tuple(layer.output_shape[1:])))
    return points


def split_model(model, index: int):
    """``(prefix, suffix)`` Keras models around cut ``index`` (either may be ``None`` at the ends)."""
    import tf_keras as keras

    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if not 0 <= index <= len(layers):
        raise ValueError(f"split index {index} is outside 0..{len(layers)}")
    prefix = suffix = None
    if index > 0:
        prefix = keras.Model(model.input, layers[index - 1].output, name=f"prefix_{index}")
    if index < len(layers):
        shape = model.input_shape[1:] if index == 0 else layers[index - 1].output_shape[1:]
        x = inputs = keras.Input(shape, name="activation")
        for layer in layers[index:]:
            x = layer(x)
        suffix = keras.Model(inputs, x, name=f"suffix_{index}")
    return prefix, suffix


def activation_quantization(activations: np.ndarray) -> tuple[float, int]:
    """Per-tensor affine int8 ``(scale, zero_point)`` calibrated on sample activations."""
    lo, hi = min(float(activations.min()), 0.0), max(float(activations.max()), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zero_point


def quantize_activation(a: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(a / scale) + zero_point, -128, 127).astype(np.int8)


def dequantize_activation(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def profile_splits(
    model,
    x_sample: np.ndarray,
    *,
    threads: int = 1,
    repeats: int = 50,
    points: list[SplitPoint] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Measure every split point: edge prefix (TFLite) and cloud suffix (TensorFlow) latency, sizes.

    Args:
        model: the float Keras model (inputs scaled to [0, 1]).
        x_sample: scaled images; the first one is timed.
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    from workbench import compress, edge

    rows = []
    one = x_sample[:1].astype(np.float32)
    for p in tqdm(points or split_points(model), desc="split points", disable=not progress):
        prefix, suffix = split_model(model, p.index)
        edge_ms = 0.0
        if prefix is not None:
            em = edge.EdgeModel(compress.to_tflite(prefix, "float32"), num_threads=threads)
            edge_ms = em.benchmark(one, warmup=5, repeats=repeats, max_seconds=5).p50_ms
            activation = em.predict(one)
        else:
            activation = one
        cloud_ms = 0.0
        if suffix is not None:
            fn = tf.function(lambda a, s=suffix: s(a, training=False))
            a = tf.constant(activation)
            cloud_ms = bench.measure_latency(
                lambda fn=fn, a=a: fn(a).numpy(), warmup=5, repeats=repeats, max_seconds=5
            ).p50_ms
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
    links: dict[str, network.LinkProfile],
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
                    + network.link_ms(link, wire_bytes(r["int8_bytes"]), response_bytes)
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
            {"x": network.LinkProfile("x", "x", rtt_ms, up, downlink_ratio * up, 0.0, "grid")},
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
    from pathlib import Path

    import tensorflow as tf

    module = suffix_serving_module(suffix, activation_shape, scale, zero_point)
    return train.atomic_write_dir(
        Path(base) / name / "1",
        lambda tmp: tf.saved_model.save(
            module,
            str(tmp),
            signatures={"serving_default": module.serve, "activation_b64": module.serve_bytes},
        ),
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


# ===================================================================== cascade


def cascade_sweep(
    edge_probs: np.ndarray,
    cloud_probs: np.ndarray,
    y: np.ndarray,
    *,
    thresholds: np.ndarray,
    edge_ms: float,
    cloud_ms_per_link: dict[str, float],
) -> list[dict]:
    """Accuracy, share sent to the cloud, and latency per link, for each confidence threshold.

    A request is answered by the edge when its top probability is at least the threshold;
    otherwise it waits for the edge *and* the cloud (the edge ran first).
    """
    confidence = edge_probs.max(1)
    edge_pred, cloud_pred = edge_probs.argmax(1), cloud_probs.argmax(1)
    rows = []
    for t in thresholds:
        to_cloud = confidence < t
        pred = np.where(to_cloud, cloud_pred, edge_pred)
        row = {
            "threshold": float(t),
            "accuracy": float(np.mean(pred == y)),
            "cloud_fraction": float(np.mean(to_cloud)),
        }
        for link, cloud_ms in cloud_ms_per_link.items():
            lat = edge_ms + to_cloud * cloud_ms
            row[f"{link}_mean_ms"] = float(lat.mean())
            row[f"{link}_p95_ms"] = float(np.percentile(lat, 95))
        rows.append(row)
    return rows


def pick_threshold(rows: list[dict], *, target_accuracy: float) -> dict:
    """The row with the fewest cloud calls whose accuracy reaches ``target_accuracy``."""
    ok = [r for r in rows if r["accuracy"] >= target_accuracy]
    if not ok:
        return max(rows, key=lambda r: r["accuracy"])
    return min(ok, key=lambda r: (r["cloud_fraction"], -r["accuracy"]))


# ===================================================================== distillation


def distill(
    student,
    teacher_probs: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 64,
    temperature: float = 4.0,
    alpha: float = 0.1,
    learning_rate: float = 2e-3,
    augment: bool = False,
    seed: int = 0,
    progress: bool = True,
):
    """Train ``student`` on a mix of labels and the teacher's softened outputs (Hinton et al., 2015).

    loss = alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T), where
    ``_T`` means softmax(log p / T). ``alpha=1`` trains on labels alone (the baseline).
    Teacher outputs are precomputed for the (unaugmented) training images; with ``augment``
    the student sees flipped/shifted images against the same soft targets.
    """
    import tensorflow as tf
    import tf_keras as keras
    from tqdm.auto import tqdm

    keras.utils.set_random_seed(seed)
    logt = np.log(np.clip(teacher_probs, 1e-7, 1.0)).astype(np.float32) / temperature
    soft = tf.nn.softmax(logt).numpy()
    ds = tf.data.Dataset.from_tensor_slices((x_train, y_train.astype(np.int64), soft))
    ds = ds.shuffle(len(x_train), seed=seed).batch(batch_size)
    optimizer = keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(
            learning_rate, epochs * int(np.ceil(len(x_train) / batch_size))
        )
    )
    ce = keras.losses.SparseCategoricalCrossentropy()
    flip = augment

    @tf.function
    def step(x, y, s):
        x = tf.cast(x, tf.float32) / 255.0
        if flip:
            x = tf.image.random_flip_left_right(x)
        with tf.GradientTape() as tape:
            p = student(x, training=True)
            log_p_t = tf.nn.log_softmax(tf.math.log(tf.clip_by_value(p, 1e-7, 1.0)) / temperature)
            kl = tf.reduce_mean(
                tf.reduce_sum(s * (tf.math.log(tf.clip_by_value(s, 1e-7, 1.0)) - log_p_t), 1)
            )
            loss = alpha * ce(y, p) + (1 - alpha) * temperature**2 * kl
        grads = tape.gradient(loss, student.trainable_variables)
        optimizer.apply_gradients(zip(grads, student.trainable_variables, strict=True))
        return loss

    start = time.perf_counter()
    bar = tqdm(
        range(epochs), desc="distillation" if alpha < 1 else "labels only", disable=not progress
    )
    for _ in bar:
        losses = [float(step(x, y, s)) for x, y, s in ds]
        bar.set_postfix(loss=f"{np.mean(losses):.3f}")
    student.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return student, time.perf_counter() - start
