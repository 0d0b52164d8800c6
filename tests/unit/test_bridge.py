"""Keras 3 models rebuilt in tf-keras: same graph, same weights, same predictions."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.models import bridge


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).uniform(0, 1, (8, 10, 12, 3)).astype(np.float32)


def _functional():
    """Branches, a residual add, a concatenation, batch norm, depthwise/separable, dropout."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 12, 3), name="image")
    x = layers.Rescaling(2.0, offset=-1.0)(inputs)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU(6.0)(x)
    y = layers.DepthwiseConv2D(3, padding="same")(x)
    y = layers.Conv2D(8, 1)(y)
    x = layers.Add()([x, y])
    a = layers.SeparableConv2D(4, 3, padding="same", activation="relu")(x)
    b = layers.Conv2D(4, 1, activation="swish")(x)
    x = layers.Concatenate()([a, b])
    x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(5, activation="softmax", kernel_regularizer="l2")(x)
    model = keras.Model(inputs, outputs, name="user_model")
    # Non-trivial batch-norm statistics, so a wrong copy would show.
    bn = next(lay for lay in model.layers if isinstance(lay, layers.BatchNormalization))
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([gamma * 1.5, beta + 0.1, mean + 0.2, var * 2.0])
    return model


def test_functional_model_is_rebuilt_exactly(x):
    import tf_keras

    k3 = _functional()
    tk = bridge.to_tf_keras(k3, x_check=x)
    assert isinstance(tk, tf_keras.Model)
    assert [type(layer).__name__ for layer in tk.layers] == [
        type(layer).__name__ for layer in k3.layers
    ]
    assert [layer.name for layer in tk.layers] == [layer.name for layer in k3.layers]
    np.testing.assert_allclose(
        tk.predict(x, verbose=0), np.asarray(k3.predict(x, verbose=0)), atol=1e-5
    )
    assert tk.count_params() == k3.count_params()


def test_sequential_model_is_rebuilt():
    import keras

    keras.utils.set_random_seed(1)
    k3 = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="seq",
    )
    tk = bridge.to_tf_keras(k3)
    xs = np.random.default_rng(1).uniform(0, 1, (4, 6, 6, 1)).astype(np.float32)
    np.testing.assert_allclose(tk(xs).numpy(), np.asarray(k3(xs)), atol=1e-6)


def test_shared_and_nested_layers():
    import keras

    keras.utils.set_random_seed(2)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="tanh")])
    shared = keras.layers.Dense(4, name="shared")
    inputs = keras.Input((4,))
    x = shared(inputs)
    x = shared(inner(x))  # the same layer twice, around a nested model
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    k3 = keras.Model(inputs, outputs)
    tk = bridge.to_tf_keras(k3)
    xs = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(tk(xs).numpy(), np.asarray(k3(xs)), atol=1e-6)


def test_a_keras3_only_layer_with_weights_is_refused_with_its_name():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.RMSNormalization(name="rms")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    with pytest.raises(bridge.BridgeError, match="rms.*RMSNormalization"):
        bridge.to_tf_keras(keras.Model(inputs, outputs))


def test_a_weightless_keras3_only_layer_is_computed_by_keras3():
    import keras

    from workbench.models import bridge_layers

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.AdaptiveAveragePooling2D((2, 2), name="adaptive")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    k3 = keras.Model(inputs, outputs)
    xs = np.random.default_rng(3).uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    tk = bridge.to_tf_keras(k3, x_check=xs)
    assert isinstance(tk.get_layer("adaptive"), bridge_layers.Keras3Layer)
    np.testing.assert_allclose(tk(xs).numpy(), np.asarray(k3(xs)), atol=1e-6)


def test_a_setting_tf_keras_lacks_is_refused():
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, lora_rank=2, name="lora")(inputs)
    with pytest.raises(bridge.BridgeError, match="lora_rank"):
        bridge.to_tf_keras(keras.Model(inputs, outputs))


@pytest.mark.slow
def test_bridged_model_goes_through_quantization_aware_training(x):
    """tfmot's transforms name new layers themselves (SeparableConv2D is split in two); the
    bridge reserves the model's names so they are not reused ("Shape mismatch" otherwise)."""
    from workbench.edge import techniques

    tk = bridge.to_tf_keras(_functional(), x_check=x)
    images = (x * 255).astype(np.uint8)
    labels = np.arange(len(x)) % 5
    qat = techniques.quantization_aware(
        tk, images, labels, steps=1, batch_size=4, input_scale=1 / 255, progress=False
    )
    assert qat.predict(x[:2], verbose=0).shape == (2, 5)


# ----------------------------------------------------------------------------- Keras 3 as written


def _usable_activations() -> list[str]:
    """Every activation Keras 3 accepts by name on a layer. Left out: ``threshold`` (it needs
    arguments) and ``glu`` (it halves the channels, which Keras 3's own layers do not expect:
    the Keras 3 model itself cannot run)."""
    import keras.src.activations as activations

    return sorted(n for n in activations.ALL_OBJECTS_DICT if n not in ("threshold", "glu"))


@pytest.mark.parametrize("name", _usable_activations())
def test_every_builtin_activation_is_bridged(name):
    """As an Activation layer and fused into a convolution: same outputs, and where tf-keras
    lacks the function (or tfmot cannot quantize it) the bridge adds a layer of its own."""
    import keras

    keras.utils.set_random_seed(4)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation=name, name="conv")(inputs)
    x = keras.layers.Activation(name, name="act")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    k3 = keras.Model(inputs, outputs)
    xs = np.random.default_rng(4).normal(0, 1, (6, 6, 6, 3)).astype(np.float32)
    tk = bridge.to_tf_keras(k3, x_check=xs)
    np.testing.assert_allclose(tk(xs).numpy(), np.asarray(k3(xs)), atol=1e-5)
    assert tk.get_layer("conv").count_params() == k3.get_layer("conv").count_params()


