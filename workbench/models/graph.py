"""Walking and rebuilding functional graphs: tf-keras nodes in order, a replay of the graph
node by node (the one home of graph surgery), the facts about layers that structured pruning
and batch-norm folding read, and the graph of calls of any Keras model (Keras 3, where
``keras.ops`` calls are operations, or tf-keras) with producers and consumers of each tensor,
which split computing and the Keras 3 bridge walk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


# ----------------------------------------------------------------------------- any Keras


def is_keras3_model(model) -> bool:
    """Whether ``model`` comes from Keras 3 (the ``keras`` package), not from tf-keras."""
    module = type(model).__module__
    return module == "keras" or module.startswith("keras.")


@dataclass(frozen=True, eq=False)
class OpNode:
    """One call of a layer or of an operation in a functional graph, Keras 3 or tf-keras.

    In Keras 3 a functional graph holds layers and operations (``x + 3.0``, ``keras.ops.mean``);
    tf-keras wraps the same calls in ``TFOpLambda`` layers. Either way a node reads
    ``inputs`` and writes ``outputs`` (Keras tensors), called with ``args`` and ``kwargs``.
    """

    op: Any  # the layer or operation called
    inputs: tuple  # the Keras tensors it reads, flattened
    outputs: tuple  # the Keras tensors it writes, flattened
    args: tuple
    kwargs: dict

    @property
    def name(self) -> str:
        return self.op.name


def functional_of(model):
    """The functional graph behind ``model`` (a Keras 3 ``Sequential`` keeps one inside).

    Raises:
        ValueError: the model has no graph of calls (a subclassed model, or a Sequential
            model never built with ``keras.Input``).
    """
    inner = getattr(model, "_functional", None) if is_keras3_model(model) else None
    graph = inner if inner is not None else model
    if not hasattr(graph, "_nodes_by_depth"):
        raise ValueError(
            f"{type(model).__name__} {getattr(model, 'name', '')!r} has no graph of layer "
            "calls (a subclassed model, or a Sequential model without keras.Input); build it "
            "with keras.Input so its graph can be read."
        )
    return graph


def op_nodes(model) -> list[OpNode]:
    """The calls of ``model``'s graph in topological order (input side first, inputs left out),
    for Keras 3 (layers and ``keras.ops`` operations) and tf-keras models alike."""
    graph = functional_of(model)
    if not is_keras3_model(graph):
        return [
            OpNode(
                n.layer,
                tuple(n.keras_inputs),
                tuple(flat(n.outputs)),
                tuple(n.call_args),
                dict(n.call_kwargs),
            )  # fmt: skip
            for n in ordered_nodes(graph)
        ]
    order = []
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for n in graph._nodes_by_depth[depth]:
            if n.is_input:
                continue
            order.append(
                OpNode(
                    n.operation,
                    tuple(n.arguments.keras_tensors),
                    tuple(n.outputs),
                    tuple(n.arguments.args),
                    dict(n.arguments.kwargs),
                )  # fmt: skip
            )
    return order


class OpGraph:
    """A one-input, one-output functional graph (Keras 3 or tf-keras) as nodes with the producer
    and the consumers of each tensor: what split computing and the bridge walk."""

    def __init__(self, model) -> None:
        graph = functional_of(model)
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise ValueError(
                f"{model.name!r} has {len(graph.inputs)} inputs and {len(graph.outputs)} "
                "outputs; this needs a model with one input and one output."
            )
        self.model = graph
        self.input = graph.inputs[0]
        self.output = graph.outputs[0]
        self.nodes = op_nodes(graph)
        self.producer = {id(t): n for n in self.nodes for t in n.outputs}
        self.consumers: dict[int, list[OpNode]] = {}
        for n in self.nodes:
            for key in dict.fromkeys(id(t) for t in n.inputs):  # a tensor read twice: once
                self.consumers.setdefault(key, []).append(n)
        self._calls: dict[int, int] = {}
        for n in self.nodes:
            self._calls[id(n.op)] = self._calls.get(id(n.op), 0) + 1

    def calls(self, op) -> int:
        """How many times the graph calls ``op`` (more than once: a shared layer)."""
        return self._calls.get(id(op), 0)

    def ancestors(self, node: OpNode) -> set[int]:
        """ids of ``node`` and of every node it depends on."""
        seen: set[int] = set()
        stack = [node]
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            stack += [self.producer[id(t)] for t in n.inputs if id(t) in self.producer]
        return seen

    def crossing(self, edge_ids: set[int]) -> list:
        """Tensors made on the edge side (the nodes ``edge_ids`` and the input) that the rest
        of the graph, or the output, needs."""
        crossing = [self.input] if self._needed_outside(self.input, edge_ids) else []
        for n in self.nodes:
            if id(n) in edge_ids:
                crossing += [t for t in n.outputs if self._needed_outside(t, edge_ids)]
        return crossing

    def _needed_outside(self, tensor, edge_ids: set[int]) -> bool:
        users = self.consumers.get(id(tensor), [])
        return tensor is self.output or any(id(u) not in edge_ids for u in users)

    def is_cut(self, node: OpNode) -> bool:
        """Whether every path from the input to the output passes through ``node``'s output,
        so that it is the only tensor the edge side (``node`` and what it depends on) hands
        to the cloud side. Shared layers (called more than once) and calls with several
        outputs are no cuts; the last node is one (the all-edge end)."""
        if len(node.outputs) != 1 or self.calls(node.op) != 1:
            return False
        crossing = self.crossing(self.ancestors(node))
        return len(crossing) == 1 and crossing[0] is node.outputs[0]

    def cut_nodes(self) -> list[OpNode]:
        """The nodes whose output is a cut (:meth:`is_cut`), in order, the last one left out."""
        last = self.producer[id(self.output)]
        return [n for n in self.nodes if n is not last and self.is_cut(n)]
