"""The subject of notebooks 03-05 and of ``assess``: a model and its data, opened, checked
as a pair, split into training, validation and test images, with the float model's answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.core import metrics
from workbench.models import contract, loading

# How many training images are held out to judge compressed variants (validation_share).
# The per-image standard deviation of a paired accuracy difference between a heavily
# compressed variant and its float model: a standard error of 1.5 pp on 544 CIFAR-10
# validation images (the subset, issue 13's search), 0.015 * sqrt(544).
PAIRED_SD = 0.35
VALIDATION_BUDGET_PP, VALIDATION_CONFIDENCE = 1.0, 0.9  # the pick rule the split is sized for
VALIDATION_SHARE = (0.1, 0.25)  # the least and the most of the training images held out


def validation_share(
    n_train: int,
    *,
    budget_pp: float = VALIDATION_BUDGET_PP,
    confidence: float = VALIDATION_CONFIDENCE,
) -> float:
    """The share of ``n_train`` training images to hold out for validation.

    A compressed variant is certified within the budget only if its validation delta minus
    ``z`` standard errors is (:class:`workbench.edge.variants.PickRule`); for a variant truly
    as accurate as the float model that takes ``n = (z * PAIRED_SD / budget)^2`` images
    (about 2,000 at 1 pp and 90%). That share of the training images, kept between
    :data:`VALIDATION_SHARE`: on the full CIFAR-10 (50,000) the least, 10%, already gives
    5,000; on a small dataset at most a quarter, so that training keeps three quarters (and
    the search says when that is too few to certify a variant). Notebooks 02-05 and
    ``assess`` use the same share, so the validation images are ones no model trained on.
    """
    from statistics import NormalDist

    if n_train <= 0:
        raise ValueError(f"n_train must be positive, not {n_train}")
    z = NormalDist().inv_cdf(confidence)
    needed = (z * PAIRED_SD / (budget_pp / 100)) ** 2
    low, high = VALIDATION_SHARE
    return round(min(high, max(low, needed / n_train)), 3)


@dataclass
class Subject:
    """A model and its data, opened and checked: what notebooks 03-05 and the command share."""

    classifier: object  # workbench.models.loading.ImageClassifier
    dataset: object  # workbench.data.datasets.ImageDataset
    input_scale: float | None
    x_train: np.ndarray  # training images left after the validation split (stored units)
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    evaluation: Evaluation  # test/validation images in model units, float answers
    name: str  # short name for files and the model server

    def scaled(self, x: np.ndarray) -> np.ndarray:
        """Images in model units (``pixels * input_scale``)."""
        from workbench.models import loading

        return loading.scale_inputs(x, self.input_scale)

    def describe(self) -> str:
        """What was opened: the model, the data, the split, the float model's accuracy."""
        from workbench.models.macs import count_macs

        c, e = self.classifier, self.evaluation
        keras_model = c.keras_model if c.keras_model is not None else None
        macs = count_macs(keras_model) if keras_model is not None else None
        params = c.describe()["parameters"]
        lines = [
            f"model: {c.path} ({c.saved_by}; input {tuple(c.input_shape)}, {c.num_classes} "
            f"classes"
            + (f", {params:,} parameters" if params else "")
            + (f", {macs / 1e6:.2f} M MACs per image" if macs else "")
            + ")",
            f"  tf-keras for tfmot: {c.keras_note}",
            f"  input: pixels x {self.input_scale:.6g}"
            if self.input_scale is not None
            else "  input: pixels as stored (float32)",
            f"data: {self.dataset.source}",
            f"  {len(self.y_train):,} training / {len(self.y_val):,} validation / "
            f"{len(self.y_test):,} test images, {tuple(self.dataset.x_train.shape[1:])} "
            f"{self.dataset.x_train.dtype}",
            f"float model: test accuracy {e.float_accuracy:.4f}, validation accuracy "
            f"{e.float_val_accuracy:.4f}",
        ]
        return "\n".join(lines)