def _ops_model():
    """keras.ops as users write them in a functional graph: arithmetic with constants, a
    squeeze-and-excitation product, reductions, reshapes, slicing, concatenation."""
    import keras
    from keras import layers, ops

    keras.utils.set_random_seed(5)
    inputs = keras.Input((8, 8, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = x * ops.relu6(x + 3.0) * (1.0 / 6.0)  # hard swish, as MobileNetV3 writes it
    se = ops.mean(x, axis=[1, 2], keepdims=True)
    se = layers.Conv2D(8, 1, activation="hard_sigmoid", name="excite")(se)
    x = ops.multiply(x, se)  # broadcast over height and width
    y = 2.0 - ops.maximum(x, 0.0) / 4.0
    x = ops.concatenate([x, y], axis=-1)
    x = ops.transpose(x, (0, 2, 1, 3)) + np.linspace(0, 1, 16, dtype=np.float32)
    x = ops.sum(ops.reshape(x, (-1, 64, 16)), axis=1)
    x = ops.expand_dims(x, 1)[:, 0, :12]
    x = ops.squeeze(ops.expand_dims(ops.clip(x, -5.0, 5.0), -1), -1)
    x = ops.add(x, layers.Dense(12, name="skip")(x))
    outputs = layers.Dense(4, activation="softmax", name="out")(ops.gelu(x, approximate=False))
    return keras.Model(inputs, outputs, name="ops_model")


def test_keras_ops_in_a_functional_graph_are_bridged():
    import tf_keras

    from workbench.models import bridge_layers

    k3 = _ops_model()
    xs = np.random.default_rng(5).uniform(0, 1, (6, 8, 8, 3)).astype(np.float32)
    tk = bridge.to_tf_keras(k3, x_check=xs)
    np.testing.assert_allclose(tk(xs).numpy(), np.asarray(k3(xs)), atol=1e-5)
    kinds = {type(layer) for layer in tk.layers}
    assert {bridge_layers.Keras3Arithmetic, bridge_layers.Keras3Reduction} <= kinds
    assert {bridge_layers.Keras3Reshape, bridge_layers.Keras3Operation} <= kinds
    assert tf_keras.layers.Add in kinds  # two tensors of one shape: tf-keras' own merge layer
    assert tk.count_params() == k3.count_params()


def test_preprocessing_layers_are_bridged():
    import keras
    from keras import layers

    rng = np.random.default_rng(6)
    xs = rng.uniform(0, 255, (5, 20, 24, 3)).astype(np.float32)
    adapted = layers.Normalization(name="adapted")
    adapted.adapt(xs)
    inputs = keras.Input((20, 24, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inputs)
    x = layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 0.5], name="fixed")(x)
    x = layers.Resizing(16, 16, interpolation="bilinear", name="resize")(x)
    x = layers.CenterCrop(12, 12, name="crop")(x)
    x = layers.Resizing(10, 10, interpolation="nearest", crop_to_aspect_ratio=True)(x)
    y = adapted(layers.Resizing(10, 10, name="resize_raw")(inputs))
    x = layers.Concatenate()([x, y])
    outputs = layers.Dense(3, activation="softmax")(layers.Flatten()(x))
    k3 = keras.Model(inputs, outputs)
    tk = bridge.to_tf_keras(k3, x_check=xs)
    np.testing.assert_allclose(tk(xs).numpy(), np.asarray(k3(xs)), atol=1e-5)


def test_a_bridged_model_saves_and_loads_with_its_own_layers(tmp_path):
    import tf_keras

    k3 = _ops_model()
    xs = np.random.default_rng(7).uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    tk = bridge.to_tf_keras(k3, x_check=xs)
    path = tmp_path / "bridged.keras"
    tk.save(path)
    loaded = tf_keras.models.load_model(path, compile=False, safe_mode=True)
    np.testing.assert_allclose(loaded(xs).numpy(), tk(xs).numpy(), atol=1e-6)


@pytest.mark.slow
def test_keras3_applications_with_ops_and_custom_layers_are_bridged():
    """MobileNetV3 (hard_silu, x + 3.0) and ConvNeXt (LayerScale, ops.add, LayerNormalization,
    nested Sequential models), built small (the zoo, tests/test_zoo.py, trains and assesses
    every family)."""
    import keras

    rng = np.random.default_rng(8)
    for build, size in (
        (lambda s: keras.applications.MobileNetV3Small(input_shape=s, weights=None), 32),
        (lambda s: keras.applications.ConvNeXtTiny(input_shape=s, weights=None), 32),
    ):
        keras.utils.set_random_seed(8)
        k3 = build((size, size, 3))
        xs = rng.uniform(0, 255, (2, size, size, 3)).astype(np.float32)
        tk = bridge.to_tf_keras(k3, x_check=xs)
        np.testing.assert_allclose(tk(xs).numpy(), np.asarray(k3(xs)), atol=1e-5)
        assert tk.count_params() == k3.count_params()


@pytest.mark.slow
def test_quantization_aware_training_leaves_the_bridge_layers_float():
    """tfmot annotates what it knows; the Keras 3 activations and operations stay float."""
    from workbench.edge import techniques

    k3 = _ops_model()
    xs = np.random.default_rng(9).uniform(0, 1, (8, 8, 8, 3)).astype(np.float32)
    tk = bridge.to_tf_keras(k3, x_check=xs)
    images = (xs * 255).astype(np.uint8)
    qat = techniques.quantization_aware(
        tk, images, np.arange(8) % 4, steps=1, batch_size=4, input_scale=1 / 255, progress=False
    )
    assert qat.predict(xs[:2], verbose=0).shape == (2, 4)
