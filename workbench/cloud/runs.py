"""The cloud's training runs: several architectures, each with its own budget and recipe,
trained one after the other as a cloud job would (:func:`workbench.cloud.train.fit`: a
``tf.distribute`` strategy, a checkpoint every epoch, resume), then judged in inference mode
on the test images.

Budgets are images seen (work), not epochs: the same budget takes about the same time on a
5,000-image subset and on the full 45,000 training images, so a plan can price it. Each run
keeps its checkpoints in a folder named after everything that changes the result (the
architecture, the data's digest, the recipe, the seed), so changing a parameter starts a
fresh run instead of resuming the wrong one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from workbench.cloud import train
from workbench.core import metrics
from workbench.models import architectures, macs


@dataclass(frozen=True)
class TrainingSpec:
    """How one architecture is trained: its budget in images seen and its recipe."""

    architecture: str  # a key of workbench.models.architectures.ARCHITECTURES
    images: int  # training images seen (the budget): epochs = images / training set size
    batch_size: int
    learning_rate: float
    optimizer: str = "adam"  # or "sgd" (Nesterov momentum 0.9)
    lr_schedule: str = "constant"  # or "cosine" (decay to zero over the run)
    augment: bool = False  # random flips and pad-and-crop shifts
    label_smoothing: float = 0.0

    def recipe(self) -> dict:
        """The keyword arguments of :func:`workbench.cloud.train.fit` this spec sets."""
        spec = asdict(self)
        del spec["architecture"], spec["images"]
        return spec


@dataclass
class TrainedModel:
    """One finished run: the model, how it was trained, and what it costs per image."""

    name: str
    spec: TrainingSpec
    result: train.TrainResult
    parameters: int
    macs: int
    epochs: int
    images_seen: int

    @property
    def model(self):
        return self.result.model


def describe(specs: dict[str, TrainingSpec]) -> list[dict]:
    """Parameters and multiply-accumulates per image of each architecture, before training."""
    rows = []
    for name, spec in specs.items():
        model = architectures.build(spec.architecture)
        rows.append(
            {
                "model": name,
                "architecture": spec.architecture,
                "parameters": int(model.count_params()),
                "macs": macs.count_macs(model),
                "images_budget": spec.images,
                "batch_size": spec.batch_size,
                "optimizer": spec.optimizer,
                "lr_schedule": spec.lr_schedule,
                "augment": spec.augment,
                "label_smoothing": spec.label_smoothing,
            }
        )
    return rows


def fit_all(
    specs: dict[str, TrainingSpec],
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    x_val: np.ndarray,
    y_val: np.ndarray,
    data_digest: str,
    root: Path,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, TrainedModel]:
    """Train every spec in order; each resumes from its own checkpoint when it has one.

    Args:
        data_digest: the training data's digest (part of each run's checkpoint name).
        root: checkpoints go to ``root/checkpoints/<name>-<run id>``, TensorBoard logs to
            ``root/tensorboard/<name>-<run id>``.
    """
    trained = {}
    for name, spec in specs.items():
        epochs = train.epochs_for(spec.images, len(y_train))
        run_key = train.run_id(
            {
                "arch": spec.architecture,
                "data": data_digest,
                "n": len(y_train),
                "seed": seed,
                "epochs": epochs,
                **spec.recipe(),
            }
        )
        print(f"== {name} ({spec.architecture}: {epochs} epochs, batch {spec.batch_size})")
        result = train.fit(
            spec.architecture,
            x_train,
            y_train,
            x_val=x_val,
            y_val=y_val,
            epochs=epochs,
            seed=seed,
            checkpoint_dir=Path(root) / "checkpoints" / f"{name}-{run_key}",
            tensorboard_dir=Path(root) / "tensorboard" / f"{name}-{run_key}",
            progress=progress,
            **spec.recipe(),
        )
        print(
            f"   {result.strategy}; resumed from epoch {result.resumed_from}; "
            f"{result.train_seconds:.0f} s, {result.images_per_second:,.0f} images/s"
        )
        trained[name] = TrainedModel(
            name=name,
            spec=spec,
            result=result,
            parameters=int(result.model.count_params()),
            macs=macs.count_macs(result.model),
            epochs=epochs,
            images_seen=epochs * len(y_train),
        )
    return trained


def evaluate(
    trained: dict[str, TrainedModel], x_test: np.ndarray, y_test: np.ndarray
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Each model in inference mode on the test images.

    Returns:
        (rows, probabilities): one row per model (test accuracy in inference mode, the last
        epoch's training-mode accuracy, parameters, MACs, images seen, epochs, seconds,
        images/s), and each model's class probabilities on ``x_test``.
    """
    rows, probabilities = [], {}
    for name, t in trained.items():
        probs = train.predict(t.model, x_test)
        probabilities[name] = probs
        rows.append(
            {
                "model": name,
                "test_accuracy": metrics.accuracy(probs, y_test),
                "last_train_accuracy_training_mode": t.result.history["accuracy"][-1],
                "parameters": t.parameters,
                "macs": t.macs,
                "images_seen": t.images_seen,
                "epochs": t.epochs,
                "train_seconds": t.result.train_seconds,
                "images_per_second": t.result.images_per_second,
            }
        )
    return rows, probabilities


