"""Models of both tiers: the iris KNN for the edge, the CIFAR-10 CNNs for the cloud.

CNNs are built with ``tf_keras`` (Keras 2) so TensorFlow Model Optimization can
prune, cluster and quantize them later. They take float images scaled to
[0, 1] (:func:`scale_images`) and output class probabilities.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

import workbench  # noqa: F401 - sets TF_USE_LEGACY_KERAS before any TensorFlow import

# ------------------------------------------------------------------ iris KNN (edge)


def knn_cv_scores(
    x_train: np.ndarray, y_train: np.ndarray, *, ks: list[int], folds: int = 5, seed: int = 0
) -> dict[int, float]:
    """Mean stratified k-fold cross-validation accuracy of a scaled KNN for each k."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return {k: float(cross_val_score(build_knn(k), x_train, y_train, cv=cv).mean()) for k in ks}


def best_k(scores: dict[int, float]) -> int:
    """The k with the highest CV accuracy; ties go to the smallest k (the simplest model)."""
    top = max(scores.values())
    return min(k for k, s in scores.items() if np.isclose(s, top))


def build_knn(k: int):
    """A standardising k-nearest-neighbours classifier (features on one scale)."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k))


def knn_footprint(model) -> dict[str, int]:
    """Bytes a fitted KNN pipeline needs on the device: it stores its whole training set."""
    from skops.io import dumps

    knn = model[-1]
    stored = int(knn._fit_X.nbytes + np.asarray(knn._y).nbytes)
    return {"training_set_bytes": stored, "serialized_bytes": len(dumps(model))}


def save_skops(model, path: Path) -> Path:
    """Save a scikit-learn model with skops (a format that cannot run code when loaded)."""
    from skops.io import dump

    path.parent.mkdir(parents=True, exist_ok=True)
    dump(model, path)
    return path


def load_skops(path: Path, *, trusted: list[str] | None = None):
    """Load a skops file, trusting only the listed types (and scikit-learn's own, by default).

    Raises:
        ValueError: if the file holds a type that is not trusted, naming it.
    """
    from skops.io import get_untrusted_types, load

    if not Path(path).exists():
        raise FileNotFoundError(f"No model at {path}; run notebook 01 to train and save it.")
    unknown = get_untrusted_types(file=path)
    allowed = set(trusted or [])
    unexpected = [t for t in unknown if t not in allowed and not t.startswith("sklearn.")]
    if unexpected:
        raise ValueError(
            f"{path} contains types that are not trusted: {unexpected}. Inspect the file's origin "
            "before passing them in `trusted=`."
        )
    return load(path, trusted=unknown)


# -------------------------------------------------------------- CIFAR-10 CNNs (cloud)

INPUT_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


def scale_images(x: np.ndarray) -> np.ndarray:
    """uint8 pixels 0-255 to float32 in [0, 1], the CNNs' input scaling."""
    return np.asarray(x, dtype=np.float32) / 255.0


def seed_cnn():
    """The seed article's CIFAR-10 CNN, exactly: conv32-pool-conv64-pool-dense128-softmax.

    Conv2D 32 (3x3, same, ReLU) -> MaxPool 2x2 -> Conv2D 64 (3x3, same, ReLU) ->
    MaxPool 2x2 -> Flatten -> Dense 128 ReLU -> Dense 10 softmax. About 545k parameters.
    """
    import tf_keras as keras
    from tf_keras import layers

    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE, name="image"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(128, activation="relu", name="dense1"),
            layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities"),
        ],
        name="seed_cnn",
    )


def improved_cnn(*, dropout: float = 0.25, bn_momentum: float = 0.9):
    """A cloud-tier CNN of similar size with the habits that pay off on CIFAR-10.

    Three VGG-style blocks of 3x3 convolutions (32, 64+64, 128 filters) with
    batch norm and ReLU, max pooling and dropout, then global average pooling
    into a small dense head. Compared with :func:`seed_cnn` it has fewer
    parameters but more depth and compute per image; batch norm lets it
    train fast, dropout and data augmentation (in :mod:`workbench.train`) keep
    it from memorising a small training set.

    Batch-norm momentum is 0.9, not Keras' 0.99: the moving statistics used at
    inference then follow the network within a few dozen steps. With 0.99 and a
    short run on a small dataset they lag and inference-mode accuracy collapses.
    """
    import tf_keras as keras
    from tf_keras import layers

    def block(x, filters: int, name: str, convs: int):
        for i in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn{i}")(x)
            x = layers.ReLU(name=f"{name}_relu{i}")(x)
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
        return layers.Dropout(dropout, name=f"{name}_dropout")(x)

    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = block(inputs, 32, "block1", convs=1)
    x = block(x, 64, "block2", convs=2)
    x = block(x, 128, "block3", convs=1)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(128, activation="relu", name="dense1")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="improved_cnn")


def student_cnn(*, width: int = 16):
    """A small edge student for distillation: two conv blocks, global pooling, softmax.

    About a tenth of the improved CNN's parameters and MACs.
    """
    import tf_keras as keras
    from tf_keras import layers

    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE, name="image"),
            layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Conv2D(4 * width, 3, padding="same", activation="relu", name="conv3"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities"),
        ],
        name="student_cnn",
    )


ARCHITECTURES = {"seed_cnn": seed_cnn, "improved_cnn": improved_cnn, "student_cnn": student_cnn}


def build(name: str):
    """Build an architecture by name (``seed_cnn`` or ``improved_cnn``)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}.")
    return ARCHITECTURES[name]()


def architecture_fingerprint(model) -> str:
    """A short hash of a model's layer types and weight shapes (names and values ignored)."""
    desc = [
        (type(layer).__name__, [tuple(w.shape) for w in layer.weights]) for layer in model.layers
    ]
    return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]


def count_macs(model) -> int:
    """Multiply-accumulate operations for one image, counted from the layers' shapes.

    Counts convolutions (including depthwise) and dense layers, which dominate
    a CNN's cost; pooling, activations and batch norm (folded into the
    convolution at export) are not counted.
    """
    import tf_keras as keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output_shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output_shape
            kh, kw = layer.kernel_size
            c_in = layer.input_shape[-1]
            total += h * w * c_out * kh * kw * c_in // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    return int(total)


def summary_text(model) -> str:
    """``model.summary()`` as a string."""
    buf = io.StringIO()
    model.summary(print_fn=lambda line, **_: buf.write(line + "\n"))
    return buf.getvalue()
