"""Train CNNs as a cloud job would: tf.distribute, checkpoints every epoch, resume.

- :func:`select_strategy` picks the default strategy on a CPU, ``MirroredStrategy``
  over all local GPUs, or ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG``
  describes a cluster. The same :func:`fit` runs under each.
- :func:`fit` checkpoints model and optimizer every epoch (``tf.train.CheckpointManager``)
  and resumes an interrupted run from its last epoch. A checkpoint of another
  architecture, or a corrupt one, raises :class:`CheckpointError` naming the file
  and leaves it untouched. Under multi-worker training only the chief writes to
  ``checkpoint_dir`` (and TensorBoard's folder); the other workers write theirs into a
  temporary folder that is removed when :func:`fit` returns, as TensorFlow's multi-worker
  guide prescribes, and every worker resumes from the chief's checkpoint (so
  ``checkpoint_dir`` must be storage all workers see, as on a real cluster).
- :func:`make_dataset` and :func:`predict` feed images of any size and channel count,
  multiplied by ``input_scale`` (the CIFAR-10 models take pixels / 255).

Saving and exporting trained models lives in :mod:`workbench.cloud.export`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench.core import atomic
from workbench.data import pipeline
from workbench.data.pipeline import DEFAULT_INPUT_SCALE
from workbench.models import architectures


class CheckpointError(RuntimeError):
    """A checkpoint cannot be resumed (other architecture, or corrupt). Names the file."""


# ---------------------------------------------------------------- strategy

_MULTI_WORKER: dict[str, object] = {}  # one MultiWorkerMirroredStrategy per process


def select_strategy():
    """The tf.distribute strategy for this machine.

    - ``TF_CONFIG`` set (a cluster spec): ``MultiWorkerMirroredStrategy``; start the
      same script on every worker with its own ``TF_CONFIG`` task index. It is created
      once per process (TensorFlow allows no second one) and reused by later calls.
    - one or more local GPUs: ``MirroredStrategy`` over all of them.
    - otherwise: the default strategy (one CPU device).
    """
    import tensorflow as tf

    tf_config = os.environ.get("TF_CONFIG")
    if tf_config:
        if tf_config not in _MULTI_WORKER:
            _MULTI_WORKER[tf_config] = tf.distribute.MultiWorkerMirroredStrategy()
        return _MULTI_WORKER[tf_config]
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def strategy_name(strategy) -> str:
    """The public name of a ``tf.distribute`` strategy: ``MirroredStrategy``,
    ``MultiWorkerMirroredStrategy``, or ``default strategy`` for the one TensorFlow uses
    when none is set (its class, ``_DefaultDistributionStrategy``, is private)."""
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"  # its class is named CollectiveAllReduceStrategy
    name = type(strategy).__name__
    if name.startswith("_") or "Default" in name:
        return "default strategy (no distribution)"
    return name


def describe_strategy(strategy) -> str:
    """Which strategy and devices run the training, in words (public names only)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    devices = ", ".join(d.name for d in gpus) if gpus else "CPU"
    workers = ""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type:
        n = len(resolver.cluster_spec().as_dict().get("worker", []))
        workers = f", {n} worker(s), this one {resolver.task_type} {resolver.task_id}"
    return (
        f"{strategy_name(strategy)} with {strategy.num_replicas_in_sync} replica(s) on "
        f"{devices}{workers}"
    )


# ---------------------------------------------------------------- progress


def progress_callback(epochs: int):
    """A Keras callback drawing one progress bar per epoch, with the epoch's metrics; each
    bar ends as one summary line (``epoch 3/20: 170 batches in 4.1 s (41.5 batches/s); loss
    ...``, :class:`workbench.core.progressbar.ProgressBar`), so a saved notebook shows one
    line per epoch and no bar frozen part-way."""
    import tf_keras as keras

    from workbench.core.progressbar import ProgressBar

    shown = ("loss", "accuracy", "val_loss", "val_accuracy")

    class EpochBars(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.bar = ProgressBar(
                self.params.get("steps"), f"epoch {epoch + 1}/{epochs}", unit="batch"
            )

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)

        def on_epoch_end(self, epoch, logs=None):
            self.bar.close(**{k: v for k, v in (logs or {}).items() if k in shown})

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


