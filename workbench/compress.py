"""Compress a Keras model for the edge: pruning, clustering, quantization, TFLite conversion.

The techniques follow TensorFlow Model Optimization's *collaborative
optimization* pipeline: prune (sparsity) -> cluster, preserving sparsity (few
unique weights) -> quantization-aware training that preserves both (PCQAT) ->
a full-integer int8 TFLite model. Each step is a function that takes and
returns a tf_keras model; :func:`to_tflite` converts any of them.

All fine-tuning uses :func:`fine_tune`, so the same data pipeline, optimizer and
progress bars serve every technique.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench import models, train

TFLITE_VARIANTS = ("float32", "dynamic_range", "float16", "int8")


# ---------------------------------------------------------------- fine-tuning


def fine_tune(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    callbacks: list | None = None,
    augment: bool = False,
    seed: int = 0,
    progress: bool = True,
):
    """Compile ``model`` with Adam and train it for ``epochs`` (uint8 images are scaled inside)."""
    _recompiled(model, learning_rate)
    if epochs <= 0:
        return model
    ds = train.make_dataset(
        x_train, y_train, batch_size=batch_size, training=True, augment=augment, seed=seed
    )
    cbs = list(callbacks or [])
    if progress:
        cbs.append(train.progress_callback(epochs))
    model.fit(ds, epochs=epochs, callbacks=cbs, verbose=0)
    return model


def steps_per_epoch(n: int, batch_size: int) -> int:
    return int(np.ceil(n / batch_size))


# ---------------------------------------------------------------- pruning


def pruning_schedule(
    final_sparsity: float, total_steps: int, *, ramp_fraction: float = 0.7, prunings: int = 10
):
    """A polynomial schedule that really reaches ``final_sparsity`` within ``total_steps``.

    tfmot prunes only every ``frequency`` steps and only up to ``end_step``; with its
    defaults (frequency 100, end_step 1000) a short fine-tune prunes nothing. Here the
    ramp ends at ``ramp_fraction`` of the run (the rest fine-tunes at the target) and
    ``end_step`` is a multiple of ``frequency``, so the last pruning step hits the target.
    """
    import tensorflow_model_optimization as tfmot

    if not 0.0 < final_sparsity < 1.0:
        raise ValueError(f"final_sparsity must be between 0 and 1, not {final_sparsity}")
    ramp = max(1, int(total_steps * ramp_fraction))
    frequency = max(1, ramp // prunings)
    end_step = frequency * max(1, ramp // frequency)
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=final_sparsity,
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
    )


def prune(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    sparsity: float,
    epochs: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    augment: bool = False,
    progress: bool = True,
    seed: int = 0,
):
    """Magnitude pruning to ``sparsity`` with fine-tuning; returns the stripped (plain) model.

    The learning rate is that of training (1e-3), not a timid fine-tuning rate: the network
    must re-learn around the weights it loses. Augmentation is off by default: in our runs on
    the offline subset, a short fine-tune recovered more accuracy without it (it has no time
    to overfit, and augmented batches slow the recovery). Pass ``augment=True`` to compare.
    """
    import tensorflow_model_optimization as tfmot

    total = steps_per_epoch(len(x_train), batch_size) * max(1, epochs)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        _clone(model), pruning_schedule=pruning_schedule(sparsity, total)
    )
    fine_tune(
        pruned,
        x_train,
        y_train,
        epochs=max(1, epochs),
        batch_size=batch_size,
        learning_rate=learning_rate,
        progress=progress,
        seed=seed,
        augment=augment,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    return _recompiled(stripped, learning_rate)


def _clone(model):
    """A copy of ``model`` with the same weights (tfmot wrappers must not touch the original)."""
    import tf_keras as keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _kernels(model) -> Iterator[tuple[str, np.ndarray]]:
    """(layer name, kernel) for every conv/dense layer, reading the actual weights."""
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            yield layer.name, np.asarray(kernel.numpy())


def sparsity_report(model) -> list[dict]:
    """Per-layer share of exactly-zero weights in each kernel, plus the overall figure."""
    rows, zeros, total = [], 0, 0
    for name, k in _kernels(model):
        z = int(np.count_nonzero(k == 0))
        rows.append({"layer": name, "weights": int(k.size), "zeros": z, "sparsity": z / k.size})
        zeros, total = zeros + z, total + k.size
    rows.append(
        {
            "layer": "all kernels",
            "weights": total,
            "zeros": zeros,
            "sparsity": zeros / total if total else 0.0,
        }
    )
    return rows


def overall_sparsity(model) -> float:
    return sparsity_report(model)[-1]["sparsity"]


# ---------------------------------------------------------------- clustering


def cluster(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    clusters: int,
    epochs: int,
    batch_size: int,
    learning_rate: float = 1e-4,
    preserve_sparsity: bool = True,
    augment: bool = True,
    progress: bool = True,
    seed: int = 0,
):
    """Weight clustering (``clusters`` shared values per kernel), sparsity-preserving by default."""
    import tensorflow_model_optimization as tfmot

    clustering = tfmot.clustering.keras
    clustered = clustering.cluster_weights(
        _clone(model),
        number_of_clusters=clusters,
        cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
        preserve_sparsity=preserve_sparsity,
    )
    fine_tune(
        clustered,
        x_train,
        y_train,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        progress=progress,
        seed=seed,
        augment=augment,
    )
    stripped = clustering.strip_clustering(clustered)
    return _recompiled(stripped, learning_rate)


def unique_weights(model) -> dict[str, int]:
    """Number of distinct values in each kernel (clustering makes this small)."""
    return {name: int(np.unique(k).size) for name, k in _kernels(model)}


def _recompiled(model, learning_rate: float):
    import tf_keras as keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


# ---------------------------------------------------------------- quantization-aware training


def quantization_aware(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float = 1e-4,
    preserve: str | None = None,
    augment: bool = True,
    progress: bool = True,
    seed: int = 0,
):
    """Quantization-aware training: fake-quantize weights and activations while fine-tuning.

    Args:
        preserve: ``None`` for plain QAT (``quantize_model``); ``"sparsity"`` for
            pruning-preserving QAT (PQAT); ``"clusters"`` for sparsity- and
            cluster-preserving QAT (PCQAT), as in tfmot's collaborative optimization.
    """
    import tensorflow_model_optimization as tfmot

    q = tfmot.quantization.keras
    base = _clone(model)
    if preserve is None:
        qat = q.quantize_model(base)
    elif preserve == "sparsity":
        qat = q.quantize_apply(
            q.quantize_annotate_model(base),
            tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme(),
        )
    elif preserve == "clusters":
        qat = q.quantize_apply(
            q.quantize_annotate_model(base),
            tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
                preserve_sparsity=True
            ),
        )
    else:
        raise ValueError(f"preserve must be None, 'sparsity' or 'clusters', not {preserve!r}")
    fine_tune(
        qat,
        x_train,
        y_train,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        progress=progress,
        seed=seed,
        augment=augment,
    )
    if preserve == "clusters":
        qat = tfmot.experimental.combine.strip_clustering_cqat(qat)
    return qat


# ---------------------------------------------------------------- TFLite conversion


def representative_data(x_train: np.ndarray, *, samples: int = 200, seed: int = 0):
    """A generator of single scaled training images for int8 calibration (drawn at random)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x_train), size=min(samples, len(x_train)), replace=False)
    images = models.scale_images(x_train[idx])

    def gen():
        for img in images:
            yield [img[None]]

    return gen


