"""Structured pruning, the surgery and the fine-tuning: a narrower model rebuilt from the
plan of :mod:`workbench.edge.runtime.channel_plan`, checked against the original with the removed
channels masked, fine-tuned; per-layer fractions from a sensitivity scan; and batch
norms folded into the layer before them (for quantization-aware training).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench.edge import channel_plan, finetune
from workbench.models import graph
from workbench.models.macs import count_macs

# ===================================================================== surgery


def narrow(model, the_plan: channel_plan.Plan):
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


def _input_slices(model, the_plan: channel_plan.Plan) -> dict[str, object]:
    """{layer name: kept input-channel indices (or Flatten rows)} for layers that read a
    narrowed tensor."""
    out = {}
    for n in graph.ordered_nodes(model):
        ts = n.keras_inputs
        if len(ts) != 1:
            continue
        layout = the_plan._layouts.get(id(ts[0]))
        if layout is None:
            continue
        if isinstance(layout, channel_plan.Flat):
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
        if kind in graph.PRODUCERS:
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


def verify(model, narrowed, the_plan: channel_plan.Plan, x: np.ndarray) -> float:
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


def _masked(model, the_plan: channel_plan.Plan):
    """The original model (its own layers) with removed channels zeroed after every layer."""
    import tf_keras as keras

    def call(node, args, kwargs):
        outs = node.layer(*args, **kwargs)
        masked = []
        for old, new in zip(graph.flat(node.outputs), graph.flat(outs), strict=True):
            layout = the_plan._layouts.get(id(old))
            if layout is not None and not isinstance(layout, channel_plan.Flat):
                if any(s in the_plan._space_keep for s, _ in layout):
                    mask = np.zeros(sum(size for _, size in layout), np.float32)
                    mask[the_plan.kept_indices(layout)] = 1.0
                    new = keras.layers.Lambda(lambda t, m=mask: t * m)(new)
            masked.append(new)
        return masked

    return graph.replay(model, call, input_name=lambda i, t: f"masked_{i}")


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
    base_plan = channel_plan.plan(
        model, fraction=0.0, keep=keep, round_to=round_to, criterion=criterion
    )
    groups = {g.producers[0]: g.producers for g in base_plan.groups}
    base = _accuracy(model, x, y_val)
    table: dict[str, dict[float, float]] = {}
    for name in groups:
        table[name] = {}
        for level in levels:
            p = channel_plan.plan(
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
        return channel_plan.plan_macs(
            model,
            channel_plan.plan(model, fraction=0.0, fractions=live, keep=keep, round_to=round_to),
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
            (:func:`workbench.edge.finetune.fine_tune`); above 0, :func:`workbench.edge.distill.distill`
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
    the_plan = channel_plan.plan(
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
        raise finetune.TechniqueError(
            f"channel pruning: the rebuilt model disagrees with the masked original by "
            f"{error:.3g} (tolerance {tolerance}); this is a bug in workbench.edge.slim for this "
            "architecture, please report it with the model."
        )
    t0 = time.perf_counter()
    if steps > 0 and distill:
        from workbench.edge import distill as distillation

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
        finetune.fine_tune(
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
    finetune.recompiled(narrowed, learning_rate)
    return SlimResult(
        model=narrowed,
        narrowed=the_plan.narrowed,
        kept=the_plan.kept,
        groups=[g.producers for g in the_plan.groups if len(g.producers) > 1 and g.removed],
        macs_before=count_macs(model),
        macs_after=count_macs(narrowed),
        params_before=int(model.count_params()),
        params_after=int(narrowed.count_params()),
        surgery_error=error,
        fine_tune_seconds=seconds,
        steps=max(0, steps),
    )


def _scaled(x: np.ndarray, input_scale: float | None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x if input_scale is None else x * np.float32(input_scale)


def fold_batch_norms(model):
    """A copy of ``model`` with each batch norm folded into the layer before it.

    Folded: a ``Conv2D`` or ``Dense`` with a linear activation whose output goes only to a
    ``BatchNormalization`` over the last axis. In inference ``BN(Wx + b) = s(Wx + b - mean)
    + beta`` with ``s = gamma / sqrt(var + eps)`` per channel, so the layer gets ``W s`` and
    ``(b - mean) s + beta`` and the batch norm goes. TFLite folds these itself when it
    converts a float model, but not under quantization-aware training, whose weights are
    fake-quantized before the batch norm sees them: the int8 file then keeps each batch
    norm as a separate multiply and add, two more int8 rounding steps per layer, and runs
    slower. Folding first makes QAT train what the edge will run. Zeros stay zeros; the
    original model is not touched.

    Returns:
        (the new model, the names of the batch norms folded).
    """
    import tf_keras as keras

    from workbench.models import graph

    followers = {
        producer: bn
        for producer, bn in graph.bn_followers(model).items()
        if type(model.get_layer(producer)).__name__ in ("Conv2D", "Dense")
        and getattr(model.get_layer(producer), "data_format", "channels_last") == "channels_last"
        and graph.activation_name(model.get_layer(producer)) == "linear"
        and graph.axes(bn) in ([-1], [len(bn.input_shape) - 1])
    }
    if not getattr(model, "_is_graph_network", False) or not followers:
        return model, []
    folded_bn = {bn.name: producer for producer, bn in followers.items()}
    new_layers = {}
    for layer in model.layers:
        if layer.name in folded_bn or isinstance(layer, keras.layers.InputLayer):
            continue
        config = layer.get_config()
        if layer.name in followers:
            config["use_bias"] = True
        new_layers[layer.name] = type(layer).from_config(config)

    def call(node, args, kwargs):
        if node.layer.name in folded_bn:  # the batch norm's output is its producer's output
            return graph.flat(args)[:1]
        kwargs = {k: v for k, v in kwargs.items() if k != "training"}
        return new_layers[node.layer.name](*args, **kwargs)

    rebuilt = graph.replay(model, call)
    for layer in model.layers:
        if layer.name not in new_layers:
            continue
        weights = layer.get_weights()
        if layer.name in followers:
            bn = followers[layer.name]
            kernel = weights[0]
            bias = weights[1] if layer.use_bias else np.zeros(kernel.shape[-1], kernel.dtype)
            gamma = bn.gamma.numpy() if bn.scale else 1.0
            beta = bn.beta.numpy() if bn.center else 0.0
            scale = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
            weights = [
                (kernel * scale).astype(kernel.dtype),
                ((bias - bn.moving_mean.numpy()) * scale + beta).astype(kernel.dtype),
            ]
        new_layers[layer.name].set_weights(weights)
    return rebuilt, sorted(folded_bn)
