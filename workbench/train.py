"""Train CNNs as a cloud job would: tf.distribute, checkpoints every epoch, resume, exports.

- :func:`select_strategy` picks the default strategy on a CPU, ``MirroredStrategy``
  over all local GPUs, or ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG``
  describes a cluster. The same :func:`fit` runs under each.
- :func:`fit` checkpoints model and optimizer every epoch (``tf.train.CheckpointManager``)
  and resumes an interrupted run from its last epoch. A checkpoint of another
  architecture, or a corrupt one, raises :class:`CheckpointError` naming the file
  and leaves it untouched.
- :func:`export_saved_model` writes TensorFlow Serving's layout
  ``<base>/<name>/<version>/`` atomically (temporary folder, then rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench import models


class CheckpointError(RuntimeError):
    """A checkpoint cannot be resumed (other architecture, or corrupt). Names the file."""


class ExportError(RuntimeError):
    """An export could not be completed; the previous export (if any) is left in place."""


# ---------------------------------------------------------------- strategy


def select_strategy():
    """The tf.distribute strategy for this machine.

    - ``TF_CONFIG`` set (a cluster spec): ``MultiWorkerMirroredStrategy``; start the
      same script on every worker with its own ``TF_CONFIG`` task index.
    - one or more local GPUs: ``MirroredStrategy`` over all of them.
    - otherwise: the default strategy (one CPU device).
    """
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def describe_strategy(strategy) -> str:
    """Which strategy and devices run the training, in words."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    devices = ", ".join(d.name for d in gpus) if gpus else "CPU"
    return f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s) on {devices}"


# ---------------------------------------------------------------- data pipeline


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    training: bool,
    augment: bool = False,
    seed: int = 0,
):
    """A tf.data pipeline of scaled images; optional augmentation (flip + pad-and-crop)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64)))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

    def scale(img, label):
        return tf.cast(img, tf.float32) / 255.0, label

    ds = ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        rng = tf.random.Generator.from_seed(seed)

        def jitter(img, label):
            seeds = rng.make_seeds(2)
            img = tf.image.stateless_random_flip_left_right(img, seed=seeds[:, 0])
            img = tf.image.resize_with_crop_or_pad(img, 40, 40)
            img = tf.image.stateless_random_crop(img, (32, 32, 3), seed=seeds[:, 1])
            return img, label

        ds = ds.map(jitter, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------- progress


def progress_callback(epochs: int):
    """A Keras callback drawing one progress bar per epoch (tqdm), with the epoch's metrics."""
    import tf_keras as keras
    from tqdm.auto import tqdm

    class EpochBars(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.bar = tqdm(
                total=self.params.get("steps"),
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="batch",
                leave=True,
                mininterval=1.0,
            )

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.bar.set_postfix(
                {
                    k: f"{v:.3f}"
                    for k, v in logs.items()
                    if k in ("loss", "accuracy", "val_loss", "val_accuracy")
                }
            )
            self.bar.close()

    return EpochBars()


# ---------------------------------------------------------------- fit with resume


@dataclass
class TrainResult:
    """What a training run produced."""

    model: object
    history: dict[str, list[float]]
    epochs_run: int  # epochs trained in this call (0 when the checkpoint was already complete)
    resumed_from: int  # epoch the run resumed from (0 for a fresh start)
    train_seconds: float  # wall time of all epochs, including earlier interrupted sessions
    images_per_second: float  # training throughput (images processed / training time)
    strategy: str
    checkpoint_dir: Path


def run_id(config: dict) -> str:
    """A short id for a training configuration (same config, same checkpoint folder)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


def fit(
    architecture: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    x_val: np.ndarray,
    y_val: np.ndarray,
    epochs: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    augment: bool = False,
    lr_schedule: str = "constant",
    checkpoint_dir: Path,
    seed: int = 0,
    tensorboard_dir: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``architecture`` with Adam; checkpoint each epoch; resume if a checkpoint exists.

    Args:
        architecture: a name from :data:`workbench.models.ARCHITECTURES`.
        x_train, y_train: uint8 images and integer labels (scaled inside the pipeline).
        x_val, y_val: held-out data for the validation curves (inference mode).
        epochs: total epochs; a resumed run trains only the missing ones.
        lr_schedule: ``constant`` or ``cosine`` (cosine decay to zero over all steps).
        checkpoint_dir: where ``ckpt-*`` files and ``state.json`` live.

    Raises:
        CheckpointError: the checkpoint is of another architecture or cannot be read.
    """
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    strategy = select_strategy()
    global_batch = batch_size * strategy.num_replicas_in_sync
    steps_per_epoch = int(np.ceil(len(x_train) / global_batch))
    with strategy.scope():
        model = models.build(architecture)
        if lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(learning_rate, steps_per_epoch * epochs)
        elif lr_schedule == "constant":
            lr = learning_rate
        else:
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', not {lr_schedule!r}")
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )

    checkpoint_dir = Path(checkpoint_dir)
    state = _restore(model, checkpoint_dir, architecture)
    start_epoch = state.get("epoch", 0)
    history: dict[str, list[float]] = state.get("history", {})
    seconds = state.get("train_seconds", 0.0)
    images = state.get("images_seen", 0)

    train_ds = make_dataset(
        x_train, y_train, batch_size=global_batch, training=True, augment=augment, seed=seed
    )
    val_ds = make_dataset(x_val, y_val, batch_size=max(global_batch, 256), training=False)
    ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(ckpt, str(checkpoint_dir), max_to_keep=2)

    class SaveEachEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            nonlocal seconds, images
            seconds += time.perf_counter() - self.t0
            images += len(x_train)
            for k, v in (logs or {}).items():
                history.setdefault(k, []).append(float(v))
            manager.save(checkpoint_number=epoch + 1)
            _write_state(
                checkpoint_dir,
                architecture=architecture,
                fingerprint=models.architecture_fingerprint(model),
                epoch=epoch + 1,
                history=history,
                train_seconds=seconds,
                images_seen=images,
            )

    callbacks = [SaveEachEpoch()]
    if progress:
        callbacks.append(progress_callback(epochs))
    if tensorboard_dir is not None:
        callbacks.append(
            keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir), histogram_freq=0)
        )
    if start_epoch < epochs:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            initial_epoch=start_epoch,
            callbacks=callbacks,
            verbose=0,
        )
    return TrainResult(
        model=model,
        history=history,
        epochs_run=max(0, epochs - start_epoch),
        resumed_from=start_epoch,
        train_seconds=seconds,
        images_per_second=images / seconds if seconds else float("nan"),
        strategy=describe_strategy(strategy),
        checkpoint_dir=checkpoint_dir,
    )


