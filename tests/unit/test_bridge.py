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


def test_a_keras3_only_layer_is_refused_with_its_name():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.AdaptiveAveragePooling2D((2, 2), name="adaptive")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    with pytest.raises(bridge.BridgeError, match="adaptive.*AdaptiveAveragePooling2D"):
        bridge.to_tf_keras(keras.Model(inputs, outputs))


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
