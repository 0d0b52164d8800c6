"""Structured (channel) pruning: a genuinely narrower model, so there is less work to do.

Unstructured pruning (:func:`workbench.compress.prune`) zeroes single weights: the file
gzips smaller, but TFLite still multiplies by every zero, so the model is no faster.
Removing whole output channels (filters) of a convolution removes their multiply-accumulates
(MACs) *and* the matching input channels of every layer that reads them. This module

1. **analyses the graph** (:func:`plan`): every tensor's channel axis belongs to a
   *channel space*; layers that act channel by channel (batch norm, activations, pooling,
   padding, dropout, depthwise convolutions) pass their input's space on; the producers
   (Conv1D/2D/3D, SeparableConv, Conv transpose, Dense) start a new one. Element-wise
   merges (``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``, ``Minimum``)
   *couple* the spaces of their inputs: channel *c* of one input meets channel *c* of the
   other, so the producers of a coupled group (e.g. every projection convolution in a
   residual stage) lose exactly the same channel indices. A ``Concatenate`` along the
   channels does not couple its inputs: its output is the concatenation of their spaces,
   and a consumer drops the matching rows of each segment. A space is left intact (and
   its producers are reported in :attr:`SlimResult.kept` with the reason) when it
   reaches the model's input or output, a layer named in ``keep``, a shared layer, a
   grouped convolution, or any layer this module cannot narrow (``Reshape``, ``Lambda``,
   a nested model, a softmax over channels, layer normalisation...).
2. **ranks channels**: a producer followed directly by a ``BatchNormalization`` is ranked
   by ``|gamma|``; otherwise by the L1 norm of its filter (see :func:`channel_scores`
   for why). A coupled group sums its producers' scores, each normalised by its mean.
3. **rebuilds** the model with fewer filters (:func:`narrow`): new layers from the old
   configs, weights sliced and copied (kernels, biases, the batch norm's four vectors,
   the consumers' input rows, a ``Dense`` after ``Flatten`` by positions ``c::C``).
4. **verifies its own surgery** (:func:`verify`): the narrow model must predict what the
   original predicts when the removed channels are masked to zero everywhere in their
   space; with nothing removed, exactly what the original predicts.
5. **fine-tunes** (:func:`prune_channels`) through :func:`workbench.compress.fine_tune`,
   counted in optimizer steps, with a cosine learning-rate decay; or, optionally, with
   :func:`workbench.distill.distill`, the unpruned model teaching on the very same
   augmented images.

Only channels-last layers are narrowed (a channels-first layer pins its spaces).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench import compress, models

TechniqueError = compress.TechniqueError

# Layers whose output channel c depends only on input channel c (the spatial shape may
# change): the output keeps the input's channel space.
_CHANNELWISE = frozenset(
    # Activation is checked separately: a softmax over the channels mixes them.
    "Activation ReLU LeakyReLU ELU ThresholdedReLU PReLU BatchNormalization Rescaling Identity "
    "Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianDropout GaussianNoise "
    "AlphaDropout ActivityRegularization MaxPooling1D MaxPooling2D MaxPooling3D "
    "AveragePooling1D AveragePooling2D AveragePooling3D GlobalAveragePooling1D "
    "GlobalAveragePooling2D GlobalAveragePooling3D GlobalMaxPooling1D GlobalMaxPooling2D "
    "GlobalMaxPooling3D ZeroPadding1D ZeroPadding2D ZeroPadding3D Cropping1D Cropping2D "
    "Cropping3D UpSampling1D UpSampling2D UpSampling3D DepthwiseConv1D DepthwiseConv2D".split()
)
# Element-wise merges: channel c of every input meets channel c of the others.
_MERGES = frozenset("Add Subtract Multiply Average Maximum Minimum".split())
# Layers that create a new channel space (their output channels are their filters/units).
_CONVOLUTIONS = frozenset(
    "Conv1D Conv2D Conv3D SeparableConv1D SeparableConv2D "
    "Conv1DTranspose Conv2DTranspose Conv3DTranspose".split()
)
_PRODUCERS = _CONVOLUTIONS | {"Dense"}
_MIXING_ACTIVATIONS = ("softmax", "log_softmax")


# ===================================================================== the plan


@dataclass
class _Space:
    """A set of tensors whose channel axes correspond index by index."""

    size: int
    producers: list[str] = field(default_factory=list)  # layer names creating it
    pinned: list[str] = field(default_factory=list)  # why it must stay whole


@dataclass(frozen=True)
class _Flat:
    """A ``Flatten`` of a tensor with channel layout ``inner`` over ``positions`` places."""

    inner: tuple[tuple[int, int], ...]
    positions: int


@dataclass
class Group:
    """Coupled producers: they keep the same channel indices, ``keep`` of ``size``."""

    producers: tuple[str, ...]
    size: int
    keep: np.ndarray  # sorted kept channel indices
    scores: np.ndarray  # per channel, higher = more important

    @property
    def removed(self) -> int:
        return self.size - len(self.keep)


@dataclass
class Plan:
    """Which channels every prunable group keeps, and which layers stay whole and why.

    A plan refers to the tensors of the model it was made from: use it with that model.
    """

    groups: list[Group]
    kept: dict[str, str]  # producer layer name -> why it is left intact
    # internal: the channel layout of every tensor (id) and the space of every group
    _layouts: dict[int, object] = field(repr=False, default_factory=dict)
    _space_keep: dict[int, np.ndarray] = field(repr=False, default_factory=dict)

    @property
    def narrowed(self) -> dict[str, tuple[int, int]]:
        """Producer layer name -> (channels before, after), for groups that lose channels."""
        return {
            name: (g.size, len(g.keep)) for g in self.groups if g.removed for name in g.producers
        }

    def kept_indices(self, layout) -> np.ndarray:
        """Kept channel indices of a tensor with this layout (segments concatenated)."""
        parts, offset = [], 0
        for space, size in layout:
            keep = self._space_keep.get(space)
            parts.append(offset + (np.arange(size) if keep is None else keep))
            offset += size
        return np.concatenate(parts) if parts else np.arange(0)


class _Analysis:
    """Walks the graph once: channel layouts, spaces (union-find), producers, pins."""

    def __init__(self, model, keep: Iterable[str]) -> None:
        if not getattr(model, "_is_graph_network", False):
            raise TechniqueError(
                f"channel pruning: {type(model).__name__} {model.name!r} has no layer graph "
                "(a subclassed model, or a Sequential model without an input shape); build "
                "it with keras.Input so its layers and their connections are known."
            )
        self.model = model
        self.keep = set(keep)
        unknown = self.keep - {layer.name for layer in model.layers}
        if unknown:
            raise ValueError(
                f"keep names layers that {model.name!r} does not have: {sorted(unknown)}. "
                f"Its layers: {[layer.name for layer in model.layers]}"
            )
        self.spaces: list[_Space] = []
        self.parent: list[int] = []
        self.layouts: dict[int, object] = {}
        self.producer_space: dict[str, int] = {}
        self.producer_types: dict[str, str] = {}
        self.opaque: dict[str, str] = {}  # producer -> why it cannot be narrowed at all
        self.nodes = _ordered_nodes(model)
        calls: dict[str, int] = {}
        for n in self.nodes:
            calls[n.layer.name] = calls.get(n.layer.name, 0) + 1
        self.calls = calls
        for t in model.inputs:
            self.layouts[id(t)] = self._new(_channels(t), pinned="the model's input")
        for n in self.nodes:
            self._visit(n)
        for t in model.outputs:
            self._pin(self.layouts[id(t)], "the model's output (never narrowed)")

    # ---------------------------------------------------------------- union-find

    def _new(self, size: int, *, producer: str | None = None, pinned: str | None = None):
        self.spaces.append(_Space(size, [producer] if producer else [], [pinned] if pinned else []))
        self.parent.append(len(self.spaces) - 1)
        return ((len(self.spaces) - 1, size),)

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def _union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        self.parent[rb] = ra
        sa, sb = self.spaces[ra], self.spaces[rb]
        sa.producers += sb.producers
        sa.pinned += sb.pinned

    def _pin(self, layout, reason: str) -> None:
        if isinstance(layout, _Flat):
            layout = layout.inner
        for space, _ in layout:
            self.spaces[self.find(space)].pinned.append(reason)

    # ---------------------------------------------------------------- one node

    def _visit(self, node) -> None:
        layer = node.layer
        kind = type(layer).__name__
        inputs = [self.layouts.get(id(t)) for t in node.keras_inputs]
        outputs = _flat(node.outputs)
        if any(x is None for x in inputs):  # a tensor from outside the graph: be safe
            self._opaque(layer, inputs, outputs, "reads a tensor slimming cannot trace")
            return
        rank = len(node.keras_inputs[0].shape) if node.keras_inputs else 0
        why = self._unsupported(layer, kind, inputs, rank)
        if why:
            self._opaque(layer, inputs, outputs, why)
        elif kind in _PRODUCERS:
            self._producer(layer, kind, inputs[0], outputs[0])
        elif kind in _CHANNELWISE:
            self._channelwise(layer, kind, inputs[0], outputs[0])
        elif kind in _MERGES:
            self._merge(layer, inputs, outputs[0])
        elif kind == "Concatenate":
            self._concatenate(layer, inputs, outputs[0])
        elif kind == "Flatten":
            self._flatten(layer, inputs[0], outputs[0])
        else:
            self._opaque(layer, inputs, outputs, f"{kind} cannot be narrowed by slimming")

    def _unsupported(self, layer, kind: str, inputs, rank: int) -> str | None:
        """Why this call of ``layer`` pins everything it touches (None: it does not)."""
        if self.calls[layer.name] > 1:
            return f"{layer.name} is a shared layer (called {self.calls[layer.name]} times)"
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return f"{layer.name} is channels-first"
        single = kind in _PRODUCERS or kind in _CHANNELWISE or kind == "Flatten"
        if single and len(inputs) != 1:
            return f"{layer.name} takes {len(inputs)} tensors"
        if kind != "Dense" and any(isinstance(x, _Flat) for x in inputs):
            return f"{layer.name} reads a flattened tensor"
        if kind in _PRODUCERS and getattr(layer, "groups", 1) != 1:
            return f"{layer.name} is a grouped convolution ({layer.groups} groups)"
        if kind in ("DepthwiseConv1D", "DepthwiseConv2D") and layer.depth_multiplier != 1:
            return f"{layer.name} has depth_multiplier {layer.depth_multiplier}"
        if kind == "BatchNormalization" and not _last_axis_bn(layer, rank):
            return f"{layer.name} normalises axis {_axes(layer)}, not the channels"
        if kind == "Activation" and _activation_name(layer) in _MIXING_ACTIVATIONS:
            return f"{layer.name} is a {_activation_name(layer)} over the channels"
        if kind in _PRODUCERS and _activation_name(layer) in _MIXING_ACTIVATIONS:
            if layer.name in [t._keras_history.layer.name for t in self.model.outputs]:
                return None  # the output layer is pinned anyway
            return f"{layer.name} ends in a {_activation_name(layer)} over its units"
        if kind == "Rescaling" and (np.ndim(layer.scale) or np.ndim(layer.offset)):
            return f"{layer.name} rescales per channel"
        return None

    def _opaque(self, layer, inputs, outputs, why: str) -> None:
        for x in inputs:
            if x is not None:
                self._pin(x, f"it feeds {layer.name}: {why}")
        for t in outputs:
            self.layouts[id(t)] = self._new(_channels(t), pinned=f"output of {layer.name}: {why}")
        if type(layer).__name__ in _PRODUCERS:
            self.producer_types[layer.name] = type(layer).__name__
            self.opaque[layer.name] = why

    def _producer(self, layer, kind: str, layout, out) -> None:
        new = self._new(_channels(out), producer=layer.name)
        self.layouts[id(out)] = new
        self.producer_space[layer.name] = new[0][0]
        self.producer_types[layer.name] = kind
        if layer.name in self.keep:  # intact: neither its filters nor its input rows change
            self._pin(new, f"{layer.name} is in keep")
            self._pin(layout, f"it feeds {layer.name}, which is in keep")

    def _channelwise(self, layer, kind: str, layout, out) -> None:
        if _channels(out) != sum(size for _, size in layout):
            self._opaque(layer, [layout], [out], f"{kind} changes the channel count")
            return
        self.layouts[id(out)] = layout
        if layer.name in self.keep:
            self._pin(layout, f"{layer.name} is in keep")

    def _merge(self, layer, inputs, out) -> None:
        first = inputs[0]
        shapes = [tuple(size for _, size in x) for x in inputs]
        if any(s != shapes[0] for s in shapes) or _channels(out) != sum(shapes[0]):
            self._opaque(layer, inputs, [out], "its inputs' channels do not line up")
            return
        for other in inputs[1:]:
            for (a, _), (b, _) in zip(first, other, strict=True):
                self._union(a, b)
        self.layouts[id(out)] = first
        if layer.name in self.keep:
            self._pin(first, f"{layer.name} is in keep")

    def _concatenate(self, layer, inputs, out) -> None:
        rank = len(out.shape)
        if layer.axis % rank != rank - 1:  # along another axis: channels meet like an Add
            self._merge(layer, inputs, out)
            return
        self.layouts[id(out)] = tuple(seg for x in inputs for seg in x)
        if layer.name in self.keep:
            for x in inputs:
                self._pin(x, f"{layer.name} is in keep")

    def _flatten(self, layer, layout, out) -> None:
        positions = int(np.prod(layer.input_shape[1:-1])) if len(layer.input_shape) > 2 else 1
        self.layouts[id(out)] = _Flat(tuple(layout), positions)
        if layer.name in self.keep:
            self._pin(layout, f"{layer.name} is in keep")


def _ordered_nodes(model) -> list:
    order = []
    for depth in sorted(model._nodes_by_depth, reverse=True):  # input side first
        order += [n for n in model._nodes_by_depth[depth] if not n.is_input]
    return order


def _flat(x) -> list:
    import tensorflow as tf

    return tf.nest.flatten(x)


def _channels(t) -> int:
    return int(t.shape[-1]) if t.shape.rank else 1


def _axes(layer) -> list[int]:
    axis = layer.axis
    return list(axis) if isinstance(axis, list | tuple) else [axis]


def _last_axis_bn(layer, rank: int) -> bool:
    return _axes(layer) in ([-1], [rank - 1])


def _activation_name(layer) -> str | None:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


def plan(
    model,
    *,
    fraction: float,
    keep: Iterable[str] = (),
    fractions: Mapping[str, float] | None = None,
    round_to: int = 1,
    criterion: str = "auto",
) -> Plan:
    """Decide which output channels every prunable group of ``model`` keeps.

    Args:
        fraction: share of channels removed from every convolution group (0 <= f < 1).
            Dense hidden layers are left whole unless named in ``fractions``: they cost
            few MACs and their units are the classifier's features.
        keep: names of layers left intact (their channel spaces are not narrowed), e.g.
            the first convolution.
        fractions: per-layer fractions overriding ``fraction``; a coupled group takes the
            largest fraction given to any of its producers.
        round_to: round the kept channel count to a multiple of this (at least one
            multiple, never above the original): vectorised kernels compute channels in
            tiles (8 float32 lanes on AVX2), so a partial tile costs nearly a full one (on
            an AVX2 core, 19/38/38/77 channels ran slower than 16/40/40/80 with 3% fewer
            MACs). :func:`prune_channels` rounds to 8 by default.
        criterion: ``"auto"`` (|gamma| of a following batch norm, else filter L1 norm),
            ``"l1"`` (always the filter's L1 norm).

    Raises:
        TechniqueError: the model has no graph, or no layer can be narrowed.
        ValueError: a fraction outside [0, 1), unknown names in ``keep``/``fractions``.
    """
    fractions = dict(fractions or {})
    for name, f in [("fraction", fraction), *fractions.items()]:
        if not 0.0 <= f < 1.0:
            raise ValueError(f"pruning fraction for {name} must be in [0, 1), not {f}")
    if criterion not in ("auto", "l1"):
        raise ValueError(f"criterion must be 'auto' or 'l1', not {criterion!r}")
    if round_to < 1:
        raise ValueError(f"round_to must be a positive integer, not {round_to}")
    analysis = _Analysis(model, keep)
    unknown = set(fractions) - set(analysis.producer_types)
    if unknown:
        raise ValueError(
            f"fractions names layers that are not convolutions or dense layers of "
            f"{model.name!r}: {sorted(unknown)}"
        )
    groups, kept = [], {}
    by_root: dict[int, list[str]] = {}
    for name, space in analysis.producer_space.items():
        by_root.setdefault(analysis.find(space), []).append(name)
    kept.update(analysis.opaque)
    space_keep = {}
    for root, names in by_root.items():
        space = analysis.spaces[root]
        if space.pinned:
            for name in names:
                kept[name] = _reason(name, names, space.pinned)
            continue
        f = _group_fraction(names, analysis.producer_types, fraction, fractions)
        if f is None:
            for name in names:
                kept[name] = "dense layer: name it in `fractions` to narrow it"
            continue
        scores = channel_scores(model, names, criterion=criterion)
        n_keep = _kept_count(space.size, f, round_to)
        if f > 0 and n_keep == space.size:
            for name in names:
                kept[name] = (
                    f"removing {f:.0%} of {space.size} channels rounds to none (round_to={round_to})"
                )
        keep_idx = np.sort(np.argsort(-scores, kind="stable")[:n_keep])
        groups.append(Group(tuple(names), space.size, keep_idx, scores))
        if n_keep < space.size:
            for s in range(len(analysis.spaces)):
                if analysis.find(s) == root:
                    space_keep[s] = keep_idx
    if not groups:
        raise TechniqueError(
            "channel pruning: no layer of this model can be narrowed ("
            + "; ".join(f"{k}: {v}" for k, v in list(kept.items())[:6])
            + ("; ..." if len(kept) > 6 else "")
            + ")"
        )
    return Plan(groups, kept, analysis.layouts, space_keep)


def _reason(name: str, group: list[str], pins: list[str]) -> str:
    coupled = [g for g in group if g != name]
    why = pins[0] if len(set(pins)) == 1 else f"{pins[0]} (and {len(set(pins)) - 1} more)"
    return f"coupled with {', '.join(coupled)}; {why}" if coupled else why


def _group_fraction(names, types, fraction: float, fractions: dict) -> float | None:
    asked = [fractions[n] for n in names if n in fractions]
    if asked:
        return max(asked)
    if any(types[n] in _CONVOLUTIONS for n in names):
        return fraction
    return None


def _kept_count(size: int, fraction: float, round_to: int) -> int:
    if fraction == 0:
        return size
    n = size * (1.0 - fraction)
    if round_to > 1 and size >= round_to:
        n = round_to * max(1, round(n / round_to))
    return int(min(size, max(1, round(n))))


def plan_macs(model, the_plan: Plan) -> int:
    """MACs per input of the model :func:`narrow` would build from ``the_plan`` (without
    building it): every layer's cost with its input and output channels as narrowed."""
    import tf_keras as keras

    total = 0
    for n in _ordered_nodes(model):
        if isinstance(n.layer, keras.Model):
            total += models.count_macs(n.layer)
            continue
        ins, outs = n.keras_inputs, _flat(n.outputs)
        if len(ins) != 1 or len(outs) != 1:
            continue  # MAC layers take one tensor
        in_shape = [None, *ins[0].shape[1:]]
        out_shape = [None, *outs[0].shape[1:]]
        in_shape[-1] = _narrowed_width(the_plan, the_plan._layouts.get(id(ins[0])), in_shape[-1])
        out_shape[-1] = _narrowed_width(the_plan, the_plan._layouts.get(id(outs[0])), out_shape[-1])
        total += models.layer_macs(n.layer, in_shape, out_shape)
    return int(total)


def _narrowed_width(the_plan: Plan, layout, width: int) -> int:
    if layout is None:
        return width
    if isinstance(layout, _Flat):
        return layout.positions * len(the_plan.kept_indices(layout.inner))
    return len(the_plan.kept_indices(layout))


# ===================================================================== ranking


def channel_scores(model, producers: Iterable[str], *, criterion: str = "auto") -> np.ndarray:
    """Importance of each output channel of a group of coupled producers (higher: keep).

    - A producer whose output goes straight into a ``BatchNormalization`` (its only
      consumer) is ranked by ``|gamma|``: batch norm divides the channel by its own standard
      deviation, so the filter's norm says nothing about how much the channel contributes,
      and ``|gamma|`` *is* the standard deviation of the normalised channel (Liu et al.,
      "Network Slimming", 2017). A channel with a tiny ``|gamma|`` is nearly a constant,
      which the next layer's bias can absorb during fine-tuning.
    - Otherwise by the L1 norm of the channel's filter (Li et al., "Pruning Filters for
      Efficient ConvNets", 2017): with no normalisation in between, a small filter gives a
      small output.

    Each producer's scores are divided by their mean before a coupled group sums them, so
    every member counts the same whatever its scale.
    """
    by_name = {layer.name: layer for layer in model.layers}
    followers = _bn_followers(model) if criterion == "auto" else {}
    total = None
    for name in producers:
        layer = by_name[name]
        bn = followers.get(name)
        if bn is not None and bn.scale:
            s = np.abs(bn.gamma.numpy())
        else:
            s = _filter_l1(layer)
        mean = float(np.mean(s))
        s = s / mean if mean > 0 else np.ones_like(s)
        total = s if total is None else total + s
    return np.asarray(total, dtype=np.float64)


def _filter_l1(layer) -> np.ndarray:
    kind = type(layer).__name__
    if kind.startswith("SeparableConv"):
        kernel = layer.pointwise_kernel.numpy()
    else:
        kernel = layer.kernel.numpy()
    axis = kernel.ndim - 2 if "Transpose" in kind else kernel.ndim - 1
    moved = np.moveaxis(kernel, axis, -1)
    return np.abs(moved).reshape(-1, moved.shape[-1]).sum(axis=0)


def _bn_followers(model) -> dict:
    """{producer name: the BatchNormalization that is its output's only consumer}."""
    consumers: dict[int, list] = {}
    for n in _ordered_nodes(model):
        for t in n.keras_inputs:
            consumers.setdefault(id(t), []).append(n.layer)
    out = {}
    for n in _ordered_nodes(model):
        if type(n.layer).__name__ not in _PRODUCERS:
            continue
        users = consumers.get(id(_flat(n.outputs)[0]), [])
        if len(users) == 1 and type(users[0]).__name__ == "BatchNormalization":
            out[n.layer.name] = users[0]
    return out


# ===================================================================== surgery


def narrow(model, the_plan: Plan):
    """A new, narrower model: layers rebuilt with fewer filters, weights sliced and copied.

    The original model is not touched. Every layer is re-created from its config (the
    producers with their new ``filters``/``units``), so the result shares no weights.
    """
    import tf_keras as keras

    out_keep = {}  # producer name -> kept output indices
    for g in the_plan.groups:
        if g.removed:
            for name in g.producers:
                out_keep[name] = g.keep
    in_keep = _input_slices(model, the_plan)

    def clone(layer):
        config = layer.get_config()
        if layer.name in out_keep:
            key = "units" if type(layer).__name__ == "Dense" else "filters"
            config[key] = len(out_keep[layer.name])
        return type(layer).from_config(config)

    rebuilt = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        new = rebuilt.get_layer(layer.name)
        weights = layer.get_weights()
        if layer.name in out_keep or layer.name in in_keep:
            weights = _sliced(layer, in_keep.get(layer.name), out_keep.get(layer.name))
        new.set_weights(weights)
    return rebuilt


def _input_slices(model, the_plan: Plan) -> dict[str, object]:
    """{layer name: kept input-channel indices (or Flatten rows)} for layers that read a
    narrowed tensor."""
    out = {}
    for n in _ordered_nodes(model):
        ts = n.keras_inputs
        if len(ts) != 1:
            continue
        layout = the_plan._layouts.get(id(ts[0]))
        if layout is None:
            continue
        if isinstance(layout, _Flat):
            if not any(s in the_plan._space_keep for s, _ in layout.inner):
                continue
            keep = the_plan.kept_indices(layout.inner)
            channels = sum(size for _, size in layout.inner)
            rows = (np.arange(layout.positions)[:, None] * channels + keep[None, :]).ravel()
            out[n.layer.name] = rows
        elif any(s in the_plan._space_keep for s, _ in layout):
            out[n.layer.name] = the_plan.kept_indices(layout)
    return out


def _sliced(layer, keep_in, keep_out) -> list[np.ndarray]:
    """The layer's weights with input channels ``keep_in`` and output channels ``keep_out``."""
    kind = type(layer).__name__
    sliced = []
    for w in layer.weights:
        leaf = w.name.split("/")[-1].split(":")[0]
        a = w.numpy()
        if kind in _PRODUCERS:
            a = _slice_producer(kind, leaf, a, keep_in, keep_out, layer)
        elif keep_in is not None and a.ndim >= 1:  # channel-wise: everything follows the input
            if kind.startswith("DepthwiseConv") and leaf == "depthwise_kernel":
                a = a[..., keep_in, :]
            elif a.shape[-1] == _channels_of(layer):
                a = a[..., keep_in]
        sliced.append(a)
    return sliced


def _channels_of(layer) -> int:
    return int(layer.input_shape[-1])


def _slice_producer(kind, leaf, a, keep_in, keep_out, layer):
    if leaf == "bias":
        return a if keep_out is None else a[keep_out]
    if kind.startswith("SeparableConv"):
        if leaf == "depthwise_kernel":
            return a if keep_in is None else a[..., keep_in, :]
        if keep_in is not None:  # pointwise rows: input channel c gives rows c*dm .. c*dm+dm-1
            dm = layer.depth_multiplier
            rows = (np.asarray(keep_in)[:, None] * dm + np.arange(dm)[None, :]).ravel()
            a = a[..., rows, :]
        return a if keep_out is None else a[..., keep_out]
    in_axis, out_axis = (
        (a.ndim - 1, a.ndim - 2) if "Transpose" in kind else (a.ndim - 2, a.ndim - 1)
    )
    if keep_in is not None:
        a = np.take(a, keep_in, axis=in_axis)
    if keep_out is not None:
        a = np.take(a, keep_out, axis=out_axis)
    return a


# ===================================================================== verification


def verify(model, narrowed, the_plan: Plan, x: np.ndarray) -> float:
    """Largest output difference between ``narrowed`` and ``model`` with the removed
    channels masked to zero in every tensor of their space (inference mode).

    With nothing removed the reference is the model itself, so the answer is exactly 0
    when the surgery is right. With channels removed it is float rounding (the sums run
    in another order), around 1e-6 for probabilities.
    """
    reference = _masked(model, the_plan) if the_plan._space_keep else model
    a = reference(x, training=False).numpy()
    b = narrowed(x, training=False).numpy()
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _masked(model, the_plan: Plan):
    """The original model (its own layers) with removed channels zeroed after every layer."""
    import tf_keras as keras

    def call(node, args, kwargs):
        outs = node.layer(*args, **kwargs)
        masked = []
        for old, new in zip(_flat(node.outputs), _flat(outs), strict=True):
            layout = the_plan._layouts.get(id(old))
            if layout is not None and not isinstance(layout, _Flat):
                if any(s in the_plan._space_keep for s, _ in layout):
                    mask = np.zeros(sum(size for _, size in layout), np.float32)
                    mask[the_plan.kept_indices(layout)] = 1.0
                    new = keras.layers.Lambda(lambda t, m=mask: t * m)(new)
            masked.append(new)
        return masked

    return replay(model, call, input_name=lambda i, t: f"masked_{i}")


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
    for n in _ordered_nodes(model):
        args, kwargs = _swap((n.call_args, n.call_kwargs), tensors)
        outs = call(n, args, kwargs)
        for old, new in zip(_flat(n.outputs), _flat(outs), strict=True):
            tensors[id(old)] = new
    return keras.Model(inputs, [tensors[id(t)] for t in model.outputs], name=model.name)


def _swap(structure, tensors: dict):
    import tensorflow as tf

    def swap(x):
        return tensors[id(x)] if hasattr(x, "_keras_history") and id(x) in tensors else x

    return tf.nest.map_structure(swap, structure)


# ===================================================================== per-layer fractions


@dataclass
class Sensitivity:
    """Validation accuracy with one group pruned at a time, before any fine-tuning."""

    base_accuracy: float
    levels: tuple[float, ...]
    groups: dict[str, tuple[str, ...]]  # group name (its first producer) -> its producers
    accuracy: dict[str, dict[float, float]]  # group name -> fraction -> accuracy


def sensitivity(
    model,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    input_scale: float | None,
    levels: Iterable[float] = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75),
    keep: Iterable[str] = (),
    round_to: int = 8,
    criterion: str = "auto",
) -> Sensitivity:
    """How much each convolution group alone costs in accuracy when pruned by each level
    (Li et al. 2017's sensitivity analysis), on held-out images (never the test set)."""
    levels = tuple(sorted(levels))
    keep = tuple(keep)
    x = _scaled(x_val, input_scale)
    base_plan = plan(model, fraction=0.0, keep=keep, round_to=round_to, criterion=criterion)
    groups = {g.producers[0]: g.producers for g in base_plan.groups}
    base = _accuracy(model, x, y_val)
    table: dict[str, dict[float, float]] = {}
    for name in groups:
        table[name] = {}
        for level in levels:
            p = plan(
                model,
                fraction=0.0,
                fractions={name: level},
                keep=keep,
                round_to=round_to,
                criterion=criterion,
            )
            table[name][level] = _accuracy(narrow(model, p), x, y_val) if p.narrowed else base
    return Sensitivity(base, levels, groups, table)


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    probs = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == np.asarray(y)))


