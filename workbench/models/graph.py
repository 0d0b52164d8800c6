"""Walking and rebuilding tf-keras functional graphs: nodes in order, a replay of the graph
node by node (the one home of graph surgery), and the facts about layers that
structured pruning, batch-norm folding and split computing read.
"""

from __future__ import annotations

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads

# Layers that create a new channel space (their output channels are their filters/units).
CONVOLUTIONS = frozenset(
    "Conv1D Conv2D Conv3D SeparableConv1D SeparableConv2D "
    "Conv1DTranspose Conv2DTranspose Conv3DTranspose".split()
)


PRODUCERS = CONVOLUTIONS | {"Dense"}


def ordered_nodes(model) -> list:
    order = []
    for depth in sorted(model._nodes_by_depth, reverse=True):  # input side first
        order += [n for n in model._nodes_by_depth[depth] if not n.is_input]
    return order


def flat(x) -> list:
    import tensorflow as tf

    return tf.nest.flatten(x)


def axes(layer) -> list[int]:
    axis = layer.axis
    return list(axis) if isinstance(axis, list | tuple) else [axis]


def activation_name(layer) -> str | None:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


def bn_followers(model) -> dict:
    """{producer name: the BatchNormalization that is its output's only consumer}."""
    consumers: dict[int, list] = {}
    for n in ordered_nodes(model):
        for t in n.keras_inputs:
            consumers.setdefault(id(t), []).append(n.layer)
    out = {}
    for n in ordered_nodes(model):
        if type(n.layer).__name__ not in PRODUCERS:
            continue
        users = consumers.get(id(flat(n.outputs)[0]), [])
        if len(users) == 1 and type(users[0]).__name__ == "BatchNormalization":
            out[n.layer.name] = users[0]
    return out


def replay(model, call, *, input_name=None):
    """A new functional model that replays ``model``'s graph node by node.

    ``call(node, args, kwargs)`` returns the new outputs of each node (in the order of
    ``node.outputs``), given its arguments already mapped onto the new graph; it may call the
    node's own layer, a new one, or return one of its inputs to drop the layer.
    ``input_name(i, tensor)`` names the new inputs (default: the old inputs' names).
    """
    import tf_keras as keras

    name = input_name or (lambda i, t: t.name.split(":")[0])
    inputs = [keras.Input(tuple(t.shape[1:]), name=name(i, t)) for i, t in enumerate(model.inputs)]
    tensors = {id(old): new for old, new in zip(model.inputs, inputs, strict=True)}
    for n in ordered_nodes(model):
        args, kwargs = swap_tensors((n.call_args, n.call_kwargs), tensors)
        outs = call(n, args, kwargs)
        for old, new in zip(flat(n.outputs), flat(outs), strict=True):
            tensors[id(old)] = new
    return keras.Model(inputs, [tensors[id(t)] for t in model.outputs], name=model.name)


def swap_tensors(structure, tensors: dict):
    import tensorflow as tf

    def swap(x):
        return tensors[id(x)] if hasattr(x, "_keras_history") and id(x) in tensors else x

    return tf.nest.map_structure(swap, structure)
