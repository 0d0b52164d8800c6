"""Multiply-accumulates (MACs) per image, counted layer by layer from any Keras graph."""

from __future__ import annotations

import numpy as np

import workbench  # noqa: F401 - sets TF_USE_LEGACY_KERAS before any TensorFlow import


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
    total = 0
    for layer, in_shapes, out_shapes in _layer_calls(model):
        if _kind(layer, "Model", "Functional", "Sequential"):
            total += count_macs(layer)
            continue
        while _kind(layer, "Wrapper"):  # tfmot's quantize/prune/cluster wrappers
            layer = layer.layer
        total += layer_macs(layer, _dims(in_shapes), _dims(out_shapes))
    return int(total)


def _kind(layer, *names: str) -> bool:
    """Whether ``layer``'s class or a base of it has one of ``names``: the same test for a
    Keras 3 and a tf-keras layer, whose classes share their names."""
    return any(k.__name__ in names for k in type(layer).__mro__)


def _layer_calls(model):
    """(layer, input shapes, output shapes) for every call of every layer of ``model``
    (Keras 3 or tf-keras; a ``keras.ops`` call of a Keras 3 graph does no MACs)."""
    from workbench.models import graph

    if graph.is_keras3_model(model) or getattr(model, "_is_graph_network", False):
        for n in graph.op_nodes(model):
            yield n.op, [list(t.shape) for t in n.inputs], [list(t.shape) for t in n.outputs]
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
    :func:`workbench.edge.channel_plan.plan_macs`). Layers that do no multiply-accumulates give 0.
    """
    convolutions = ("Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D")
    depthwise = ("DepthwiseConv1D", "DepthwiseConv2D")
    if not _kind(layer, "Dense", *convolutions, *depthwise):
        return 0
    if None in in_shape[1:] + out_shape[1:]:
        raise ValueError(
            f"count_macs: layer {layer.name!r} has a variable size (input {tuple(in_shape)}); "
            "give the model a fixed input shape to count its MACs."
        )
    if _kind(layer, "Dense"):
        return int(np.prod(in_shape[1:])) * out_shape[-1]
    axis = 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1
    c_in, c_out = in_shape[axis], out_shape[axis]

    def positions(shape: list) -> int:
        channel = axis % len(shape)
        return int(np.prod([d for i, d in enumerate(shape) if i not in (0, channel)]))

    kernel = int(np.prod(layer.kernel_size))
    if _kind(layer, "SeparableConv1D", "SeparableConv2D"):
        mid = c_in * layer.depth_multiplier
        return positions(out_shape) * (kernel * mid + mid * c_out)
    if _kind(layer, *depthwise):
        return positions(out_shape) * kernel * c_in * layer.depth_multiplier
    if _kind(layer, "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        return positions(in_shape) * kernel * c_in * c_out // layer.groups
    return positions(out_shape) * kernel * (c_in // layer.groups) * c_out