def allocate(
    model,
    sens: Sensitivity,
    *,
    target_macs: int,
    keep: Iterable[str] = (),
    round_to: int = 8,
) -> dict[str, float]:
    """Per-group fractions reaching ``target_macs`` at the least measured accuracy cost.

    Greedy: from nothing pruned, repeatedly move the group whose next level loses the
    least accuracy per MAC saved (from :func:`sensitivity`), until the model's MACs
    (:func:`plan_macs`) are at most ``target_macs``.

    Raises:
        ValueError: the target cannot be reached with the measured levels.
    """
    keep = tuple(keep)
    chosen = dict.fromkeys(sens.groups, 0.0)

    def macs(fractions: dict[str, float]) -> int:
        live = {k: v for k, v in fractions.items() if v > 0}
        return plan_macs(
            model, plan(model, fraction=0.0, fractions=live, keep=keep, round_to=round_to)
        )

    def acc(name: str, level: float) -> float:
        return sens.base_accuracy if level == 0 else sens.accuracy[name][level]

    current = macs(chosen)
    while current > target_macs:
        moves = []
        for name, level in chosen.items():
            higher = [lv for lv in sens.levels if lv > level]
            if not higher:
                continue
            trial = {**chosen, name: higher[0]}
            saved = current - macs(trial)
            if saved > 0:
                lost = max(0.0, acc(name, level) - acc(name, higher[0]))
                moves.append((lost / saved, -saved, name, higher[0]))
        if not moves:
            raise ValueError(
                f"cannot reach {target_macs:,} MACs with fractions up to {max(sens.levels)}: "
                f"the model stays at {current:,}"
            )
        _, neg_saved, name, level = min(moves)
        chosen[name] = level
        current += neg_saved
    return {k: v for k, v in chosen.items() if v > 0}


