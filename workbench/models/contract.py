"""The model+data contract: a classifier and labelled images checked as a pair before any
work (input shape, channels, classes, value ranges), with a message naming both sides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 for tf.keras before TensorFlow loads
from workbench.models import loading

# ----------------------------------------------------------------------------- loading


def open_pair(
    model_path: str | Path | loading.ImageClassifier,
    data,
    *,
    logits: bool = False,
    input_scale: float | None = None,
    trust_model: bool = False,
) -> loading.ImageClassifier:
    """Load the model, check it against ``data``, then bridge it to tf-keras on real inputs.

    The order matters: the pair is checked before any work (a wrong shape fails with a
    message naming both sides, not deep inside a conversion), and a Keras 3 model is bridged
    and verified on the user's own test images rather than on noise. ``model_path`` may be a
    classifier already loaded (unbridged) by :func:`open_for_data`.

    Raises:
        ContractError: the model, the data or the pair breaks the contract.
    """
    if isinstance(model_path, loading.ImageClassifier):
        classifier = model_path
    else:
        classifier = loading.load_classifier(
            model_path, logits=logits, bridge=False, trust_model=trust_model
        )
    check_pair(classifier, data, input_scale=input_scale)
    loading.bridge_keras3(classifier, x_check=loading.scale_inputs(data.x_test[:64], input_scale))
    return classifier


def open_for_data(
    model_path: str | Path,
    data_path: str | Path,
    *,
    logits: bool = False,
    trust_model: bool = False,
) -> loading.ImageClassifier:
    """Load the model (unbridged) and check its input shape against the data's header alone,
    before any image is decoded (:func:`workbench.data.datasets.peek_image_shape`): a folder of
    huge images or an inflating ``.npz`` of the wrong shape is refused without loading it.

    Raises:
        ContractError: the model is unusable, or the first image's shape does not fit it.
    """
    from workbench.data import datasets

    classifier = loading.load_classifier(
        model_path, logits=logits, bridge=False, trust_model=trust_model
    )
    image_shape = datasets.peek_image_shape(data_path)
    if image_shape is not None and image_shape != tuple(classifier.input_shape):
        raise loading.ContractError(
            _shape_mismatch(classifier, f"data {Path(data_path).name}", image_shape)
        )
    return classifier


def _shape_mismatch(classifier: loading.ImageClassifier, data_side: str, image_shape) -> str:
    return (
        f"Shape mismatch: the model {classifier.path.name} takes images of shape "
        f"{tuple(classifier.input_shape)}, the {data_side} holds images of shape "
        f"{tuple(image_shape)} (height, width, channels). Resize the images, or use a model "
        "built for them."
    )


# ----------------------------------------------------------------------------- the pair


def check_pair(
    classifier: loading.ImageClassifier,
    data,
    *,
    input_scale: float | None = None,
    sample: int = 64,
) -> None:
    """Check that ``data`` fits ``classifier`` before any work; raise :class:`ContractError`.

    Checks image shape and channels, the label range against the number of outputs, the
    class names, and on a sample of test images that the model outputs probabilities
    (rows of non-negative numbers summing to 1) unless it was loaded with ``logits=True``.
    """
    model_side = f"model {classifier.path.name}"
    data_side = f"data {Path(str(data.source).split(' (')[0]).name}"
    image_shape = tuple(data.x_train.shape[1:])
    if image_shape != tuple(classifier.input_shape):
        raise loading.ContractError(_shape_mismatch(classifier, data_side, image_shape))
    labels = np.concatenate([data.y_train, data.y_test])
    n_labels = int(labels.max()) + 1
    if n_labels > classifier.num_classes:
        raise loading.ContractError(
            f"Class mismatch: the {model_side} has {classifier.num_classes} outputs, the "
            f"{data_side} has labels 0..{n_labels - 1} ({n_labels} classes). Each label must "
            "index one of the model's outputs."
        )
    classes = tuple(getattr(data, "classes", None) or ())
    numbered = classes == tuple(str(i) for i in range(len(classes)))  # no names were given
    if classes and not numbered and len(classes) != classifier.num_classes:
        raise loading.ContractError(
            f"Class names: the {data_side} names {len(classes)} classes "
            f"({', '.join(map(str, list(classes)[:5]))}...), the {model_side} has "
            f"{classifier.num_classes} outputs."
        )
    if input_scale is not None and not (np.isfinite(input_scale) and input_scale > 0):
        raise loading.ContractError(f"input_scale must be a positive number, not {input_scale!r}.")
    x = loading.scale_inputs(data.x_test[:sample], input_scale)
    probs = classifier.predict(x)
    if probs.shape != (len(x), classifier.num_classes) or not np.all(np.isfinite(probs)):
        raise loading.ContractError(
            f"The {model_side} returned {probs.shape} with non-finite values for "
            f"{len(x)} test images of the {data_side}; expected finite class scores."
        )
    sums = probs.sum(axis=1)
    if not classifier.logits and (probs.min() < -1e-6 or np.max(np.abs(sums - 1)) > 1e-3):
        raise loading.ContractError(
            f"The {model_side} does not output probabilities (row sums between "
            f"{sums.min():.3g} and {sums.max():.3g}, smallest value {probs.min():.3g}). If its "
            "last layer outputs logits, say so (--logits / logits=True)."
        )