def _write_state(directory: Path, **state) -> None:
    tmp = directory / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, directory / "state.json")


def _restore(model, directory: Path, architecture: str) -> dict:
    """Restore the latest checkpoint in ``directory`` into ``model``; return its state."""
    import tensorflow as tf

    directory.mkdir(parents=True, exist_ok=True)
    state_file = directory / "state.json"
    latest = tf.train.latest_checkpoint(str(directory))
    if latest is None and not state_file.exists():
        return {}
    if latest is None or not state_file.exists():
        raise CheckpointError(
            f"The checkpoint in {directory} is incomplete ({'no ckpt files' if latest is None else 'no state.json'}). "
            "Delete that folder to start training afresh."
        )
    try:
        state = json.loads(state_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{state_file} is corrupt ({err}); delete {directory} to start afresh."
        ) from err
    fingerprint = models.architecture_fingerprint(model)
    if state.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"The checkpoint {latest} was written by architecture {state.get('architecture')!r} "
            f"(fingerprint {state.get('fingerprint')}), but you are training {architecture!r} "
            f"(fingerprint {fingerprint}). Use another checkpoint_dir, or delete {directory} to "
            "start afresh. The checkpoint was left untouched."
        )
    try:
        status = tf.train.Checkpoint(model=model).restore(latest)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except Exception as err:  # noqa: BLE001 - TF raises several types for corrupt files
        raise CheckpointError(
            f"Could not restore {latest} ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
            f"The checkpoint is corrupt or incompatible; delete {directory} to start afresh. "
            "It was left untouched."
        ) from err
    # Optimizer state (Adam moments, step count) restores lazily when its variables exist.
    tf.train.Checkpoint(optimizer=model.optimizer).restore(latest).expect_partial()
    return state


# ---------------------------------------------------------------- evaluation


def predict(model, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Class probabilities in inference mode (dropout off, batch-norm moving statistics)."""
    return model.predict(models.scale_images(x), batch_size=batch_size, verbose=0)


def accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy."""
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


# ---------------------------------------------------------------- exports


def serving_module(model):
    """A tf.Module with TensorFlow Serving signatures around ``model``.

    - ``serving_default``: ``images`` float32 [batch, 32, 32, 3] in pixel units 0-255
      (the scaling to [0, 1] happens inside) -> ``probabilities`` [batch, 10].
    - ``predict_png``: ``image_bytes`` string [batch] of PNG files -> ``probabilities``.
      Clients send ``{"b64": ...}`` values, TensorFlow Serving's encoding for binary data.
    """
    import tensorflow as tf

    class Serving(tf.Module):
        def __init__(self, keras_model):
            super().__init__()
            self.model = keras_model

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")])
        def serve(self, images):
            return {"probabilities": self.model(images / 255.0, training=False)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve_png(self, image_bytes):
            def decode(b):
                img = tf.io.decode_png(b, channels=3)
                return tf.cast(tf.ensure_shape(img, [32, 32, 3]), tf.float32)

            images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.float32)
            return self.serve(images)

    return Serving(model)


def atomic_write_dir(target: Path, write) -> Path:
    """Call ``write(tmp_dir)`` then move ``tmp_dir`` to ``target``, replacing any old copy.

    The old copy stays in place until the new one is complete, so a failure (a full
    disk, an interrupt) never leaves a half-written folder at ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            os.replace(old, target)
        if isinstance(err, Exception):
            raise ExportError(
                f"Export to {target} failed ({type(err).__name__}: {err}); "
                "the previous export, if any, is unchanged."
            ) from err
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target


def export_saved_model(model, *, base: Path, name: str, version: int = 1) -> Path:
    """Export ``model`` to ``<base>/<name>/<version>/`` for TensorFlow Serving (atomic)."""
    import tensorflow as tf

    module = serving_module(model)

    def write(tmp: Path) -> None:
        tf.saved_model.save(
            module,
            str(tmp),
            signatures={
                "serving_default": module.serve,
                "predict_png": module.serve_png,
            },
        )

    return atomic_write_dir(Path(base) / name / str(int(version)), write)


def save_keras(model, path: Path) -> Path:
    """Save a ``.keras`` file atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_keras(path: Path):
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


def write_metadata(path: Path, metadata: dict) -> Path:
    """Write the model's metadata JSON (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metadata, indent=2, default=str))
    os.replace(tmp, path)
    return path