def to_tflite(
    model, variant: str, *, x_calibration: np.ndarray | None = None, calibration_samples: int = 200
) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer.

    Variants:
        ``float32``: no quantization.
        ``dynamic_range``: int8 weights, float activations (no calibration data).
        ``float16``: float16 weights.
        ``int8``: full-integer; weights and activations int8, int8 input and output.
            Needs ``x_calibration`` (training images) to calibrate the activation
            ranges; a quantization-aware model keeps the ranges it learned.
    """
    import tensorflow as tf

    if variant not in TFLITE_VARIANTS:
        raise ValueError(f"Unknown TFLite variant {variant!r}; choose from {TFLITE_VARIANTS}.")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if x_calibration is None:
            raise ValueError(
                "int8 conversion needs x_calibration: a sample of training images "
                "(uint8) to calibrate activation ranges."
            )
        converter.representative_dataset = representative_data(
            x_calibration, samples=calibration_samples
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


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


def symmetric_quantize(values: np.ndarray, *, bits: int = 8) -> dict[str, np.ndarray | float | int]:
    """Symmetric quantization (zero point 0), as TFLite does for weights."""
    qmax = 2 ** (bits - 1) - 1
    scale = float(np.max(np.abs(values))) / qmax or 1.0
    q = np.clip(np.round(values / scale), -qmax, qmax).astype(np.int32)
    restored = q * scale
    return {
        "scale": scale,
        "zero_point": 0,
        "q": q,
        "restored": restored,
        "max_abs_error": float(np.max(np.abs(restored - values))),
    }


def free_memory() -> None:
    """Release models the caller has dropped: Python garbage, then Keras' global state.

    Fine-tuning several tfmot variants in one kernel adds up; call this after ``del``-ing
    models that are already converted, to stay inside small machines (Binder: 2 GB).
    Some memory stays with TensorFlow regardless: each fine-tune and each conversion of a
    quantization-aware model keeps part of what it allocated.
    """
    import gc

    import tf_keras as keras

    gc.collect()
    keras.backend.clear_session()
    gc.collect()
    _trim_heap()


def _trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise); no-op elsewhere."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # musl or another libc: nothing to trim
            pass
