"""Bring a Keras 3 model into tf-keras (Keras 2), where TensorFlow Model Optimization works.

TensorFlow 2.16+ installs Keras 3 as the default ``keras``; a model a user saves today is a
Keras 3 model. tfmot (pruning, clustering, quantization-aware training) only understands
tf-keras models, and ``tf_keras.models.load_model`` cannot read a Keras 3 file ("Could not
deserialize class 'Functional'..."). Only those techniques need the bridge: everything else
(post-training variants, serving, split computing, cascades) runs on the model as it came.
:func:`to_tf_keras` rebuilds the model in tf-keras:

1. every call of the graph (:func:`workbench.models.graph.op_nodes`) gets a tf-keras twin:
   - a layer is re-created from its Keras 3 config, translated to what the tf-keras class of
     the same name accepts (dtype policies, serialized initializers, renamed settings; keys
     tf-keras does not know are dropped only when they hold their neutral value);
   - an activation tf-keras lacks or defines differently (``hard_silu``, ``hard_sigmoid``) or
     tfmot cannot quantize (``mish``), as an ``Activation`` layer or fused into a
     convolution, becomes a :class:`~workbench.models.bridge_layers.Keras3Activation` layer
     (split off the convolution, which keeps its weights);
   - a ``keras.ops`` call (``x + 3.0`` in a hard sigmoid, ``keras.ops.mean``, a reshape)
     becomes the tf-keras merge layer or ``Concatenate`` of the same meaning, or the small
     layer of its family (:mod:`workbench.models.bridge_layers`);
   - a weightless Keras 3 layer tf-keras has no twin for is computed by Keras 3 inside the
     tf-keras graph; ConvNeXt's ``LayerScale`` has a twin of its own;
2. the graph is rebuilt by calling the twins on the new tensors in the original
   topological order (branches, residual adds, concatenations, shared layers, nested models);
3. the weights are copied layer by layer, checked for matching shapes;
4. both models predict on real inputs and must agree within float tolerance.

Anything that cannot be bridged (a layer with weights and no tf-keras twin, a setting
tf-keras lacks) raises :class:`BridgeError` naming the layer and the reason; the caller then
skips only pruning, clustering and quantization-aware training, with that reason.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 for tf.keras before TensorFlow loads
from workbench.models import bridge_layers, graph


class BridgeError(RuntimeError):
    """A Keras 3 model (or one of its layers) has no faithful tf-keras equivalent."""


# Base-layer keyword arguments tf-keras accepts on every layer (tf_keras Layer.__init__).
_BASE_KWARGS = {
    "name",
    "trainable",
    "dtype",
    "dynamic",
    "input_dim",
    "input_shape",
    "batch_input_shape",
    "batch_size",
    "weights",
    "activity_regularizer",
    "autocast",
    "implementation",
}
# Keras 3 config keys with no tf-keras counterpart, and the value that makes dropping them safe.
_NEUTRAL = {
    "lora_rank": None,
    "lora_alpha": None,
    "quantization_config": None,
    "gamma_regularizer": None,
    "beta_regularizer": None,
    "seed": None,
    "input_axes": None,
    "output_axes": None,
    "sparse": False,
    "ragged": False,
    "optional": False,
    "rms_scaling": False,  # LayerNormalization
    "pad_to_aspect_ratio": False,  # Resizing
    "fill_mode": "constant",  # Resizing (used only when padding)
    "fill_value": 0.0,
    "antialias": False,
    "data_format": "channels_last",  # tf-keras' only layout where a layer has no setting
}
# Keys describing the saved object, not the layer: never passed on.
_BOOKKEEPING = {"build_config", "compile_config", "shared_object_id", "registered_name"}


def is_keras3_model(model: Any) -> bool:
    """Whether ``model`` is a Keras 3 model (the ``keras`` package), not a tf-keras one."""
    return graph.is_keras3_model(model)


def to_tf_keras(model, *, x_check: np.ndarray | None = None, atol: float = 1e-4):
    """Rebuild a Keras 3 ``model`` as an equivalent tf-keras model with the same weights.

    Args:
        model: a built Keras 3 ``Sequential`` or functional ``Model``.
        x_check: real inputs (already in the model's input units) on which both models must
            predict the same; without them random inputs of the input shape are used.
        atol: tolerance on outputs, relative to the largest output magnitude (at least 1).

    Returns:
        A tf-keras ``Model`` computing the same function.

    Raises:
        BridgeError: a layer has no tf-keras equivalent, its config cannot be translated,
            its weights do not fit, or the rebuilt model predicts differently.
    """
    import keras

    if not isinstance(model, keras.Model):
        raise BridgeError(f"{type(model).__name__} is not a Keras 3 model")
    rebuilt = _rebuild(model)
    _verify(model, rebuilt, x_check=x_check, atol=atol)
    reserve_layer_names(rebuilt)
    return rebuilt


def reserve_layer_names(model) -> None:
    """Make tf-keras' automatic layer names skip the names ``model`` already uses.

    A model loaded from a file (or bridged) creates its layers with explicit names, so
    tf-keras' per-name counters never advance. Layers created later with automatic names
    (tfmot's graph transforms, e.g. for SeparableConv2D) can then be called ``conv2d``
    again; tfmot matches weights by layer name and assigns the wrong ones ("Shape
    mismatch"). Advancing the counters past every name in use prevents that.
    """
    import re

    from tf_keras.src import backend  # the counters are not exported by tf_keras.backend

    uids = backend.get_default_graph_uid_map()
    for layer in _all_layers(model):
        match = re.fullmatch(r"(.*?)(?:_(\d+))?", layer.name)
        base, number = match.group(1), match.group(2)
        needed = int(number) + 1 if number is not None else 1
        key = ("", base)  # (namespace, name): layers share the graph-global namespace
        uids[key] = max(uids[key], needed)


def _all_layers(model) -> list:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out += _all_layers(layer)
    return out


# ----------------------------------------------------------------------------- rebuilding


@dataclass
class _Twin:
    """What replaces one Keras 3 layer or operation call in tf-keras."""

    layer: Any  # the tf-keras layer (or model) that takes the Keras 3 one's weights
    then: Any = None  # a layer applied after it: an activation split off (tfmot needs that)
    feed: str = "args"  # "args": called as the Keras 3 call was; "tensors": with its tensors


def _rebuild(model):
    """A tf-keras model with the same graph and weights as the Keras 3 ``model``."""
    import keras
    import tf_keras

    if isinstance(model, keras.Sequential) and getattr(model, "_functional", None) is None:
        raise BridgeError(
            f"Sequential model {model.name!r} has no known input shape; save it built "
            "(with keras.Input) so its layers can be rebuilt."
        )
    if isinstance(model, keras.Sequential):
        shape = tuple(model.inputs[0].shape[1:])
        new = tf_keras.Sequential(name=model.name)
        new.add(tf_keras.Input(shape, name=model.inputs[0].name))
        names = {layer.name for layer in model.layers}
        pairs = []
        for layer in model.layers:
            twin = _rebuild(layer) if isinstance(layer, keras.Model) else None
            twin = _Twin(twin) if twin is not None else _convert_layer(layer, names)
            new.add(twin.layer)
            if twin.then is not None:
                new.add(twin.then)
            pairs.append((layer, twin.layer))
        for old, converted in pairs:
            if not isinstance(old, keras.Model):
                _copy_weights(old, converted)
        return new
    return _rebuild_functional(model)


def _rebuild_functional(model):
    import keras
    import tf_keras

    tensors: dict[int, Any] = {}  # id of a Keras 3 tensor -> its tf-keras counterpart
    inputs = []
    for kt in model.inputs:
        new = tf_keras.Input(tuple(kt.shape[1:]), dtype=kt.dtype, name=kt.name)
        tensors[id(kt)] = new
        inputs.append(new)
    names = {op.name for op in model.operations}
    twins: dict[int, _Twin] = {}  # id of a Keras 3 layer -> its tf-keras twin
    for node in graph.op_nodes(model):  # a shared layer has several calls, one twin
        op = node.op
        if isinstance(op, keras.Model):
            twin = twins.setdefault(id(op), _Twin(_rebuild(op)))
        elif isinstance(op, keras.layers.Layer):
            if id(op) not in twins:
                twins[id(op)] = _convert_layer(op, names)
            twin = twins[id(op)]
        else:  # a keras.ops call: an operation, a twin of its own per call
            twin = _convert_operation(node)
        _replay(node, twin, tensors, model.name)
    missing = [t.name for t in model.outputs if id(t) not in tensors]
    if missing:
        raise BridgeError(f"outputs {missing} of {model.name!r} could not be reached")
    outputs = [tensors[id(t)] for t in model.outputs]
    rebuilt = tf_keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=model.name,
    )
    for op in model.operations:
        if id(op) in twins and not isinstance(op, keras.Model):
            _copy_weights(op, twins[id(op)].layer)
    return rebuilt


def _replay(node, twin: _Twin, tensors: dict[int, Any], model_name: str) -> None:
    """Call the tf-keras twin as the Keras 3 ``node`` called its layer; map the outputs."""
    import keras
    import tensorflow as tf

    op = node.op
    if not all(id(t) in tensors for t in node.inputs):
        raise BridgeError(
            f"{op.name!r}: an input of one of its calls is not produced in "
            f"{model_name!r} (a graph tf-keras cannot rebuild)"
        )

    def swap(value):
        return keras.tree.map_structure(
            lambda t: tensors[id(t)] if isinstance(t, keras.KerasTensor) else t, value
        )

    try:
        if twin.feed == "tensors":
            outputs = twin.layer([tensors[id(t)] for t in node.inputs])
        else:
            kwargs = {  # masks and the training flag are tf-keras' own business
                k: swap(v)
                for k, v in node.kwargs.items()
                if v is not None and k not in ("mask", "training")
            }
            outputs = twin.layer(*swap(node.args), **kwargs)
        if twin.then is not None:
            outputs = twin.then(outputs)
    except Exception as err:  # noqa: BLE001 - any failure means "cannot rebuild"
        raise BridgeError(
            f"{op.name!r} ({type(op).__name__}) could not be called in tf-keras: "
            f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        ) from err
    for old, new in zip(node.outputs, tf.nest.flatten(outputs), strict=True):
        tensors[id(old)] = new


# Keras 3 operations with a tf-keras merge layer of the same meaning (two tensors, one shape).
_MERGES = {"Add": "Add", "Subtract": "Subtract", "Multiply": "Multiply",
           "Maximum": "Maximum", "Minimum": "Minimum"}  # fmt: skip


def _convert_operation(node) -> _Twin:
    """The tf-keras twin of one ``keras.ops`` call: a merge layer or ``Concatenate`` where
    tf-keras has one, else the small layer of its family (:mod:`bridge_layers`)."""
    import keras
    import tf_keras

    op, args = node.op, node.args
    kind = type(op).__name__
    tensors = [a for a in args if isinstance(a, keras.KerasTensor)]
    if (
        kind in _MERGES
        and len(args) == 2
        and len(tensors) == 2
        and not node.kwargs
        and tuple(tensors[0].shape) == tuple(tensors[1].shape)
    ):
        return _Twin(getattr(tf_keras.layers, _MERGES[kind])(name=op.name), feed="tensors")
    if (
        kind == "Concatenate"
        and len(args) == 1
        and not node.kwargs
        and isinstance(args[0], list | tuple)
        and all(isinstance(a, keras.KerasTensor) for a in args[0])
        and len(args[0]) == len(node.inputs)
    ):
        return _Twin(tf_keras.layers.Concatenate(axis=op.axis, name=op.name), feed="tensors")
    try:
        layer = bridge_layers.operation_layer(op, args, node.kwargs, node.inputs, name=op.name)
    except (TypeError, ValueError) as err:
        raise BridgeError(
            f"operation {op.name!r} ({kind}): its arguments cannot be carried over ({err})"
        ) from err
    return _Twin(layer, feed="tensors")


# Activations tfmot's 8-bit scheme quantizes: fused into a layer, and as an Activation layer.
_TFMOT_FUSED = frozenset({"linear", "relu", "swish", "silu", "gelu", "softmax", "sigmoid", "tanh"})
_TFMOT_ACTIVATION = _TFMOT_FUSED | {"relu6"}
_TF_KERAS_NAME = {"silu": "swish"}  # Keras 3 names tf-keras spells otherwise
# Layers that apply their activation last, so it can be split off into a layer of its own.
_FUSED_ACTIVATION_LAYERS = graph.PRODUCERS | {"DepthwiseConv1D", "DepthwiseConv2D"}
# Keras 3 settings tf-keras spells otherwise, per layer class.
_RENAMED = {"LeakyReLU": {"negative_slope": "alpha"}}
# Layers of keras.applications with weights that tf-keras has no layer for.
_APPLICATION_LAYERS = {"LayerScale": bridge_layers.LayerScale}


def _activation_layer(activation: str | dict, *, name: str):
    """An activation as its own tf-keras layer: ``Activation`` where tf-keras computes the same
    function and tfmot quantizes it, else :class:`bridge_layers.Keras3Activation`."""
    import tf_keras

    if isinstance(activation, str) and activation in _TFMOT_ACTIVATION:
        return tf_keras.layers.Activation(_TF_KERAS_NAME.get(activation, activation), name=name)
    return bridge_layers.Keras3Activation(activation=activation, name=name)


def _unique(name: str, names: set[str]) -> str:
    candidate, i = name, 1
    while candidate in names:
        candidate, i = f"{name}_{i}", i + 1
    names.add(candidate)
    return candidate


def _convert_layer(layer, names: set[str]) -> _Twin:
    """A fresh tf-keras layer of the same class and config as the Keras 3 ``layer`` (and, for
    an activation tfmot cannot quantize fused into it, that activation as a layer after it);
    a weightless layer tf-keras cannot express is computed by Keras 3
    (:class:`bridge_layers.Keras3Layer`)."""
    import keras
    import tf_keras

    cls_name = type(layer).__name__
    where = f"layer {layer.name!r}"
    config = layer.get_config()
    if cls_name == "Activation":
        return _Twin(_activation_layer(config["activation"], name=layer.name))
    cls = _APPLICATION_LAYERS.get(cls_name) or getattr(tf_keras.layers, cls_name, None)
    if cls is None or not isinstance(cls, type):
        if not layer.weights:
            return _Twin(_delegate(layer))
        raise BridgeError(
            f"{where} is a {cls_name}, which tf-keras does not have; the tfmot "
            "variants need tf-keras, the others do not."
        )
    then = None
    activation = config.get("activation")
    if cls_name in _FUSED_ACTIVATION_LAYERS and activation is not None:
        if isinstance(activation, str) and activation in _TFMOT_FUSED:
            config["activation"] = _TF_KERAS_NAME.get(activation, activation)
        else:
            config["activation"] = "linear"
            label = activation if isinstance(activation, str) else "activation"
            then = _activation_layer(activation, name=_unique(f"{layer.name}_{label}", names))
    for old, new in _RENAMED.get(cls_name, {}).items():
        if old in config:
            config[new] = config.pop(old)
    try:
        return _Twin(cls.from_config(_translate_config(config, cls, where=where)), then=then)
    except BridgeError:
        if not layer.weights and isinstance(layer, keras.layers.Layer):
            return _Twin(_delegate(layer))
        raise
    except Exception as err:  # noqa: BLE001 - tf-keras rejects configs in many ways
        if not layer.weights:
            return _Twin(_delegate(layer))
        raise BridgeError(
            f"{where} ({cls_name}): tf-keras rejects its config "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from err


def _delegate(layer):
    """A weightless Keras 3 layer, computed by Keras 3 inside the tf-keras graph."""
    import keras

    try:
        return bridge_layers.Keras3Layer(
            layer=keras.saving.serialize_keras_object(layer), name=layer.name
        )
    except Exception as err:  # noqa: BLE001 - Keras raises many types
        raise BridgeError(
            f"layer {layer.name!r} ({type(layer).__name__}) has no tf-keras equivalent and "
            f"cannot be carried over ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from err


def _accepted_keys(cls) -> set[str] | None:
    """Keyword arguments ``cls.__init__`` accepts by name (None: anything goes)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names - {"self"}
        if klass.__module__.startswith("tf_keras.src.engine.base_layer"):
            return (names | _BASE_KWARGS) - {"self"}
    return None


def _translate_config(config: dict, cls, *, where: str) -> dict:
    accepted = _accepted_keys(cls)
    out = {}
    for key, value in config.items():
        if key in _BOOKKEEPING:
            continue
        if accepted is not None and key not in accepted:
            if key in _NEUTRAL and value == _NEUTRAL[key]:
                continue
            raise BridgeError(
                f"{where}: the Keras 3 setting {key}={value!r} has no tf-keras equivalent"
            )
        out[key] = _translate_value(key, value, where=where)
    return out


def _translate_value(key: str, value: Any, *, where: str) -> Any:
    if key == "dtype" and isinstance(value, dict):  # a DTypePolicy: keep its name
        return value.get("config", {}).get("name", "float32")
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        return _translate_object(value, where=f"{where} {key}")
    if isinstance(value, list):
        return tuple(value) if key.endswith(("size", "strides", "rate", "shape")) else value
    return value


def _translate_object(obj: dict, *, where: str) -> dict | str | None:
    """A serialized initializer/regularizer/constraint/activation, in tf-keras' form."""
    import tf_keras

    module = obj.get("module") or ""
    cls_name = obj["class_name"]
    config = obj.get("config")
    if cls_name == "function" and isinstance(config, str):  # a built-in activation
        return config
    family = {
        "keras.initializers": tf_keras.initializers,
        "keras.regularizers": tf_keras.regularizers,
        "keras.constraints": tf_keras.constraints,
    }.get(module)
    cls = getattr(family, cls_name, None) if family else None
    if cls is None or not isinstance(config, dict):
        raise BridgeError(f"{where}: {module}.{cls_name} has no tf-keras equivalent")
    keys = _accepted_keys(cls)
    kept = {}
    for k, v in config.items():
        if keys is None or k in keys:
            kept[k] = v
        elif not (k in _NEUTRAL and v == _NEUTRAL[k]):
            raise BridgeError(f"{where}: {cls_name}({k}={v!r}) has no tf-keras equivalent")
    return {"class_name": cls_name, "config": kept}


def _copy_weights(old, new) -> None:
    weights = old.get_weights()
    expected = [tuple(w.shape) for w in new.weights]
    got = [tuple(w.shape) for w in weights]
    if expected != got:
        raise BridgeError(
            f"layer {old.name!r} ({type(old).__name__}): its weights {got} do not fit the "
            f"tf-keras layer's {expected}"
        )
    new.set_weights(weights)


# ----------------------------------------------------------------------------- verifying


def _verify(old, new, *, x_check: np.ndarray | None, atol: float) -> None:
    shape = tuple(old.inputs[0].shape[1:])
    if x_check is None:
        x_check = np.random.default_rng(0).uniform(0, 1, (8, *shape)).astype(np.float32)
    x = np.asarray(x_check[:64], dtype=np.float32)
    a = np.asarray(old(x, training=False))
    b = np.asarray(new(x, training=False))
    if a.shape != b.shape:
        raise BridgeError(f"the rebuilt model outputs {b.shape}, the original {a.shape}")
    finite = np.isfinite(a) & np.isfinite(b)
    if not np.array_equal(np.where(finite, 0, a), np.where(finite, 0, b), equal_nan=True):
        raise BridgeError(
            f"the rebuilt tf-keras model predicts differently on {len(x)} real inputs "
            "(not-a-number or infinite outputs in different places)"
        )
    scale = max(1.0, float(np.max(np.abs(a[finite]), initial=0.0)))
    diff = float(np.max(np.abs(a - b)[finite], initial=0.0))
    if not diff <= atol * scale:
        raise BridgeError(
            f"the rebuilt tf-keras model predicts differently on {len(x)} real inputs "
            f"(largest difference {diff:.3g}, allowed {atol * scale:.3g})"
        )
