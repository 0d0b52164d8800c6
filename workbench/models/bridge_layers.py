"""The small tf-keras layers the Keras 3 bridge (:mod:`workbench.models.bridge`) builds where
tf-keras has no layer of its own: one layer per family of what a Keras 3 graph may hold.

- :class:`Keras3Activation`: an activation function tf-keras lacks (``hard_silu``), defines
  differently (``hard_sigmoid``) or TensorFlow Model Optimization cannot quantize (``mish``);
- :class:`Keras3Arithmetic`, :class:`Keras3Reduction`, :class:`Keras3Reshape` and
  :class:`Keras3Operation`: one ``keras.ops`` call of a functional graph (``x + 3.0``,
  ``keras.ops.mean(x, axis=[1, 2])``, ``keras.ops.reshape``, anything else), with the
  constants it was called with;
- :class:`Keras3Layer`: a weightless Keras 3 layer tf-keras has no equivalent for (or rejects
  a setting of), such as ``AdaptiveAveragePooling2D`` or InceptionResNetV2's scale layer;
- :class:`LayerScale`: ConvNeXt's per-channel scale (a weight per channel).

The delegating layers compute with Keras 3 itself (its TensorFlow backend), so they give
exactly what the Keras 3 model gives; they hold no weights, so TensorFlow Model Optimization
leaves them as they are (float) and the TFLite converter sees plain TensorFlow operations.
All are registered with tf-keras (package ``workbench``), so a bridged model saves and loads
once this module is imported; what they re-create on loading goes through Keras 3's own
deserialization (its safe mode included).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 for tf.keras before TensorFlow loads

try:  # tf-keras is a runtime dependency; the guard only keeps `import` errors readable
    import tf_keras
except ImportError as err:  # pragma: no cover
    raise ImportError("workbench.models.bridge_layers needs the tf-keras package") from err

_register = tf_keras.utils.register_keras_serializable(package="workbench")


# ----------------------------------------------------------------------------- arguments


def encode_arguments(args: tuple, kwargs: dict, tensor_index: dict[int, int]) -> dict:
    """A JSON-friendly template of a call's arguments: each Keras tensor becomes
    ``{"__tensor__": i}`` (its position among the layer's inputs), arrays and slices become
    tagged dicts, every other value stays as it is."""

    def encode(value):
        if id(value) in tensor_index and hasattr(value, "shape"):
            return {"__tensor__": tensor_index[id(value)]}
        if isinstance(value, np.ndarray | np.generic):
            return {"__array__": np.asarray(value).tolist(), "dtype": str(value.dtype)}
        if isinstance(value, slice):
            return {"__slice__": [encode(value.start), encode(value.stop), encode(value.step)]}
        if value is Ellipsis:
            return {"__ellipsis__": True}
        if isinstance(value, list | tuple):
            items = [encode(v) for v in value]
            return items if isinstance(value, list) else {"__tuple__": items}
        if isinstance(value, dict):
            return {"__dict__": {k: encode(v) for k, v in value.items()}}
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise TypeError(f"an argument of type {type(value).__name__} cannot be stored")

    return {"args": encode(list(args)), "kwargs": {k: encode(v) for k, v in kwargs.items()}}


def decode_arguments(template: dict, tensors: list) -> tuple[list, dict]:
    """The call's arguments from :func:`encode_arguments`'s template and the input tensors."""

    def decode(value):
        if isinstance(value, dict):
            if "__tensor__" in value:
                return tensors[value["__tensor__"]]
            if "__array__" in value:
                return np.asarray(value["__array__"], dtype=value["dtype"])
            if "__slice__" in value:
                return slice(*(decode(v) for v in value["__slice__"]))
            if "__ellipsis__" in value:
                return Ellipsis
            if "__tuple__" in value:
                return tuple(decode(v) for v in value["__tuple__"])
            if "__dict__" in value:
                return {k: decode(v) for k, v in value["__dict__"].items()}
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return decode(template["args"]), {k: decode(v) for k, v in template["kwargs"].items()}


def _keras3_object(config: dict) -> Any:
    """A Keras 3 object (operation, layer) from its serialized form, Keras 3's safe mode on."""
    import keras

    return keras.saving.deserialize_keras_object(config, safe_mode=True)


def _as_list(inputs) -> list:
    return list(inputs) if isinstance(inputs, list | tuple) else [inputs]


# ----------------------------------------------------------------------------- layers


@_register
class Keras3Activation(tf_keras.layers.Layer):
    """A Keras 3 activation function, computed by Keras 3 (``hard_silu``, ``hard_sigmoid``,
    ``mish``, ...): what tf-keras lacks, defines differently or tfmot cannot quantize."""

    def __init__(self, activation: str | dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.activation = activation
        import keras

        fn = keras.activations.get(activation)
        object.__setattr__(self, "_fn", fn)  # a function, not state for tf-keras to track

    def call(self, inputs):
        return self._fn(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "activation": self.activation}


class _Keras3Call(tf_keras.layers.Layer):
    """One call of a Keras 3 operation with its constant arguments (a family's base)."""

    def __init__(self, operation: dict, arguments: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.operation = operation
        self.arguments = arguments
        object.__setattr__(self, "_op", _keras3_object(operation))  # stateless: not tracked

    def call(self, inputs):
        args, kwargs = decode_arguments(self.arguments, _as_list(inputs))
        return self._op(*args, **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "operation": self.operation, "arguments": self.arguments}


@_register
class Keras3Arithmetic(_Keras3Call):
    """Element-wise arithmetic of ``keras.ops`` with a constant or a broadcast operand
    (``x + 3.0``, ``x * (1 / 6)``, ``keras.ops.maximum(x, 0.0)``, ``keras.ops.sqrt``)."""


@_register
class Keras3Reduction(_Keras3Call):
    """A reduction of ``keras.ops`` over some axes (``mean``, ``sum``, ``max``, ``min``...)."""


@_register
class Keras3Reshape(_Keras3Call):
    """A change of shape or layout by ``keras.ops`` (``reshape``, ``expand_dims``,
    ``squeeze``, ``transpose``, slicing, ``concatenate`` with constants...)."""


@_register
class Keras3Operation(_Keras3Call):
    """Any other ``keras.ops`` call (an activation function called as an op, ``clip``...)."""


@_register
class Keras3Layer(tf_keras.layers.Layer):
    """A weightless Keras 3 layer that tf-keras has no faithful twin for, computed by Keras 3."""

    def __init__(self, layer: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.layer = layer
        inner = _keras3_object(layer)
        object.__setattr__(self, "_inner", inner)
        import inspect

        accepts = inspect.signature(inner.call).parameters
        object.__setattr__(self, "_takes_training", "training" in accepts)

    def call(self, inputs, training=None):
        if self._takes_training:
            return self._inner(inputs, training=training)
        return self._inner(inputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "layer": self.layer}


@_register
class LayerScale(tf_keras.layers.Layer):
    """ConvNeXt's layer scale: the input times a learned value per channel."""

    def __init__(self, init_values: float, projection_dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.init_values = init_values
        self.projection_dim = projection_dim

    def build(self, input_shape) -> None:
        self.gamma = self.add_weight(
            name="gamma",
            shape=(self.projection_dim,),
            initializer=tf_keras.initializers.Constant(self.init_values),
            trainable=True,
        )
        super().build(input_shape)

    def call(self, inputs):
        return inputs * self.gamma

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "init_values": self.init_values,
            "projection_dim": self.projection_dim,
        }


# Which family a keras.ops operation belongs to, by its class name (others: Keras3Operation).
FAMILIES = {
    Keras3Arithmetic: frozenset(
        "Add Subtract Multiply Divide TrueDivide FloorDivide Mod Power Maximum Minimum Negative "
        "Absolute Abs Square Sqrt Rsqrt Exp Log Log1p Reciprocal Sign Round Floor Ceil Clip "
        "Where".split()
    ),
    Keras3Reduction: frozenset(
        "Mean Sum Max Min Prod Amax Amin Argmax Argmin Std Var Logsumexp Norm Any All".split()
    ),
    Keras3Reshape: frozenset(
        "Reshape ExpandDims Squeeze Transpose Flatten Ravel GetItem Slice Concatenate Stack "
        "Tile Repeat Split Take BroadcastTo Pad MoveAxis SwapAxes".split()
    ),
}


def operation_layer(op, args: tuple, kwargs: dict, inputs: tuple, *, name: str):
    """The tf-keras layer of a family that replays the Keras 3 operation call ``op(*args,
    **kwargs)``; ``inputs`` are the Keras tensors among the arguments, in the order the layer
    will receive them."""
    import keras

    index: dict[int, int] = {}
    for i, t in enumerate(inputs):
        index.setdefault(id(t), i)
    family = next(
        (cls for cls, names in FAMILIES.items() if type(op).__name__ in names), Keras3Operation
    )
    return family(
        operation=keras.saving.serialize_keras_object(op),
        arguments=encode_arguments(args, kwargs, index),
        name=name,
    )
