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


# The only types in a saved KNN pipeline (StandardScaler + KNeighborsClassifier with the
# default Euclidean metric) that skops does not trust by default: the fitted KD-tree and
# its distance metric. Exactly these are trusted when loading; nothing else.
KNN_TRUSTED_TYPES = (
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
)


class UntrustedModelError(ValueError):
    """A skops file holds types that are not trusted; the message lists them."""


def save_skops(model, path: Path) -> Path:
    """Save a scikit-learn model with skops (a format that cannot run code when loaded).

    Written atomically: a reader sees the previous file or the new one, never half.
    """
    from skops.io import dumps

    from workbench import atomic

    return atomic.write_bytes(path, dumps(model))


def load_skops(path: Path, *, trusted: list[str] | tuple[str, ...] = KNN_TRUSTED_TYPES):
    """Load a skops file, trusting skops' defaults plus exactly the ``trusted`` types.

    By default those are the two the project's KNN model needs (:data:`KNN_TRUSTED_TYPES`).
    Anything else skops flags (a function reference such as a ``FunctionTransformer``'s
    ``func``, an unknown class) is refused before anything is built.

    Raises:
        FileNotFoundError: no file at ``path``.
        UntrustedModelError: the file holds types that are not trusted, naming them and
            listing everything skops reported.
    """
    from skops.io import get_untrusted_types, loads

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No model at {path}; run notebook 01 to train and save it.")
    raw = path.read_bytes()  # one read: what is checked is what is loaded
    reported = get_untrusted_types(data=raw)
    refused = [t for t in reported if t not in trusted]
    if refused:
        raise UntrustedModelError(
            f"{path} contains types that are not trusted: {refused} (skops reports as "
            f"untrusted: {reported}; trusted here: {list(trusted)}). Do not load it unless you "
            "know where it came from; if you do and have inspected those types, pass them in "
            "`trusted=`."
        )
    return loads(raw, trusted=list(trusted))


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


def student_cnn(
    *,
    width: int = 16,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    num_classes: int = NUM_CLASSES,
    batch_norm: bool = True,
    bn_momentum: float = 0.9,
):
    """A small edge student for distillation: three 3x3 convolutions, global pooling, softmax.

    About a sixth of the improved CNN's parameters and a seventh of its MACs at 32x32x3 and
    ``width=16``. Any image size and class count (a student for any teacher).

    With ``batch_norm`` (the default) each convolution is followed by batch norm, which the
    TFLite converter folds into the convolution: the edge model does the same work, but it
    trains far faster. On the CIFAR-10 subset, 600 steps of batch 64 reach about 51% validation
    accuracy with it and 36% without (measured for issue 13). Momentum 0.9, as in
    :func:`improved_cnn`, so the moving statistics follow a short run.
    """
    import tf_keras as keras
    from tf_keras import layers

    def conv(filters: int, name: str) -> list:
        if not batch_norm:
            return [layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)]
        return [
            layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name),
            layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn"),
            layers.ReLU(name=f"{name}_relu"),
        ]

    return keras.Sequential(
        [
            keras.Input(tuple(input_shape), name="image"),
            *conv(width, "conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            *conv(2 * width, "conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            *conv(4 * width, "conv3"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(num_classes, activation="softmax", name="probabilities"),
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
    """Multiply-accumulate operations for one input, counted from the layers' shapes.

    Counted, for every call of every layer in the model's graph (nested models included,
    once per call):

    - ``Conv1D/2D/3D``: output positions x kernel size x input channels / groups x filters;
    - ``Conv*DTranspose``: input positions x kernel size x input channels x filters (each
      input value is scattered through the whole kernel);
    - ``DepthwiseConv*``: output positions x kernel size x input channels x depth multiplier;
    - ``SeparableConv*``: its depthwise part plus its pointwise (1x1) part;
    - ``Dense`` on any rank: positions of the leading axes x inputs x units.

    A layer inside a wrapper (tfmot's quantization, pruning and clustering wrappers) counts
    as itself. Not counted: batch norm (folded into the preceding convolution at export), pooling,
    activations, element-wise adds and multiplies (no accumulation), recurrent and
    attention layers.

    Raises:
        ValueError: the model was never built (its layers have no shapes yet).
    """
    import tf_keras as keras

    total = 0
    for layer, in_shapes, out_shapes in _layer_calls(model):
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        while isinstance(layer, keras.layers.Wrapper):  # tfmot's quantize/prune/cluster wrappers
            layer = layer.layer
        total += layer_macs(layer, _dims(in_shapes), _dims(out_shapes))
    return int(total)


def _layer_calls(model):
    """(layer, input shapes, output shapes) for every call of every layer of ``model``."""
    if getattr(model, "_is_graph_network", False):
        for nodes in model._nodes_by_depth.values():
            for node in nodes:
                if not node.is_input:
                    yield node.layer, node.input_shapes, node.output_shapes
        return
    for layer in model.layers:
        try:
            yield layer, layer.input_shape, layer.output_shape
        except (AttributeError, RuntimeError) as err:
            raise ValueError(
                f"count_macs: layer {layer.name!r} of {model.name!r} has no shape yet; build "
                "the model (keras.Input or model.build) before counting its MACs."
            ) from err


def _dims(shapes) -> list:
    """The first tensor's shape as a list (for a layer with several inputs, the first)."""
    if isinstance(shapes, list | tuple) and shapes and isinstance(shapes[0], list | tuple):
        shapes = shapes[0]
    return list(shapes)


def layer_macs(layer, in_shape: list, out_shape: list) -> int:
    """MACs of one call of ``layer`` from its input and output shapes (batch axis first).

    The channel counts are read from the shapes, not from the layer's settings, so a
    caller may ask what a narrower version of the layer would cost (see
    :func:`workbench.slim.plan_macs`). Layers that do no multiply-accumulates give 0.
    """
    from tf_keras import layers as kl

    convolutions = (kl.Conv1D, kl.Conv2D, kl.Conv3D, kl.SeparableConv1D, kl.SeparableConv2D)
    depthwise = (kl.DepthwiseConv1D, kl.DepthwiseConv2D)
    if not isinstance(layer, (kl.Dense, *convolutions, *depthwise)):
        return 0
    if None in in_shape[1:] + out_shape[1:]:
        raise ValueError(
            f"count_macs: layer {layer.name!r} has a variable size (input {tuple(in_shape)}); "
            "give the model a fixed input shape to count its MACs."
        )
    if isinstance(layer, kl.Dense):
        return int(np.prod(in_shape[1:])) * out_shape[-1]
    axis = 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1
    c_in, c_out = in_shape[axis], out_shape[axis]

    def positions(shape: list) -> int:
        channel = axis % len(shape)
        return int(np.prod([d for i, d in enumerate(shape) if i not in (0, channel)]))

    kernel = int(np.prod(layer.kernel_size))
    if isinstance(layer, kl.SeparableConv1D | kl.SeparableConv2D):
        mid = c_in * layer.depth_multiplier
        return positions(out_shape) * (kernel * mid + mid * c_out)
    if isinstance(layer, depthwise):
        return positions(out_shape) * kernel * c_in * layer.depth_multiplier
    if isinstance(layer, kl.Conv1DTranspose | kl.Conv2DTranspose | kl.Conv3DTranspose):
        return positions(in_shape) * kernel * c_in * c_out // layer.groups
    return positions(out_shape) * kernel * (c_in // layer.groups) * c_out


def summary_text(model) -> str:
    """``model.summary()`` as a string."""
    buf = io.StringIO()
    model.summary(print_fn=lambda line, **_: buf.write(line + "\n"))
    return buf.getvalue()
