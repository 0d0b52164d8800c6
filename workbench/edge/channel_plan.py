"""Structured (channel) pruning: a genuinely narrower model, so there is less work to do.

Unstructured pruning (:func:`workbench.edge.techniques.prune`) zeroes single weights: the file
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
5. **fine-tunes** (:func:`prune_channels`) through :func:`workbench.edge.finetune.fine_tune`,
   counted in optimizer steps, with a cosine learning-rate decay; or, optionally, with
   :func:`workbench.edge.distill.distill`, the unpruned model teaching on the very same
   augmented images.

Only channels-last layers are narrowed (a channels-first layer pins its spaces).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench.edge import finetune
from workbench.models import graph, macs

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


_MIXING_ACTIVATIONS = ("softmax", "log_softmax")


# ===================================================================== the plan


@dataclass
class _Space:
    """A set of tensors whose channel axes correspond index by index."""

    size: int
    producers: list[str] = field(default_factory=list)  # layer names creating it
    pinned: list[str] = field(default_factory=list)  # why it must stay whole


@dataclass(frozen=True)
class Flat:
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
            raise finetune.TechniqueError(
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
        self.nodes = graph.ordered_nodes(model)
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
        if isinstance(layout, Flat):
            layout = layout.inner
        for space, _ in layout:
            self.spaces[self.find(space)].pinned.append(reason)

    # ---------------------------------------------------------------- one node

    def _visit(self, node) -> None:
        layer = node.layer
        kind = type(layer).__name__
        inputs = [self.layouts.get(id(t)) for t in node.keras_inputs]
        outputs = graph.flat(node.outputs)
        if any(x is None for x in inputs):  # a tensor from outside the graph: be safe
            self._opaque(layer, inputs, outputs, "reads a tensor slimming cannot trace")
            return
        rank = len(node.keras_inputs[0].shape) if node.keras_inputs else 0
        why = self._unsupported(layer, kind, inputs, rank)
        if why:
            self._opaque(layer, inputs, outputs, why)
        elif kind in graph.PRODUCERS:
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
        single = kind in graph.PRODUCERS or kind in _CHANNELWISE or kind == "Flatten"
        if single and len(inputs) != 1:
            return f"{layer.name} takes {len(inputs)} tensors"
        if kind != "Dense" and any(isinstance(x, Flat) for x in inputs):
            return f"{layer.name} reads a flattened tensor"
        if kind in graph.PRODUCERS and getattr(layer, "groups", 1) != 1:
            return f"{layer.name} is a grouped convolution ({layer.groups} groups)"
        if kind in ("DepthwiseConv1D", "DepthwiseConv2D") and layer.depth_multiplier != 1:
            return f"{layer.name} has depth_multiplier {layer.depth_multiplier}"
        if kind == "BatchNormalization" and not _last_axis_bn(layer, rank):
            return f"{layer.name} normalises axis {graph.axes(layer)}, not the channels"
        if kind == "Activation" and graph.activation_name(layer) in _MIXING_ACTIVATIONS:
            return f"{layer.name} is a {graph.activation_name(layer)} over the channels"
        if kind in graph.PRODUCERS and graph.activation_name(layer) in _MIXING_ACTIVATIONS:
            if layer.name in [t._keras_history.layer.name for t in self.model.outputs]:
                return None  # the output layer is pinned anyway
            return f"{layer.name} ends in a {graph.activation_name(layer)} over its units"
        if kind == "Rescaling" and (np.ndim(layer.scale) or np.ndim(layer.offset)):
            return f"{layer.name} rescales per channel"
        return None

    def _opaque(self, layer, inputs, outputs, why: str) -> None:
        for x in inputs:
            if x is not None:
                self._pin(x, f"it feeds {layer.name}: {why}")
        for t in outputs:
            self.layouts[id(t)] = self._new(_channels(t), pinned=f"output of {layer.name}: {why}")
        if type(layer).__name__ in graph.PRODUCERS:
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
        self.layouts[id(out)] = Flat(tuple(layout), positions)
        if layer.name in self.keep:
            self._pin(layout, f"{layer.name} is in keep")


def _channels(t) -> int:
    return int(t.shape[-1]) if t.shape.rank else 1


def _last_axis_bn(layer, rank: int) -> bool:
    return graph.axes(layer) in ([-1], [rank - 1])


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
        raise finetune.TechniqueError(
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
    if any(types[n] in graph.CONVOLUTIONS for n in names):
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
    for n in graph.ordered_nodes(model):
        if isinstance(n.layer, keras.Model):
            total += macs.count_macs(n.layer)
            continue
        ins, outs = n.keras_inputs, graph.flat(n.outputs)
        if len(ins) != 1 or len(outs) != 1:
            continue  # MAC layers take one tensor
        in_shape = [None, *ins[0].shape[1:]]
        out_shape = [None, *outs[0].shape[1:]]
        in_shape[-1] = _narrowed_width(the_plan, the_plan._layouts.get(id(ins[0])), in_shape[-1])
        out_shape[-1] = _narrowed_width(the_plan, the_plan._layouts.get(id(outs[0])), out_shape[-1])
        total += macs.layer_macs(n.layer, in_shape, out_shape)
    return int(total)


def _narrowed_width(the_plan: Plan, layout, width: int) -> int:
    if layout is None:
        return width
    if isinstance(layout, Flat):
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
    followers = graph.bn_followers(model) if criterion == "auto" else {}
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