def split_data(
    dataset,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    validation_fraction: float | None = None,
    seed: int = 0,
):
    """Capped train/test images and a validation split held out from training (seeded);
    ``validation_fraction`` None: :func:`validation_share` of the training images."""
    from workbench.data import datasets

    x_train, y_train = dataset.x_train[:n_train], dataset.y_train[:n_train]
    x_test, y_test = dataset.x_test[:n_test], dataset.y_test[:n_test]
    if validation_fraction is None:
        validation_fraction = validation_share(len(x_train))
    fit, val = datasets.validation_split(len(x_train), validation_fraction, seed)
    return x_train[fit], y_train[fit], x_train[val], y_train[val], x_test, y_test


def open_subject(
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    *,
    input_scale: float | None = None,
    logits: bool = False,
    class_names: list[str] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    validation_fraction: float | None = None,
    seed: int = 0,
    trust_model: bool = False,
    max_data_bytes: int | None = None,
) -> Subject:
    """Open a model and its data, check the pair, split off validation images.

    Args:
        model_path: a Keras image classifier (see :mod:`workbench.models.contract`); ``None``:
            notebook 02's improved CNN, with the input scale it records (pixels / 255).
        data_path: an ``.npz`` or a folder of class folders
            (:func:`workbench.data.datasets.load_image_dataset`); ``None``: CIFAR-10
            (:func:`workbench.data.cifar10.load_cifar10`: ``$WORKBENCH_CIFAR10``, the cache, or the
            download).
        input_scale: the model gets ``pixels * input_scale`` (None: pixels as stored).
        n_train, n_test: use only the first images of each split.
        validation_fraction, seed: the validation images held out from the training images
            (None: :func:`validation_share`, as notebook 02 holds them out).
        trust_model: load the model without the safety checks (:mod:`workbench.models.trust`).
        max_data_bytes: refuse data larger than this once decoded (default: a share of this
            machine's memory, :func:`workbench.data.sizes.max_data_bytes`).

    Raises:
        workbench.models.loading.ContractError: the model, the data or the pair is wrong.
        workbench.data.datasets.DatasetError: the data cannot be read.
    """
    from workbench.core import paths
    from workbench.data import cifar10, datasets
    from workbench.models import loading

    if model_path is None:
        model_path = paths.cloud_dir() / f"{paths.EDGE_CANDIDATE}.keras"
        if not Path(model_path).exists():
            raise loading.ContractError(
                f"No model at {model_path}: run notebook 02 to train the cloud model, or "
                "pass model_path to use your own."
            )
        if input_scale is None:
            input_scale = recorded_input_scale(paths.cloud_dir() / "cloud_model.json")
    model = model_path
    if data_path is None:
        dataset = cifar10.load_cifar10()
    else:  # the model first: its input shape is checked against the data's headers
        model = contract.open_for_data(
            model_path, data_path, logits=logits, trust_model=trust_model
        )
        dataset = datasets.load_image_dataset(
            data_path, class_names=class_names, max_bytes=max_data_bytes
        )
    x_train, y_train, x_val, y_val, x_test, y_test = split_data(
        dataset, n_train=n_train, n_test=n_test, validation_fraction=validation_fraction, seed=seed
    )
    classifier = contract.open_pair(
        model, dataset, logits=logits, input_scale=input_scale, trust_model=trust_model
    )
    evaluation = Evaluation.of(
        classifier, x_test, y_test, x_val=x_val, y_val=y_val, input_scale=input_scale
    )
    stem = Path(model_path).stem if Path(model_path).suffix else Path(model_path).name
    return Subject(
        classifier, dataset, input_scale, x_train, y_train, x_val, y_val, x_test, y_test,
        evaluation, name=stem,
    )  # fmt: skip


def recorded_input_scale(metadata: Path) -> float:
    """The input scale notebook 02 recorded for its model (1/255 when it recorded none)."""
    import json

    if metadata.exists():
        value = json.loads(metadata.read_text()).get("input_scale")
        if isinstance(value, int | float) and value > 0:
            return float(value)
    return 1 / 255


