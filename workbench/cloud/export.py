"""Saving trained models: TensorFlow Serving exports, ``.keras`` files and their metadata.

- :func:`serving_module` wraps any Keras image classifier in TensorFlow Serving
  signatures: ``serving_default`` takes float32 pixels in the data's own units and
  scales them inside; ``predict_png`` takes PNG files.
- :func:`export_saved_model` writes it in TensorFlow Serving's layout
  ``<base>/<name>/<version>/``, to a folder or to an object store URL (``s3://...``);
  :func:`save_module` does the same for any ``tf.Module`` (the split-computing suffix).
- :func:`save_keras` / :func:`load_keras` and :func:`write_metadata` keep the Keras model
  and a JSON description next to it.

Every write is atomic (:mod:`workbench.core.atomic`): a previous export stays in place, complete,
until the new one is, and a failure leaves it untouched (:class:`ExportError`).

Under multi-worker training (``TF_CONFIG``) every worker must call these functions, because
saving can read variables that need all workers; only the chief writes to the real path, the
others write into a temporary folder that is removed at once, as TensorFlow's multi-worker
guide prescribes (:func:`is_chief`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench.core import atomic
from workbench.data.pipeline import DEFAULT_INPUT_SCALE


class ExportError(RuntimeError):
    """An export could not be completed; the previous export (if any) is left in place."""


# ------------------------------------------------------------------ who writes


def is_chief(model: Any = None) -> bool:
    """Whether this process writes files for real (True outside multi-worker training).

    With a Keras ``model`` built under a cluster strategy, that strategy decides
    (``strategy.extended.should_checkpoint``); otherwise ``TF_CONFIG`` does: the task of
    type ``chief``, or worker 0 of a cluster without one, is the chief.
    """
    strategy = getattr(model, "distribute_strategy", None) if model is not None else None
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type:
        return bool(strategy.extended.should_checkpoint)
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    config = json.loads(raw)
    task = config.get("task") or {}
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind in (None, "chief"):
        return True
    return kind == "worker" and index == 0 and "chief" not in (config.get("cluster") or {})


# ------------------------------------------------------------------ serving signatures


def model_image_shape(model) -> tuple[int | None, int | None, int]:
    """(height, width, channels) a single-input image model takes (``model.input_shape``)."""
    shape = model.input_shape
    if isinstance(shape, list):
        raise ValueError(
            f"{model.name} has {len(shape)} inputs; serving exports take one image input."
        )
    if len(shape) != 4:
        raise ValueError(
            f"{model.name} takes inputs of shape {shape}; an image model takes (batch, H, W, C)."
        )
    return tuple(shape[1:])  # type: ignore[return-value]


def serving_module(model, *, input_scale: float | None = DEFAULT_INPUT_SCALE, input_shape=None):
    """A tf.Module with TensorFlow Serving signatures around an image classifier.

    Args:
        model: a Keras model taking (batch, H, W, C) images, C 1 or 3.
        input_scale: what pixels are multiplied by before the model sees them (the CIFAR
            models: 1/255); ``None`` when the model scales its input itself (a
            ``Rescaling`` layer) or takes the data's units as they are.
        input_shape: (H, W, C) when it differs from ``model.input_shape[1:]``.

    Returns:
        A module with two functions, saved as signatures by :func:`save_module`:

        - ``serve`` (``serving_default``): ``images`` float32 [batch, H, W, C] in the data's
          own units (pixels 0-255 for uint8 data) -> ``probabilities`` [batch, classes].
        - ``serve_png`` (``predict_png``): ``image_bytes`` string [batch] of PNG files,
          decoded with the model's channel count and checked for H x W -> ``probabilities``.
          Clients send ``{"b64": ...}`` values, TensorFlow Serving's encoding for bytes.
    """
    import tensorflow as tf

    h, w, c = tuple(input_shape) if input_shape is not None else model_image_shape(model)
    if c not in (1, 3):
        raise ValueError(f"{model.name} takes {c} channels; image exports need 1 or 3.")
    scale = None if input_scale is None else float(input_scale)

    class Serving(tf.Module):
        def __init__(self, keras_model):
            super().__init__()
            self.model = keras_model

        @tf.function(input_signature=[tf.TensorSpec([None, h, w, c], tf.float32, name="images")])
        def serve(self, images):
            x = images if scale is None else images * scale
            return {"probabilities": self.model(x, training=False)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve_png(self, image_bytes):
            def decode(data):
                img = tf.io.decode_png(data, channels=c)
                if h is None or w is None:  # a model for any size: images pass as they are
                    return tf.cast(img, tf.float32)
                size_ok = tf.debugging.assert_equal(
                    tf.shape(img)[:2],
                    tf.constant([h, w]),
                    message=f"predict_png takes {h}x{w} PNG images",
                )
                with tf.control_dependencies([size_ok]):  # checked before it is shaped
                    return tf.cast(tf.reshape(img, [h, w, c]), tf.float32)

            images = tf.map_fn(
                decode, image_bytes, fn_output_signature=tf.TensorSpec([h, w, c], tf.float32)
            )
            return self.serve(images)

    return Serving(model)


# ------------------------------------------------------------------ SavedModel exports


def export_saved_model(
    model,
    *,
    base: str | os.PathLike,
    name: str,
    version: int = 1,
    input_scale: float | None = DEFAULT_INPUT_SCALE,
) -> Path | str:
    """Export an image classifier to ``<base>/<name>/<version>/`` for TensorFlow Serving.

    Args:
        model: a Keras image classifier (see :func:`serving_module`).
        base: a folder, or an object store URL such as ``s3://bucket/prefix``; a URL is
            exported locally first, then uploaded (``workbench.cloud.serving.storage``).
        name: the model name TensorFlow Serving serves it under.
        version: the version folder.
        input_scale: see :func:`serving_module`.

    Returns:
        The version folder (a Path), or its URL.

    Raises:
        ExportError: the export failed; the previous version, if any, is unchanged.
    """
    module = serving_module(model, input_scale=input_scale)
    return save_module(
        module,
        base=base,
        name=name,
        version=version,
        signatures={"serving_default": module.serve, "predict_png": module.serve_png},
        chief=is_chief(model),
    )


def save_module(
    module,
    *,
    base: str | os.PathLike,
    name: str,
    version: int,
    signatures: dict[str, Callable],
    chief: bool | None = None,
) -> Path | str:
    """Save any ``tf.Module`` with ``signatures`` to ``<base>/<name>/<version>/`` (atomic).

    Args:
        module: what to save.
        base: a folder or an object store URL (see :func:`export_saved_model`).
        name: the model name.
        version: the version folder.
        signatures: {signature name: tf.function of the module}.
        chief: whether this process writes for real (default: :func:`is_chief` of the
            module's ``model`` attribute, if any).

    Returns:
        The version folder (a Path), or its URL.

    Raises:
        ExportError: the export failed; the previous version, if any, is unchanged.
    """
    import tensorflow as tf

    from workbench.core import quiet

    quiet.install()  # "Assets written to <temp folder>": one line per save, nothing to read
    version = int(version)
    chief = is_chief(getattr(module, "model", None)) if chief is None else chief

    def write(folder: Path) -> None:
        tf.saved_model.save(module, str(folder), signatures=signatures)

    text = str(base)
    if "://" in text:
        from workbench.cloud.serving import storage  # lazily: only exports to a URL need it

        if storage.is_remote(text):
            url = f"{text.rstrip('/')}/{name}/{version}"
            with tempfile.TemporaryDirectory(prefix="workbench-export-") as tmp:
                local = Path(tmp) / name / str(version)
                _guarded(url, lambda: write(local))
                if chief:
                    _guarded(url, lambda: storage.upload_saved_model(local, url))
            return url
        base = storage.LocalBase(text).root
    target = Path(base) / name / str(version)
    if not chief:  # a worker: take part in the save, keep nothing
        with tempfile.TemporaryDirectory(prefix="workbench-worker-export-") as tmp:
            _guarded(target, lambda: write(Path(tmp) / "export"))
        return target

    def replace() -> None:
        with atomic.temp_dir(target) as tmp:
            write(tmp)

    _guarded(target, replace)
    return target


def _guarded(target: Path | str, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear error
        raise ExportError(
            f"Export to {target} failed ({type(err).__name__}: {str(err)[:500]}); the previous "
            "export, if any, is unchanged."
        ) from err


# ------------------------------------------------------------------ Keras files, metadata


def save_keras(model, path: str | os.PathLike) -> Path:
    """Save a Keras model file (``.keras``) atomically; on a non-chief worker, keep nothing.

    Raises:
        ExportError: saving failed; the previous file, if any, is unchanged.
    """
    path = Path(path)
    if not is_chief(model):
        with tempfile.TemporaryDirectory(prefix="workbench-worker-keras-") as tmp:
            _guarded(path, lambda: model.save(Path(tmp) / path.name))
        return path

    def save() -> None:
        with atomic.temp_path(path) as tmp:
            model.save(tmp)

    _guarded(path, save)
    return path


def load_keras(path: str | os.PathLike):
    """Load a ``.keras`` file written by :func:`save_keras`, with a clear error if it is missing."""
    import tf_keras as keras

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No model at {path}: run notebook 02 to train and export it.")
    try:
        return keras.models.load_model(path)
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"{path} is not a readable Keras model ({type(err).__name__}: {err}). "
            "Re-run notebook 02 to export it again."
        ) from err


def write_metadata(path: str | os.PathLike, metadata: dict) -> Path:
    """Write a model's metadata JSON atomically (values JSON cannot hold become strings).

    On a non-chief worker of a multi-worker job nothing is written (:func:`is_chief`).
    """
    path = Path(path)
    if is_chief():
        atomic.write_json(path, metadata, indent=2, default=str)
    return path


TFLITE_FILE = "model.tflite"  # what `serve --prefer-tflite-model` serves, next to saved_model.pb


def add_tflite(version_dir: str | os.PathLike) -> Path:
    """Convert a SavedModel version's ``serving_default`` to float32 TFLite, written beside it.

    TensorFlow Serving (``--prefer_tflite_model``) and the workbench's server
    (``--prefer-tflite-model``) then serve ``model.tflite`` with the TFLite runtime instead of
    TensorFlow, with the same inputs and outputs (the SavedModel's scaling is part of the
    graph). Only ``serving_default`` is converted: other signatures (such as a PNG-decoding
    one) use operations TFLite's built-in set does not have. The file is written atomically.

    Raises:
        ExportError: the folder holds no SavedModel, or the converter refused it.
    """
    import tensorflow as tf

    from workbench.core import quiet

    version_dir = Path(version_dir)
    if not (version_dir / "saved_model.pb").exists():
        raise ExportError(f"No SavedModel in {version_dir}: export it first.")
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(version_dir), signature_keys=["serving_default"]
    )
    try:
        with quiet.native_output("the TFLite converter"):
            blob = converter.convert()
    except Exception as err:  # noqa: BLE001 - the converter raises many types
        raise ExportError(f"Could not convert {version_dir} to TFLite: {err}") from err
    return atomic.write_bytes(version_dir / TFLITE_FILE, blob)