# ===================================================================== fine-tuning


@dataclass
class SlimResult:
    """A narrowed, fine-tuned model and what slimming did to it."""

    model: object
    narrowed: dict[str, tuple[int, int]]  # layer -> (channels before, after)
    kept: dict[str, str]  # layer -> why it was left intact
    groups: list[tuple[str, ...]]  # coupled producers pruned together (more than one)
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    surgery_error: float  # largest |output difference| of the surgery check
    fine_tune_seconds: float
    steps: int

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / self.macs_before if self.macs_before else float("nan")

    def describe(self) -> str:
        lines = [
            f"MACs {self.macs_before / 1e6:.2f} M -> {self.macs_after / 1e6:.2f} M "
            f"({self.macs_ratio:.0%}), parameters {self.params_before:,} -> "
            f"{self.params_after:,}; {self.steps} fine-tuning steps in "
            f"{self.fine_tune_seconds:.0f} s"
        ]
        lines += [f"  narrowed {k}: {a} -> {b} channels" for k, (a, b) in self.narrowed.items()]
        lines += [f"  coupled (same channels removed): {', '.join(g)}" for g in self.groups]
        lines += [f"  kept {k}: {why}" for k, why in self.kept.items()]
        return "\n".join(lines)


def prune_channels(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    fraction: float,
    steps: int,
    batch_size: int,
    input_scale: float | None,
    keep: Iterable[str] = (),
    fractions: Mapping[str, float] | None = None,
    round_to: int = 8,
    criterion: str = "auto",
    learning_rate: float = 3e-3,
    distill: float = 0.0,
    temperature: float = 4.0,
    augment: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> SlimResult:
    """Remove ``fraction`` of every prunable group's channels, rebuild, check, fine-tune.

    Args:
        model: a tf-keras functional or Sequential model (softmax outputs) with a graph.
        x_train, y_train: training images (stored units) and integer labels.
        fraction: share of the channels removed from every convolution group.
        steps: fine-tuning optimizer steps (0: the surgery alone).
        input_scale: the model gets ``pixels * input_scale`` (None: pixels as stored).
        keep: layer names left intact (e.g. the first convolution).
        fractions, round_to, criterion: see :func:`plan`.
        learning_rate: the peak of a cosine decay to zero over ``steps``; the cloud
            model's own training rate (3e-3) recovered more than 1e-3 in measurements.
        distill: weight of the teacher (the unpruned model) in the loss, 0 for labels only
            (:func:`workbench.compress.fine_tune`); above 0, :func:`workbench.distill.distill`
            trains on ``(1 - distill) * CE + distill * T^2 * KL`` with the teacher run on
            exactly the augmented batch the student sees.
        temperature: softening of both distributions for distillation.
        augment: random flips and shifts while fine-tuning.

    Returns:
        A :class:`SlimResult` (the model compiled, ready for :func:`compress.to_tflite`).

    Raises:
        TechniqueError: nothing can be narrowed, or the surgery check failed.
    """
    import tf_keras as keras

    if not 0.0 <= distill <= 1.0:
        raise ValueError(f"distill is a loss weight in [0, 1], not {distill}")
    the_plan = plan(
        model,
        fraction=fraction,
        keep=keep,
        fractions=fractions,
        round_to=round_to,
        criterion=criterion,
    )
    narrowed = narrow(model, the_plan)
    x_check = _scaled(x_train[:16], input_scale)
    error = verify(model, narrowed, the_plan, x_check)
    tolerance = 0.0 if not the_plan._space_keep else 1e-4
    if not error <= tolerance:
        raise TechniqueError(
            f"channel pruning: the rebuilt model disagrees with the masked original by "
            f"{error:.3g} (tolerance {tolerance}); this is a bug in workbench.slim for this "
            "architecture, please report it with the model."
        )
    t0 = time.perf_counter()
    if steps > 0 and distill:
        from workbench import distill as distillation

        distillation.distill(
            narrowed,
            model,
            x_train,
            y_train,
            steps=steps,
            batch_size=batch_size,
            temperature=temperature,
            alpha=1.0 - distill,
            learning_rate=learning_rate,
            input_scale=input_scale,
            augment=augment,
            seed=seed,
            progress=progress,
        )
    elif steps > 0:
        keras.utils.set_random_seed(seed)
        compress.fine_tune(
            narrowed,
            x_train,
            y_train,
            steps=steps,
            batch_size=batch_size,
            learning_rate=keras.optimizers.schedules.CosineDecay(learning_rate, steps),
            input_scale=input_scale,
            augment=augment,
            seed=seed,
            progress=progress,
            desc=f"slim {fraction:.0%}",
        )
    seconds = time.perf_counter() - t0
    compress._recompiled(narrowed, learning_rate)
    return SlimResult(
        model=narrowed,
        narrowed=the_plan.narrowed,
        kept=the_plan.kept,
        groups=[g.producers for g in the_plan.groups if len(g.producers) > 1 and g.removed],
        macs_before=models.count_macs(model),
        macs_after=models.count_macs(narrowed),
        params_before=int(model.count_params()),
        params_after=int(narrowed.count_params()),
        surgery_error=error,
        fine_tune_seconds=seconds,
        steps=max(0, steps),
    )


def _scaled(x: np.ndarray, input_scale: float | None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x if input_scale is None else x * np.float32(input_scale)