@dataclass
class Evaluation:
    """What every variant is measured on, in model units, with the float model's answers.

    Choices (which variant is "within budget") are made on the validation images, held out
    from training and distinct from the test images the final table reports.
    """

    x_test: np.ndarray
    y_test: np.ndarray
    float_probs: np.ndarray
    float_accuracy: float
    x_val: np.ndarray
    y_val: np.ndarray
    float_val_accuracy: float
    x_one: np.ndarray  # the image timed for latency
    float_val_probs: np.ndarray | None = None  # the float model on the validation images

    @classmethod
    def of(
        cls, classifier, x_test, y_test, *, x_val, y_val, input_scale: float | None
    ) -> Evaluation:
        x = loading.scale_inputs(x_test, input_scale)
        xv = loading.scale_inputs(x_val, input_scale)
        probs = classifier.predict(x)
        val_probs = classifier.predict(xv) if len(xv) else None
        val_acc = metrics.accuracy(val_probs, y_val) if val_probs is not None else float("nan")
        return cls(
            x,
            np.asarray(y_test),
            probs,
            metrics.accuracy(probs, y_test),
            xv,
            np.asarray(y_val),
            val_acc,
            x[:1],
            val_probs,
        )


@dataclass
class CloudModel:
    """The model the cloud serves for a subject, with its answers on the subject's images."""

    classifier: object  # workbench.models.loading.ImageClassifier
    input_scale: float | None
    name: str  # a short name (files, the model server)
    source: str  # where it came from, in words
    evaluation: Evaluation  # its answers on the subject's test and validation images
    exported: Path | None = None  # a SavedModel already in the serving base (notebook 02's)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for images in their stored units (scaled as this model needs)."""
        from workbench.models import loading

        return self.classifier.predict(loading.scale_inputs(x, self.input_scale))


def open_cloud_model(
    subject: Subject,
    cloud_model_path: str | Path | None = None,
    *,
    input_scale: float | None = None,
    logits: bool = False,
    trust_model: bool = False,
) -> CloudModel:
    """The cloud's model for ``subject``, checked against the subject's data.

    - ``cloud_model_path`` given: that model (any format :mod:`workbench.models.loading`
      reads), taking ``pixels * input_scale``;
    - else, when the subject is notebook 02's edge candidate: notebook 02's cloud model (the
      large one it trained and exported for the server);
    - else the subject's own float model: edge and cloud then run the same network, and the
      comparison is about where it runs, not what it knows.
    """
    import json

    from workbench.core import paths

    meta_path = paths.cloud_dir() / "cloud_model.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    candidate = paths.cloud_dir() / f"{paths.EDGE_CANDIDATE}.keras"
    is_candidate = (
        subject.classifier.path is not None
        and Path(subject.classifier.path).resolve() == candidate.resolve()
    )
    exported = None
    if cloud_model_path is None and is_candidate and meta.get("cloud_model"):
        cloud_model_path = paths.cloud_dir() / f"{meta['cloud_model']}.keras"
        input_scale = input_scale or recorded_input_scale(meta_path)
        name = meta.get("serving_name", paths.CLOUD_MODEL_NAME)
        source = (
            f"notebook 02's cloud model ({meta['models'][meta['cloud_model']]['architecture']})"
        )
        exported = Path(meta["saved_model"]) if meta.get("saved_model") else None
    elif cloud_model_path is None:
        return CloudModel(
            subject.classifier,
            subject.input_scale,
            subject.name,
            "the subject's own float model",
            subject.evaluation,
        )
    else:
        name = Path(cloud_model_path).stem or Path(cloud_model_path).name
        source = str(cloud_model_path)
    classifier = contract.open_pair(
        cloud_model_path,
        subject.dataset,
        logits=logits,
        input_scale=input_scale,
        trust_model=trust_model,
    )
    evaluation = Evaluation.of(
        classifier,
        subject.x_test,
        subject.y_test,
        x_val=subject.x_val,
        y_val=subject.y_val,
        input_scale=input_scale,
    )
    return CloudModel(classifier, input_scale, name, source, evaluation, exported)
