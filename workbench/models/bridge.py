"""Bring a Keras 3 model into tf-keras (Keras 2), where TensorFlow Model Optimization works.

TensorFlow 2.16+ installs Keras 3 as the default ``keras``; a model a user saves today is a
Keras 3 model. tfmot (pruning, clustering, quantization-aware training) only understands
tf-keras models, and ``tf_keras.models.load_model`` cannot read a Keras 3 file ("Could not
deserialize class 'Functional'..."). :func:`to_tf_keras` rebuilds the model in tf-keras:

1. every layer is re-created from its Keras 3 config, translated to what the tf-keras class
   of the same name accepts (dtype policies, serialized initializers; keys tf-keras does not
   know are dropped only when they hold their neutral value);
2. the graph is rebuilt by calling the new layers on the new tensors in the original
   topological order (branches, residual adds, concatenations, shared layers, nested models);
3. the weights are copied layer by layer, checked for matching shapes;
4. both models predict on real inputs and must agree within float tolerance.

Anything that cannot be bridged raises :class:`BridgeError` naming the layer and the reason;
the caller then keeps the Keras 3 model for what does not need tfmot (TFLite post-training
variants, serving).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 for tf.keras before TensorFlow loads


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
}
# Keys describing the saved object, not the layer: never passed on.
_BOOKKEEPING = {"build_config", "compile_config", "shared_object_id", "registered_name"}


def is_keras3_model(model: Any) -> bool:
    """Whether ``model`` is a Keras 3 model (the ``keras`` package), not a tf-keras one."""
    return type(model).__module__.startswith("keras.") or type(model).__module__ == "keras"


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


def _rebuild(model):
    """A tf-keras model with the same graph and weights as the Keras 3 ``model``."""
    import keras
    import tf_keras

    if isinstance(model, keras.Sequential):
        shape = tuple(model.inputs[0].shape[1:]) if model.inputs else None
        if shape is None:
            raise BridgeError(
                f"Sequential model {model.name!r} has no known input shape; save it built "
                "(with keras.Input) so its layers can be rebuilt."
            )
        new = tf_keras.Sequential(name=model.name)
        new.add(tf_keras.Input(shape, name=model.inputs[0].name))
        pairs = []
        for layer in model.layers:
            converted = _convert_layer(layer)
            new.add(converted)
            pairs.append((layer, converted))
        for old, converted in pairs:
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
    converted: dict[int, Any] = {}  # id of a Keras 3 layer -> its tf-keras twin
    nodes = [  # the model's own calls, inputs first (a shared layer has several)
        node
        for depth in sorted(model._nodes_by_depth, reverse=True)
        for node in model._nodes_by_depth[depth]
        if not isinstance(node.operation, keras.layers.InputLayer)
    ]
    for node in nodes:
        op = node.operation
        if id(op) not in converted:
            converted[id(op)] = _rebuild(op) if isinstance(op, keras.Model) else _convert_layer(op)
        _replay(node, converted[id(op)], tensors, model.name)
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
        if id(op) in converted and not isinstance(op, keras.Model):
            _copy_weights(op, converted[id(op)])
    return rebuilt


def _replay(node, layer, tensors: dict[int, Any], model_name: str) -> None:
    """Call the tf-keras ``layer`` as the Keras 3 ``node`` called its layer; map the outputs."""
    import keras
    import tensorflow as tf

    op = node.operation
    args, kwargs = node.arguments.args, node.arguments.kwargs
    needed = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
    if not all(id(t) in tensors for t in needed):
        raise BridgeError(
            f"layer {op.name!r}: an input of one of its calls is not produced in "
            f"{model_name!r} (a graph tf-keras cannot rebuild)"
        )

    def swap(value):
        return keras.tree.map_structure(
            lambda t: tensors[id(t)] if isinstance(t, keras.KerasTensor) else t, value
        )

    new_kwargs = {  # masks and the training flag are tf-keras' own business
        k: swap(v) for k, v in kwargs.items() if v is not None and k not in ("mask", "training")
    }
    try:
        outputs = layer(*swap(args), **new_kwargs)
    except Exception as err:  # noqa: BLE001 - any failure means "cannot rebuild"
        raise BridgeError(
            f"layer {op.name!r} ({type(op).__name__}) could not be called in tf-keras: "
            f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        ) from err
    for old, new in zip(keras.tree.flatten(node.outputs), tf.nest.flatten(outputs), strict=True):
        tensors[id(old)] = new


def _convert_layer(layer):
    """A fresh tf-keras layer of the same class and config as the Keras 3 ``layer``."""
    import tf_keras

    cls_name = type(layer).__name__
    cls = getattr(tf_keras.layers, cls_name, None)
    if cls is None or not isinstance(cls, type):
        raise BridgeError(
            f"layer {layer.name!r} is a {cls_name}, which tf-keras does not have; the tfmot "
            "variants need tf-keras, the post-training variants do not."
        )
    try:
        config = _translate_config(layer.get_config(), cls, where=f"layer {layer.name!r}")
        return cls.from_config(config)
    except BridgeError:
        raise
    except Exception as err:  # noqa: BLE001 - tf-keras rejects configs in many ways
        raise BridgeError(
            f"layer {layer.name!r} ({cls_name}): tf-keras rejects its config "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]})"
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
    scale = max(1.0, float(np.max(np.abs(a))))
    diff = float(np.max(np.abs(a - b)))
    if not diff <= atol * scale:
        raise BridgeError(
            f"the rebuilt tf-keras model predicts differently on {len(x)} real inputs "
            f"(largest difference {diff:.3g}, allowed {atol * scale:.3g})"
        )
