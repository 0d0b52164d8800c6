"""TFLite conversion (float32, dynamic range, float16, full-integer int8 with a
representative dataset), where int8 loses (TFLite's quantization debugger, layer by layer),
file sizes raw and gzipped, and the quantization arithmetic the converter applies, by hand on
real weights.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench.core import quiet
from workbench.edge import finetune

TFLITE_VARIANTS = ("float32", "dynamic_range", "float16", "int8")


class ConversionError(RuntimeError):
    """The TFLite converter failed; the message holds its own explanation."""


# ---------------------------------------------------------------- TFLite conversion


def representative_data(
    x_train: np.ndarray, *, samples: int = 200, seed: int = 0, input_scale: float | None
):
    """A generator of single training images (model units) for int8 calibration, at random."""
    from workbench.models import loading

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x_train), size=min(samples, len(x_train)), replace=False)
    images = loading.scale_inputs(x_train[idx], input_scale)

    def gen():
        for img in images:
            yield [img[None]]

    return gen


def to_tflite(
    model,
    variant: str,
    *,
    input_scale: float | None,
    x_calibration: np.ndarray | None = None,
    calibration_samples: int = 200,
) -> bytes:
    """Convert a model to a TFLite flatbuffer.

    Args:
        model: a tf-keras model, a Keras 3 model (converted through a concrete function),
            or the path of a SavedModel folder.
        variant: ``float32`` (no quantization); ``dynamic_range`` (int8 weights, float
            activations, no calibration); ``float16`` (float16 weights); ``int8``
            (full-integer: int8 weights, activations, input and output; needs
            ``x_calibration``, training images in their stored units, to calibrate the
            activation ranges; a quantization-aware model keeps the ranges it learned).
        input_scale: the model's input is ``pixels * input_scale`` (for calibration).

    Raises:
        ConversionError: the converter failed; its own output is in the message.
    """

    quiet.install()
    if variant not in TFLITE_VARIANTS:
        raise ValueError(f"Unknown TFLite variant {variant!r}; choose from {TFLITE_VARIANTS}.")
    if variant == "int8" and x_calibration is None:
        raise ValueError(
            "int8 conversion needs x_calibration: a sample of training images "
            "to calibrate activation ranges."
        )
    errors = []
    for how in ("frozen", "saved_model"):
        converter = _converter(model, how)
        if converter is None:
            continue
        _configure(converter, variant, x_calibration, calibration_samples, input_scale)
        try:
            with quiet.native_output("the TFLite converter"):
                return converter.convert()
        except Exception as err:  # noqa: BLE001 - the converter raises many types
            errors.append(f"{how}: {err}")
    raise ConversionError(f"{variant} conversion failed: " + "\n".join(errors))


def _configure(converter, variant, x_calibration, calibration_samples, input_scale) -> None:
    import tensorflow as tf

    if variant == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_data(
            x_calibration, samples=calibration_samples, input_scale=input_scale
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


def _converter(model, how: str):
    """A TFLiteConverter for a tf-keras model, a Keras 3 model or a SavedModel folder.

    ``how="frozen"`` converts a concrete function of the model's inference call with its
    variables frozen to constants. TensorFlow calls this path deprecated and prefers a
    SavedModel round trip (``how="saved_model"``), which gives the same flatbuffer but
    took 12x longer here (2.6 s against 33 s for a 156-layer MobileNetV2: saving and
    reloading every layer's functions), so the frozen path goes first and the SavedModel
    path is the fallback. A SavedModel folder only has the SavedModel path.
    """
    import tensorflow as tf
    import tf_keras

    if isinstance(model, str | Path):
        return tf.lite.TFLiteConverter.from_saved_model(str(model)) if how != "frozen" else None
    if how == "saved_model" and isinstance(model, tf_keras.Model):
        return tf.lite.TFLiteConverter.from_keras_model(model)
    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    concrete = fn.get_concrete_function()
    if how == "frozen":
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)


# ---------------------------------------------------------------- where int8 loses

# TensorFlow's guide to the quantization debugger flags layers whose error exceeds this many
# quantization steps (root-mean-square error over the scale); a rounding error alone is ~0.29.
SUSPECT_RMSE_OVER_SCALE = 0.7


def quantization_debug(
    model,
    x_calibration: np.ndarray,
    *,
    input_scale: float | None,
    samples: int = 64,
    top: int = 8,
    seed: int = 0,
) -> dict:
    """Which layers lose most when the model is quantized to int8, by TFLite's quantization
    debugger (``tf.lite.experimental.QuantizationDebugger``).

    The debugger converts the model with the same calibration as the ``int8`` variant, runs
    it with a float reference beside each quantized operation on ``samples`` training images,
    and measures each operation's output error. The error is reported in quantization steps
    (root-mean-square error over the tensor's scale), so layers of any range compare: far
    above 0.29 (a rounding error alone) the int8 range does not fit what the layer outputs
    (a swish or sigmoid after a wide range, a squeeze-and-excitation product). Keeping those
    layers float, or quantization-aware training, is what fixes them.

    Args:
        model: a Keras model (Keras 3 or tf-keras) or the path of a SavedModel folder.
        x_calibration: training images in their stored units (as for :func:`to_tflite`).

    Returns:
        ``{"metric", "samples", "suspect_above", "layers"}``: ``layers`` holds the ``top``
        operations by error, worst first, each ``{layer, op, rmse_over_scale, scale,
        max_abs_error, mean_error}``; on failure ``{"error": ...}`` instead (the debugger
        cannot read every model), never an exception.
    """
    import csv
    import io

    import tensorflow as tf

    quiet.install()
    data = representative_data(x_calibration, samples=samples, seed=seed, input_scale=input_scale)
    known = set()
    if hasattr(model, "layers"):
        from workbench.models import graph

        known = {n.name for n in graph.op_nodes(model)}
    try:
        converter = _converter(model, "frozen") or _converter(model, "saved_model")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = data
        with quiet.native_output("the TFLite quantization debugger"):
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=data
            )
            debugger.run()
        buffer = io.StringIO()
        debugger.layer_statistics_dump(buffer)
    except Exception as err:  # noqa: BLE001 - the converter and debugger raise many types
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
    rows = []
    for row in csv.DictReader(io.StringIO(buffer.getvalue())):
        scale = float(row["scale"])
        if not scale > 0:
            continue
        rows.append(
            {
                "layer": layer_of_tensor(row["tensor_name"], known),
                "op": row["op_name"],
                "rmse_over_scale": float(np.sqrt(float(row["mean_squared_error"])) / scale),
                "scale": scale,
                "max_abs_error": float(row["max_abs_error"]),
                "mean_error": float(row["mean_error"]),
            }
        )
    rows.sort(key=lambda r: -r["rmse_over_scale"])
    return {
        "metric": "rmse/scale (quantization steps)",
        "samples": min(samples, len(x_calibration)),
        "suspect_above": SUSPECT_RMSE_OVER_SCALE,
        "suspects": sum(r["rmse_over_scale"] > SUSPECT_RMSE_OVER_SCALE for r in rows),
        "operations": len(rows),
        "layers": rows[:top],
    }


def layer_of_tensor(tensor_name: str, known: set[str] | frozenset[str] = frozenset()) -> str:
    """The Keras layers a TFLite tensor comes from, read from its name.

    A fused operation names every TensorFlow op it holds, ``;``-separated, each as
    ``model/layer/op`` (Keras 3 adds ``_1`` to names traced in a function): e.g.
    ``m/conv_bn_1/batchnorm/add_1;m/conv_1/convolution`` gives ``"conv_bn, conv"``. Names
    are matched against ``known`` (the model's layer names) where given; the graph's output
    tensor (``Identity``) is "the model's output".
    """
    import re

    found = []
    for segment in tensor_name.split(";"):
        parts = [p for p in segment.split("/") if p]
        if len(parts) < 2:
            continue
        name = parts[1]
        while known and name not in known and re.search(r"_\d+$", name):
            name = re.sub(r"_\d+$", "", name)
        if (name in known or not known) and name not in found:
            found.append(name)
    if not found and tensor_name.startswith(("Identity", "StatefulPartitionedCall")):
        return "the model's output"  # the graph's output tensor, named by TensorFlow
    return ", ".join(found) if found else tensor_name


# ---------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Size:
    bytes: int
    gzip_bytes: int

    def as_dict(self) -> dict[str, int]:
        return {"bytes": self.bytes, "gzip_bytes": self.gzip_bytes}


def size_of(blob: bytes) -> Size:
    """Raw and gzip-compressed size (level 9). Sparsity and clustering only show after gzip."""
    return Size(len(blob), len(gzip.compress(blob, compresslevel=9)))


# ---------------------------------------------------------------- quantization by hand


def first_kernel(model) -> tuple[str, np.ndarray]:
    """(name, weights) of the first kernel in ``model`` (the first convolution, usually)."""
    for name, kernel in finetune.kernels(model):
        return name, kernel
    raise ValueError(f"{model.name} has no layer with a kernel")


def quantization_demo(
    kernel: np.ndarray, *, fixed_point_bits: int = 6, show: int = 8
) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """The same weights quantized four ways: symmetric int8 with one scale for the whole
    tensor (per-tensor) and with one scale per output channel (per-channel, what TFLite
    does for convolution weights), affine int8, and fixed point.

    The output channels are the kernel's last axis (Keras' convolution and dense kernels).

    Returns:
        ``(rows, errors)``: the first ``show`` weights (with the output channel each belongs
        to) with their codes and restored values; and per method its number of scales, its
        scale (per-channel: the largest of them, per-tensor's), zero point, largest rounding
        error and root-mean-square rounding error.
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    flat = kernel.ravel()
    channels = kernel.shape[-1] if kernel.ndim > 1 else 1
    sym, aff = symmetric_quantize(flat), affine_quantize(flat)
    per_channel = symmetric_quantize(kernel, axis=-1)
    pc_q, pc_restored = per_channel["q"].ravel(), per_channel["restored"].ravel()
    step = 2.0**fixed_point_bits
    fixed = np.round(flat * step) / step
    rows = [
        {
            "float": float(flat[i]),
            "output channel": int(i % channels),
            "int8 code (per-tensor)": int(sym["q"][i]),
            "restored (per-tensor)": float(sym["restored"][i]),
            "int8 code (per-channel)": int(pc_q[i]),
            "restored (per-channel)": float(pc_restored[i]),
            "int8 code (affine)": int(aff["q"][i]),
            "restored (affine)": float(aff["restored"][i]),
            f"fixed point p={fixed_point_bits}": float(fixed[i]),
        }
        for i in range(min(show, flat.size))
    ]

    def summary(method: dict, restored: np.ndarray, scales: int, scale: float) -> dict:
        return {
            "scales": scales,
            "scale": float(scale),
            "zero_point": float(method["zero_point"]),
            "max_abs_error": float(np.abs(restored - flat).max()),
            "rms_error": float(np.sqrt(np.mean((restored - flat) ** 2))),
        }

    errors = {
        "symmetric": summary(sym, sym["restored"], 1, sym["scale"]),
        "per_channel": summary(
            per_channel, pc_restored, channels, float(np.max(per_channel["scale"]))
        ),
        "affine": summary(aff, aff["restored"], 1, aff["scale"]),
        f"fixed_point_p{fixed_point_bits}": summary({"zero_point": 0.0}, fixed, 1, 1 / step),
    }
    return rows, errors


def affine_quantize(values: np.ndarray, *, bits: int = 8) -> dict[str, np.ndarray | float | int]:
    """Asymmetric (affine) quantization, as TFLite does for activations.

    ``scale = (max - min) / (2^bits - 1)``, ``zero_point = round(q_min - min / scale)``,
    ``q = clip(round(x / scale) + zero_point, q_min, q_max)``, ``x' = (q - zero_point) * scale``.
    The range always includes 0 so that zero is represented exactly.
    """
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    zero_point = int(np.clip(round(qmin - lo / scale), qmin, qmax))
    q = np.clip(np.round(values / scale) + zero_point, qmin, qmax).astype(np.int32)
    restored = (q - zero_point) * scale
    return {
        "scale": scale,
        "zero_point": zero_point,
        "q": q,
        "restored": restored,
        "max_abs_error": float(np.max(np.abs(restored - values))),
    }


def symmetric_quantize(
    values: np.ndarray, *, bits: int = 8, axis: int | None = None
) -> dict[str, np.ndarray | float | int]:
    """Symmetric quantization (zero point 0), as TFLite does for weights.

    ``scale = max|x| / (2^(bits-1) - 1)``, ``q = clip(round(x / scale), -qmax, qmax)``,
    ``x' = q * scale``. With ``axis=None`` one scale serves the whole tensor (per-tensor);
    with an ``axis`` (the output channels: ``-1`` for a Keras kernel) each slice along it
    gets its own scale (per-channel), so a channel of small weights is not rounded on the
    coarse steps of the largest one. ``scale`` is then an array, one per channel; a channel
    of zeros gets scale 1 (its codes are all 0).
    """
    qmax = 2 ** (bits - 1) - 1
    values = np.asarray(values)
    if axis is None:
        scale = float(np.max(np.abs(values))) / qmax or 1.0
        step = scale
    else:
        others = tuple(i for i in range(values.ndim) if i != axis % values.ndim)
        peak = np.max(np.abs(values), axis=others, keepdims=True)
        step = np.where(peak > 0, peak / qmax, 1.0).astype(np.float64)
        scale = step.ravel()
    q = np.clip(np.round(values / step), -qmax, qmax).astype(np.int32)
    restored = q * step
    return {
        "scale": scale,
        "zero_point": 0,
        "q": q,
        "restored": restored,
        "max_abs_error": float(np.max(np.abs(restored - values))),
    }