def export_runs(
    trained: dict[str, TrainedModel],
    evaluation: list[dict],
    *,
    cloud: str,
    edge_candidate: str,
    serving_base: Path,
    serving_name: str,
    keras_dir: Path,
    classes: list[str],
    data_source: str,
    data_digest: str,
    hardware: str,
    input_scale: float = 1 / 255,
) -> dict:
    """Write every model where the later notebooks look for it, each atomically.

    - ``cloud`` as a SavedModel in TensorFlow Serving's layout (``serving_base/serving_name/1``,
      float pixels 0-255 in, probabilities out, and a PNG signature): what the server serves;
    - every model as ``keras_dir/<name>.keras`` (they take ``pixels * input_scale``);
    - ``keras_dir/cloud_model.json``: which model is the cloud's and which the edge candidate,
      and per model what it is and how well it did.

    Returns:
        The metadata written, with ``reload_identical``: the cloud model's ``.keras`` file,
        read back, predicts what the trained model predicts.
    """
    from workbench.cloud import export

    for name in (cloud, edge_candidate):
        if name not in trained:
            raise ValueError(f"{name!r} was not trained; trained: {sorted(trained)}")
    saved_model = export.export_saved_model(
        trained[cloud].model, base=serving_base, name=serving_name, version=1
    )
    for name, t in trained.items():
        export.save_keras(t.model, Path(keras_dir) / f"{name}.keras")
    by_name = {row["model"]: row for row in evaluation}
    metadata = {
        "cloud_model": cloud,
        "edge_candidate": edge_candidate,
        "serving_name": serving_name,
        "saved_model": str(saved_model),
        "classes": list(classes),
        "input": "float32 [batch, H, W, C], RGB pixels 0-255 (SavedModel); .keras files take "
        "pixels x input_scale",
        "input_scale": input_scale,
        "data_source": data_source,
        "data_sha256": data_digest,
        "hardware": hardware,
        "models": {
            name: {
                "architecture": t.spec.architecture,
                "keras_file": str(Path(keras_dir) / f"{name}.keras"),
                "parameters": t.parameters,
                "macs": t.macs,
                "images_seen": t.images_seen,
                "epochs": t.epochs,
                "seconds": t.result.train_seconds,
                "test_accuracy": by_name[name]["test_accuracy"] if name in by_name else None,
            }
            for name, t in trained.items()
        },
    }
    export.write_metadata(Path(keras_dir) / "cloud_model.json", metadata)
    probe = np.random.default_rng(0).integers(0, 256, (8, *trained[cloud].model.input_shape[1:]))
    reloaded = export.load_keras(Path(keras_dir) / f"{cloud}.keras")
    metadata["reload_identical"] = bool(
        np.allclose(
            train.predict(reloaded, probe, input_scale=input_scale),
            train.predict(trained[cloud].model, probe, input_scale=input_scale),
            atol=1e-5,
        )
    )
    return metadata
