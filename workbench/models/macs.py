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
    :func:`workbench.edge.channel_plan.plan_macs`). Layers that do no multiply-accumulates give 0.
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