VALIDATION_POINTS = 10  # validation scores per training run (every epoch of a shorter run)


def epochs_for(images: int, n_train: int) -> int:
    """Epochs that show the model about ``images`` training images (at least one).

    Training budgets are set in images seen (work), not epochs: the same budget on the full
    CIFAR-10 (45,000 training images after validation) is a tenth of the epochs it is on the
    5,438-image subset, and takes about the same time.
    """
    if images <= 0 or n_train <= 0:
        raise ValueError(f"images ({images}) and n_train ({n_train}) must be positive")
    return max(1, int(round(images / n_train)))


def validation_epochs(epochs: int, points: int = VALIDATION_POINTS) -> list[int]:
    """The epochs (1-based) after which the validation images are scored: every epoch of a
    short run, else about ``points`` evenly spaced ones ending with the last.

    Scoring 1,360 validation images with the cloud's residual network costs about a tenth of
    an epoch of its training on the subset; ten points draw the curve as well as thirty.
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, not {epochs}")
    every = max(1, -(-epochs // points))  # ceil
    return sorted({e for e in range(every, epochs + 1, every)} | {epochs})


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
    optimizer: str = "adam",
    label_smoothing: float = 0.0,
    checkpoint_dir: Path,
    seed: int = 0,
    tensorboard_dir: Path | None = None,
    progress: bool = True,
    input_scale: float | None = DEFAULT_INPUT_SCALE,
) -> TrainResult:
    """Train ``architecture``; checkpoint each epoch; resume if a checkpoint exists.

    Args:
        architecture: a name from :data:`workbench.models.architectures.ARCHITECTURES`.
        x_train, y_train: images and integer labels (scaled inside the pipeline).
        x_val, y_val: held-out data for the validation curves (inference mode), scored after
            the epochs :func:`validation_epochs` names (``history["val_epoch"]``).
        epochs: total epochs; a resumed run trains only the missing ones.
        batch_size: per replica; the global batch is this times the replicas in sync.
        lr_schedule: ``constant`` or ``cosine`` (cosine decay to zero over all steps).
        optimizer: ``adam``, or ``sgd``: SGD with Nesterov momentum 0.9, which with a cosine
            schedule and weight decay (in the architecture) trains residual networks to a
            better optimum than Adam.
        label_smoothing: the one-hot targets are mixed with this much of a uniform
            distribution, so the model is not pushed towards ever more confident answers on
            a small training set (0: plain cross-entropy).
        checkpoint_dir: where ``ckpt-*`` files and ``state.json`` live. Under multi-worker
            training only the chief writes here; every worker resumes from it.
        tensorboard_dir: TensorBoard logs (the chief's), or None for none.
        input_scale: what pixels are multiplied by (see :func:`make_dataset`).

    Raises:
        CheckpointError: the checkpoint is of another architecture or cannot be read.
    """
    import tensorflow as tf
    import tf_keras as keras

    from workbench.core import quiet

    quiet.install()
    keras.utils.set_random_seed(seed)
    strategy = select_strategy()
    global_batch = batch_size * strategy.num_replicas_in_sync
    steps_per_epoch = int(np.ceil(len(x_train) / global_batch))
    with strategy.scope():
        model = architectures.build(architecture)
        if lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(learning_rate, steps_per_epoch * epochs)
        elif lr_schedule == "constant":
            lr = learning_rate
        else:
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', not {lr_schedule!r}")
        if optimizer == "adam":
            opt = keras.optimizers.Adam(lr)
        elif optimizer == "sgd":
            opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
        else:
            raise ValueError(f"optimizer must be 'adam' or 'sgd', not {optimizer!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), not {label_smoothing}")
        loss = (
            keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
            if label_smoothing
            else "sparse_categorical_crossentropy"
        )
        model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])

    checkpoint_dir = Path(checkpoint_dir)
    state = _restore(model, checkpoint_dir, architecture)
    start_epoch = state.get("epoch", 0)
    history: dict[str, list[float]] = state.get("history", {})
    seconds = state.get("train_seconds", 0.0)
    images = state.get("images_seen", 0)

    train_ds = pipeline.make_dataset(
        x_train,
        y_train,
        batch_size=global_batch,
        training=True,
        augment=augment,
        seed=seed,
        input_scale=input_scale,
    )
    val_ds = pipeline.make_dataset(
        x_val, y_val, batch_size=max(global_batch, 256), training=False, input_scale=input_scale
    )
    if label_smoothing:  # the smoothed loss takes one-hot targets
        classes = int(model.output_shape[-1])
        train_ds = train_ds.map(lambda x, y: (x, tf.one_hot(y, classes)))
        val_ds = val_ds.map(lambda x, y: (x, tf.one_hot(y, classes)))
    with _write_dirs(strategy, checkpoint_dir, tensorboard_dir) as (write_dir, log_dir):
        ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        manager = tf.train.CheckpointManager(ckpt, str(write_dir), max_to_keep=2)

        class SaveEachEpoch(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                nonlocal seconds, images
                seconds += time.perf_counter() - self.t0
                images += len(x_train)
                for k, v in (logs or {}).items():
                    history.setdefault(k, []).append(float(v))
                if any(k.startswith("val_") for k in logs or {}):
                    history.setdefault("val_epoch", []).append(epoch + 1)
                manager.save(checkpoint_number=epoch + 1)  # every worker: it may need them all
                _write_state(
                    write_dir,
                    architecture=architecture,
                    fingerprint=architectures.architecture_fingerprint(model),
                    epoch=epoch + 1,
                    history=history,
                    train_seconds=seconds,
                    images_seen=images,
                )

        callbacks = [SaveEachEpoch()]
        if progress:
            callbacks.append(progress_callback(epochs))
        if log_dir is not None:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=0))
        if start_epoch < epochs:
            model.fit(
                train_ds,
                validation_data=val_ds,
                validation_freq=validation_epochs(epochs),
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


@contextlib.contextmanager
def _write_dirs(
    strategy, checkpoint_dir: Path, tensorboard_dir: Path | None
) -> Iterator[tuple[Path, Path | None]]:
    """Where this worker writes checkpoints and logs: the real folders on the chief, else
    a temporary folder, removed afterwards (TensorFlow's multi-worker saving recipe)."""
    if strategy.extended.should_checkpoint:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        yield checkpoint_dir, tensorboard_dir
        return
    resolver = getattr(strategy, "cluster_resolver", None)
    task = f"{resolver.task_type}{resolver.task_id}" if resolver is not None else "worker"
    scratch = Path(tempfile.mkdtemp(prefix=f"workbench-{task}-"))
    try:
        (scratch / "checkpoints").mkdir()
        yield scratch / "checkpoints", (scratch / "tensorboard" if tensorboard_dir else None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_state(directory: Path, **state) -> None:
    atomic.write_json(directory / "state.json", state, indent=1)


def _restore(model, directory: Path, architecture: str) -> dict:
    """Restore the latest checkpoint in ``directory`` into ``model``; return its state."""
    import tensorflow as tf

    state_file = directory / "state.json"
    latest = tf.train.latest_checkpoint(str(directory)) if directory.is_dir() else None
    if latest is None and not state_file.exists():
        return {}
    if latest is None or not state_file.exists():
        missing = "no ckpt files" if latest is None else "no state.json"
        raise CheckpointError(
            f"The checkpoint in {directory} is incomplete ({missing}). "
            "Delete that folder to start training afresh."
        )
    try:
        state = json.loads(state_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{state_file} is corrupt ({err}); delete {directory} to start afresh."
        ) from err
    fingerprint = architectures.architecture_fingerprint(model)
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


def predict(
    model,
    x: np.ndarray,
    *,
    batch_size: int = 256,
    input_scale: float | None = DEFAULT_INPUT_SCALE,
) -> np.ndarray:
    """Class probabilities in inference mode (dropout off, batch-norm moving statistics).

    ``x`` holds images in the data's own units; they are multiplied by ``input_scale``
    (``None``: passed as they are) in float32.
    """
    x = np.asarray(x, dtype=np.float32)
    if input_scale is not None:
        x = x * np.float32(input_scale)
    return model.predict(x, batch_size=batch_size, verbose=0)
