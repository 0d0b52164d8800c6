"""The CIFAR-10 networks the notebooks train: the seed article's CNN, an improved CNN and a
small student, all tf-keras (Keras 2) so that TensorFlow Model Optimization can compress them.
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np

import workbench  # noqa: F401 - sets TF_USE_LEGACY_KERAS before any TensorFlow import

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
    train fast, dropout and data augmentation (in :mod:`workbench.cloud.train`) keep
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


def resnet(
    *,
    widths: tuple[int, ...] = (32, 64, 128),
    blocks_per_stage: int = 2,
    weight_decay: float = 5e-4,
    bn_momentum: float = 0.9,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    num_classes: int = NUM_CLASSES,
):
    """The cloud's large model: a residual network for 32x32 images (He et al., CVPR 2016).

    A 3x3 stem convolution, then one stage per width of ``blocks_per_stage`` basic residual
    blocks (two 3x3 convolutions with batch norm; the shortcut adds the block's input back,
    through a strided 1x1 convolution where the stage halves the resolution and widens the
    channels), global average pooling and a softmax. With the defaults it has several times
    the improved CNN's multiply-accumulates per image: too much for a small device, which is
    the point of serving it from the cloud. The shortcuts let the gradient reach the early
    layers of a deeper network, and batch norm (momentum 0.9, as in :func:`improved_cnn`)
    lets it train with a large learning rate. ``weight_decay`` is an L2 penalty on the
    convolution and dense kernels (what SGD with momentum needs to generalise).
    """
    import tf_keras as keras
    from tf_keras import layers

    l2 = keras.regularizers.l2(weight_decay) if weight_decay else None

    def conv(x, filters: int, stride: int, name: str, size: int = 3):
        return layers.Conv2D(
            filters,
            size,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_regularizer=l2,
            name=name,
        )(x)

    def bn(x, name: str):
        return layers.BatchNormalization(momentum=bn_momentum, name=name)(x)

    inputs = keras.Input(tuple(input_shape), name="image")
    x = layers.ReLU(name="stem_relu")(bn(conv(inputs, widths[0], 1, "stem_conv"), "stem_bn"))
    for s, width in enumerate(widths, start=1):
        for b in range(1, blocks_per_stage + 1):
            name = f"stage{s}_block{b}"
            stride = 2 if (s > 1 and b == 1) else 1
            y = layers.ReLU(name=f"{name}_relu1")(
                bn(conv(x, width, stride, f"{name}_conv1"), f"{name}_bn1")
            )
            y = bn(conv(y, width, 1, f"{name}_conv2"), f"{name}_bn2")
            if stride != 1 or int(x.shape[-1]) != width:
                x = bn(conv(x, width, stride, f"{name}_shortcut", size=1), f"{name}_shortcut_bn")
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", kernel_regularizer=l2, name="probabilities"
    )(x)
    return keras.Model(inputs, outputs, name="resnet")


ARCHITECTURES = {
    "seed_cnn": seed_cnn,
    "improved_cnn": improved_cnn,
    "student_cnn": student_cnn,
    "resnet": resnet,
}


def build(name: str):
    """Build an architecture by name (a key of :data:`ARCHITECTURES`)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}.")
    return ARCHITECTURES[name]()


def architecture_fingerprint(model) -> str:
    """A short hash of a model's layer types and weight shapes (names and values ignored)."""
    desc = [
        (type(layer).__name__, [tuple(w.shape) for w in layer.weights]) for layer in model.layers
    ]
    return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]


def summary_text(model) -> str:
    """``model.summary()`` as a string."""
    buf = io.StringIO()
    model.summary(print_fn=lambda line, **_: buf.write(line + "\n"))
    return buf.getvalue()
