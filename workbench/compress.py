"""Compress a Keras model for the edge: pruning, clustering, quantization, TFLite conversion.

The techniques follow TensorFlow Model Optimization's *collaborative optimization*
pipeline: prune (sparsity) -> cluster, preserving sparsity (few unique weights) ->
quantization-aware training that preserves both (PCQAT) -> a full-integer int8 TFLite
model. Each step takes and returns a tf_keras model; :func:`to_tflite` converts any of them
(or a Keras 3 model, or a SavedModel folder, for the post-training variants).

Works on any image classifier, not only notebook 02's CNN:

- inputs reach the model as ``pixels * input_scale`` (``None``: the stored pixel values,
  for models that carry their own ``Rescaling`` layer); every function takes the scale;
- each technique wraps only the layers tfmot supports for it (a ``Rescaling`` or a custom
  layer stays as it is) and the layers named in ``keep_dense``; when a technique cannot be
  applied at all it raises :class:`TechniqueError` with tfmot's reason, which the variant
  builder reports as "skipped";
- fine-tuning is measured in optimizer steps (work), not epochs, so a larger dataset does
  not multiply the time.

All fine-tuning goes through :func:`fine_tune`: the same data pipeline, optimizer and
progress bar serve every technique.
"""

from __future__ import annotations

import gzip
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench import quiet, train

TFLITE_VARIANTS = ("float32", "dynamic_range", "float16", "int8")


class TechniqueError(RuntimeError):
    """A compression technique cannot be applied to this model; the message says why."""


class ConversionError(RuntimeError):
    """The TFLite converter failed; the message holds its own explanation."""


# ---------------------------------------------------------------- fine-tuning


def fine_tune(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    input_scale: float | None,
    callbacks: list | None = None,
    augment: bool = False,
    seed: int = 0,
    progress: bool = True,
    desc: str = "fine-tune",
):
    """Compile ``model`` with Adam and train it for ``steps`` optimizer steps.

    Args:
        steps: optimizer steps (batches); 0 only compiles.
        input_scale: the model gets ``pixels * input_scale`` (None: pixels as they are).
        augment: random flips and shifts (see :func:`workbench.train.make_dataset`).
    """
    quiet.install()
    _recompiled(model, learning_rate)
    if steps <= 0:
        return model
    ds = train.make_dataset(
        x_train,
        y_train,
        batch_size=batch_size,
        training=True,
        augment=augment,
        seed=seed,
        input_scale=input_scale,
    ).repeat()
    cbs = list(callbacks or [])
    if progress:
        cbs.append(_StepBar(steps, desc))
    model.fit(ds, epochs=1, steps_per_epoch=steps, callbacks=cbs, verbose=0)
    return model


def _StepBar(steps: int, desc: str):  # noqa: N802 - a factory standing in for a class
    """A Keras callback with one tqdm bar over ``steps`` batches, showing loss and accuracy."""
    import tf_keras as keras
    from tqdm.auto import tqdm

    class StepBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=steps, desc=desc, unit="step", leave=False, mininterval=1.0)

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if logs and batch % 20 == 0:
                self.bar.set_postfix(
                    {k: f"{v:.3f}" for k, v in logs.items() if k in ("loss", "accuracy")}
                )

        def on_train_end(self, logs=None):
            self.bar.close()

    return StepBar()


def steps_per_epoch(n: int, batch_size: int) -> int:
    return int(np.ceil(n / batch_size))


def _wrap_layers(model, wrap, wanted, *, what: str):
    """A copy of ``model`` whose layers passing ``wanted`` are wrapped by ``wrap``.

    The copy has its own weights (the original is never touched). Raises
    :class:`TechniqueError` when no layer qualifies or tfmot refuses the model.
    """
    import tf_keras as keras

    copy = _clone(model)
    chosen: list[str] = []

    def clone_layer(layer):
        if wanted(layer):
            chosen.append(layer.name)
            return wrap(layer)
        return layer

    try:
        wrapped = keras.models.clone_model(copy, clone_function=clone_layer)
    except Exception as err:  # noqa: BLE001 - tfmot and Keras raise many types
        raise TechniqueError(f"{what}: {_first_line(err)}") from err
    if not chosen:
        raise TechniqueError(f"{what}: no layer of this model supports it")
    return wrapped


def _has_kernel(layer) -> bool:
    return any(_is_kernel(w.name) for w in layer.weights)


def _is_kernel(name: str) -> bool:
    leaf = name.split("/")[-1].split(":")[0]
    return leaf in ("kernel", "depthwise_kernel", "pointwise_kernel")


# ---------------------------------------------------------------- pruning


def pruning_schedule(
    final_sparsity: float,
    total_steps: int,
    *,
    initial_sparsity: float = 0.0,
    ramp_fraction: float = 0.7,
    prunings: int = 10,
):
    """A polynomial schedule that really reaches ``final_sparsity`` within ``total_steps``.

    tfmot prunes only every ``frequency`` steps and only up to ``end_step``; with its
    defaults (frequency 100, end_step 1000) a short fine-tune prunes nothing. Here the
    ramp ends at ``ramp_fraction`` of the run (the rest fine-tunes at the target) and
    ``end_step`` is a multiple of ``frequency``, so the last pruning step hits the target.
    ``initial_sparsity`` continues from a model that is already that sparse (progressive
    pruning: 50% -> 70% -> 80% reuses each level's fine-tuning instead of starting over).
    """
    import tensorflow_model_optimization as tfmot

    if not 0.0 < final_sparsity < 1.0:
        raise ValueError(f"final_sparsity must be between 0 and 1, not {final_sparsity}")
    if not 0.0 <= initial_sparsity < final_sparsity:
        raise ValueError(
            f"initial_sparsity {initial_sparsity} must be in [0, final_sparsity={final_sparsity})"
        )
    ramp = max(1, int(total_steps * ramp_fraction))
    frequency = max(1, ramp // prunings)
    end_step = frequency * max(1, ramp // frequency)
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=initial_sparsity,
        final_sparsity=final_sparsity,
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
    )


def prune(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    sparsity: float,
    steps: int,
    batch_size: int,
    input_scale: float | None,
    learning_rate: float = 1e-3,
    keep_dense: Collection[str] = (),
    augment: bool = False,
    progress: bool = True,
    seed: int = 0,
    lr_schedule: str = "cosine",
):
    """Magnitude pruning to ``sparsity`` with fine-tuning; returns the stripped (plain) model.

    Every layer with a kernel that tfmot can prune is pruned, except those in ``keep_dense``
    (the first convolution and the classifier are the usual candidates: few weights, much
    accuracy). The learning rate is that of training (1e-3), not a timid fine-tuning rate:
    the network must re-learn around the weights it loses. It decays to zero over the steps
    (``lr_schedule="cosine"``; ``"constant"`` keeps it): a model trained to convergence with a
    decaying rate is knocked off its minimum by a constant 1e-3 and has no time to settle back
    (measured for issue 13 on notebook 02's CNN and the CIFAR-10 subset, 150 steps per
    level, 50% then 70%: ``"constant"`` lost 3.1 and 5.5 points of validation accuracy,
    ``"cosine"`` gained 0.2 and 1.7). Augmentation is off by default: a short fine-tune recovers more
    accuracy without it (it has no time to overfit).

    A model that is already sparse (an earlier, lower level) is pruned on from its current
    sparsity: progressive pruning, which reuses the earlier fine-tuning.

    Raises:
        TechniqueError: no layer can be pruned, or tfmot refuses the model.
    """
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant', not {lr_schedule!r}")
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    def wanted(layer) -> bool:
        return (
            layer.name not in keep_dense
            and _has_kernel(layer)
            and prune_registry.PruneRegistry.supports(layer)
        )

    current = min((_layer_sparsity(layer) for layer in model.layers if wanted(layer)), default=0.0)
    start = current if current < sparsity else 0.0
    schedule = pruning_schedule(sparsity, max(1, steps), initial_sparsity=start)
    pruned = _wrap_layers(
        model,
        lambda layer: tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule),
        wanted,
        what="pruning",
    )
    import tf_keras as keras

    rate = (
        keras.optimizers.schedules.CosineDecay(learning_rate, max(1, steps))
        if lr_schedule == "cosine"
        else learning_rate
    )
    fine_tune(
        pruned,
        x_train,
        y_train,
        steps=max(1, steps),
        batch_size=batch_size,
        learning_rate=rate,
        input_scale=input_scale,
        progress=progress,
        seed=seed,
        augment=augment,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        desc=f"prune to {sparsity:.0%}",
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    return _recompiled(stripped, learning_rate)


def _layer_sparsity(layer) -> float:
    """Share of exactly-zero weights in a layer's kernels."""
    kernels = [np.asarray(w.numpy()) for w in layer.weights if _is_kernel(w.name)]
    total = sum(k.size for k in kernels)
    return sum(int(np.count_nonzero(k == 0)) for k in kernels) / total if total else 0.0


def _clone(model):
    """A copy of ``model`` with the same weights (tfmot wrappers must not touch the original)."""
    import tf_keras as keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _kernels(model) -> Iterator[tuple[str, np.ndarray]]:
    """(name, kernel) for every kernel of every layer (conv, depthwise, pointwise, dense)."""
    for layer in model.layers:
        kernels = [w for w in layer.weights if _is_kernel(w.name)]
        for w in kernels:
            leaf = w.name.split("/")[-1].split(":")[0]
            name = layer.name if len(kernels) == 1 else f"{layer.name}/{leaf}"
            yield name, np.asarray(w.numpy())


def sparsity_report(model) -> list[dict]:
    """Per-layer share of exactly-zero weights in each kernel, plus the overall figure."""
    rows, zeros, total = [], 0, 0
    for name, k in _kernels(model):
        z = int(np.count_nonzero(k == 0))
        rows.append({"layer": name, "weights": int(k.size), "zeros": z, "sparsity": z / k.size})
        zeros, total = zeros + z, total + k.size
    rows.append(
        {
            "layer": "all kernels",
            "weights": total,
            "zeros": zeros,
            "sparsity": zeros / total if total else 0.0,
        }
    )
    return rows


def overall_sparsity(model) -> float:
    return sparsity_report(model)[-1]["sparsity"]


# ---------------------------------------------------------------- clustering


def cluster(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    clusters: int,
    steps: int,
    batch_size: int,
    input_scale: float | None,
    learning_rate: float = 1e-4,
    preserve_sparsity: bool = True,
    keep_dense: Collection[str] = (),
    augment: bool = True,
    progress: bool = True,
    seed: int = 0,
):
    """Weight clustering (``clusters`` shared values per kernel), sparsity-preserving by default.

    Raises:
        TechniqueError: no layer can be clustered, or tfmot refuses the model.
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry

    clustering = tfmot.clustering.keras

    def wanted(layer) -> bool:
        kernels = [w for w in layer.weights if _is_kernel(w.name)]
        return (
            layer.name not in keep_dense
            and bool(kernels)
            and all(int(np.prod(w.shape)) > clusters for w in kernels)
            and clustering_registry.ClusteringRegistry.supports(layer)
        )

    clustered = _wrap_layers(
        model,
        lambda layer: clustering.cluster_weights(
            layer,
            number_of_clusters=clusters,
            cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
            preserve_sparsity=preserve_sparsity,
        ),
        wanted,
        what="clustering",
    )
    fine_tune(
        clustered,
        x_train,
        y_train,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        input_scale=input_scale,
        progress=progress,
        seed=seed,
        augment=augment,
        desc=f"cluster to {clusters} values",
    )
    stripped = clustering.strip_clustering(clustered)
    return _recompiled(stripped, learning_rate)


def unique_weights(model) -> dict[str, int]:
    """Number of distinct values in each kernel (clustering makes this small)."""
    return {name: int(np.unique(k).size) for name, k in _kernels(model)}


def _recompiled(model, learning_rate: float):
    import tf_keras as keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


# ---------------------------------------------------------------- quantization-aware training


def quantization_aware(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    input_scale: float | None,
    learning_rate: float = 1e-4,
    preserve: str | None = None,
    augment: bool = False,
    range_batches: int = 8,
    fold_bn: bool | None = None,
    progress: bool = True,
    seed: int = 0,
):
    """Quantization-aware training: fake-quantize weights and activations while fine-tuning.

    Only layers tfmot's 8-bit scheme supports are annotated; others (a ``Rescaling``, a
    custom layer) stay float in training and get their int8 ranges from calibration.

    tfmot starts every activation range at [-6, 6] and moves it towards the data by 0.1%
    per step (an exponential moving average with decay 0.999): after a short fine-tune the
    ranges are still mostly the initial ones (on the CIFAR-10 CNN after 100 steps about
    [-5.4, 6.2] for ReLU outputs that span [0, 8.1]), too wide for the data and clipping it.
    So the ranges are first set from ``range_batches`` batches of training images
    (:func:`calibrate_ranges`); 0 skips that. The fine-tuning is not augmented by default:
    augmented batches move the batch-norm statistics away from the test images' (on the
    CIFAR-10 subset, the 35%-slimmed CNN pruned to 80%, 100 steps of PQAT: -4.1 pp on the
    test images against the float model augmented, -2.6 pp not, both before this range
    calibration existed).

    Args:
        preserve: ``None`` for plain QAT; ``"sparsity"`` for pruning-preserving QAT (PQAT);
            ``"clusters"`` for sparsity- and cluster-preserving QAT (PCQAT), as in tfmot's
            collaborative optimization.
        range_batches: batches of training images that set the activation ranges first.
        fold_bn: fold each batch norm into the layer before it first
            (:func:`fold_batch_norms`); ``None``: fold, except for PCQAT, where scaling each
            channel's weights would undo the clustering (16 shared values per kernel become
            16 per channel). Measured on the CIFAR-10 subset (the 35%-slimmed CNN pruned to
            80%, PQAT): with BN folded the int8 file ran 0.091 ms against 0.141 ms
            unfolded (the converter leaves four int8 MUL + ADD pairs in it), test accuracy
            -1.57 pp against the float model vs -2.16 unfolded; PCQAT folded lost 4.3 pp.

    Raises:
        TechniqueError: tfmot cannot quantize this model (e.g. a nested model).
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    q = tfmot.quantization.keras
    combine = tfmot.experimental.combine
    schemes = {
        None: lambda: None,
        "sparsity": combine.Default8BitPrunePreserveQuantizeScheme,
        "clusters": lambda: combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=True
        ),
    }
    if preserve not in schemes:
        raise ValueError(f"preserve must be None, 'sparsity' or 'clusters', not {preserve!r}")
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    what = {None: "QAT", "sparsity": "PQAT", "clusters": "PCQAT"}[preserve]
    if fold_bn if fold_bn is not None else preserve != "clusters":
        try:
            model, _ = fold_batch_norms(model)
        except (ValueError, TypeError, KeyError, AttributeError):
            pass  # a graph it cannot rebuild: QAT on the model as it is (slower, not wrong)
    keep_float = _keep_float_config()

    def annotate(layer):
        if registry.supports(layer):
            return q.quantize_annotate_layer(layer)
        # A weightless layer tfmot does not know (Rescaling, Normalization...): annotate it
        # to stay float, else the preserve schemes ask their registry for it and fail.
        return q.quantize_annotate_layer(layer, quantize_config=keep_float)

    annotated = _wrap_layers(
        model,
        annotate,
        lambda layer: registry.supports(layer) or not layer.weights,
        what=what,
    )
    scheme = schemes[preserve]()
    try:
        with q.quantize_scope({type(keep_float).__name__: type(keep_float)}):
            qat = (
                q.quantize_apply(annotated)
                if scheme is None
                else q.quantize_apply(annotated, scheme)
            )
    except Exception as err:  # noqa: BLE001 - tfmot raises many types
        raise TechniqueError(f"{what}: {_first_line(err)}") from err
    if range_batches:
        calibrate_ranges(qat, x_train, input_scale=input_scale, batches=range_batches, seed=seed)
    fine_tune(
        qat,
        x_train,
        y_train,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        input_scale=input_scale,
        progress=progress,
        seed=seed,
        augment=augment,
        desc=what,
    )
    if preserve == "clusters":
        qat = combine.strip_clustering_cqat(qat)
    return qat


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

    from workbench import slim

    followers = {
        producer: bn
        for producer, bn in slim._bn_followers(model).items()
        if type(model.get_layer(producer)).__name__ in ("Conv2D", "Dense")
        and getattr(model.get_layer(producer), "data_format", "channels_last") == "channels_last"
        and slim._activation_name(model.get_layer(producer)) == "linear"
        and slim._axes(bn) in ([-1], [len(bn.input_shape) - 1])
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
            return slim._flat(args)[:1]
        kwargs = {k: v for k, v in kwargs.items() if k != "training"}
        return new_layers[node.layer.name](*args, **kwargs)

    rebuilt = slim.replay(model, call)
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


def calibrate_ranges(
    qat,
    x_train: np.ndarray,
    *,
    input_scale: float | None,
    batches: int = 8,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """Set a QAT model's activation ranges from data instead of tfmot's initial [-6, 6].

    Runs ``batches`` training-mode forward passes with the ranges' moving average made
    immediate (each pass sets a range to that batch's minimum and maximum, as tfmot does
    on every step, only without the 0.999 decay), averages the passes, and puts every other
    variable back (batch-norm statistics, step counters): only the ranges change. Returns
    the mean width of the ranges before and after, to show what it did.
    """  # fmt: skip
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    from workbench import contract

    ranges = [w for w in qat.weights if w.name.endswith(("_min:0", "_max:0"))]
    if not ranges or batches <= 0:
        return {}
    others = [(w, w.numpy()) for w in qat.weights if not w.name.endswith(("_min:0", "_max:0"))]
    width = lambda: float(np.mean([np.mean(np.abs(w.numpy())) for w in ranges]))  # noqa: E731
    before = width()
    rng = np.random.default_rng(seed)
    x = np.asarray(x_train)
    take = rng.permutation(len(x))[: batches * batch_size]
    original = quant_ops.MovingAvgQuantize

    def immediate(*args, **kwargs):
        kwargs["ema_decay"] = 0.0
        return original(*args, **kwargs)

    sums = [np.zeros(w.shape, np.float64) for w in ranges]
    done = 0
    quant_ops.MovingAvgQuantize = immediate
    try:
        for i in range(0, len(take), batch_size):
            qat(contract.scale_inputs(x[take[i : i + batch_size]], input_scale), training=True)
            for total, w in zip(sums, ranges, strict=True):
                total += w.numpy()
            done += 1
    finally:
        quant_ops.MovingAvgQuantize = original
    for total, w in zip(sums, ranges, strict=True):
        w.assign((total / max(done, 1)).astype(w.dtype.as_numpy_dtype))
    for w, value in others:
        w.assign(value)
    return {"mean_abs_bound_before": before, "mean_abs_bound_after": width()}


def _keep_float_config():
    """A tfmot QuantizeConfig that quantizes nothing: the layer stays float during QAT.

    The converter then calibrates its output range from the representative dataset.
    """
    import tensorflow_model_optimization as tfmot

    class KeepFloat(tfmot.quantization.keras.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    return KeepFloat()


# ---------------------------------------------------------------- TFLite conversion


def representative_data(
    x_train: np.ndarray, *, samples: int = 200, seed: int = 0, input_scale: float | None
):
    """A generator of single training images (model units) for int8 calibration, at random."""
    from workbench import contract

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x_train), size=min(samples, len(x_train)), replace=False)
    images = contract.scale_inputs(x_train[idx], input_scale)

    def gen():
        for img in images:
            yield [img[None]]

    return gen


def to_tflite(
    model,
    variant: str,
    *,
    input_scale: float | None,
    x_calibration: np.ndarray | None = None,
    calibration_samples: int = 200,
) -> bytes:
    """Convert a model to a TFLite flatbuffer.

    Args:
        model: a tf-keras model, a Keras 3 model (converted through a concrete function),
            or the path of a SavedModel folder.
        variant: ``float32`` (no quantization); ``dynamic_range`` (int8 weights, float
            activations, no calibration); ``float16`` (float16 weights); ``int8``
            (full-integer: int8 weights, activations, input and output; needs
            ``x_calibration``, training images in their stored units, to calibrate the
            activation ranges; a quantization-aware model keeps the ranges it learned).
        input_scale: the model's input is ``pixels * input_scale`` (for calibration).

    Raises:
        ConversionError: the converter failed; its own output is in the message.
    """

    quiet.install()
    if variant not in TFLITE_VARIANTS:
        raise ValueError(f"Unknown TFLite variant {variant!r}; choose from {TFLITE_VARIANTS}.")
    if variant == "int8" and x_calibration is None:
        raise ValueError(
            "int8 conversion needs x_calibration: a sample of training images "
            "to calibrate activation ranges."
        )
    errors = []
    for how in ("frozen", "saved_model"):
        converter = _converter(model, how)
        if converter is None:
            continue
        _configure(converter, variant, x_calibration, calibration_samples, input_scale)
        try:
            with quiet.native_output("the TFLite converter"):
                return converter.convert()
        except Exception as err:  # noqa: BLE001 - the converter raises many types
            errors.append(f"{how}: {err}")
    raise ConversionError(f"{variant} conversion failed: " + "\n".join(errors))


def _configure(converter, variant, x_calibration, calibration_samples, input_scale) -> None:
    import tensorflow as tf

    if variant == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_data(
            x_calibration, samples=calibration_samples, input_scale=input_scale
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


def _converter(model, how: str):
    """A TFLiteConverter for a tf-keras model, a Keras 3 model or a SavedModel folder.

    ``how="frozen"`` converts a concrete function of the model's inference call with its
    variables frozen to constants. TensorFlow calls this path deprecated and prefers a
    SavedModel round trip (``how="saved_model"``), which gives the same flatbuffer but
    took 12x longer here (2.6 s against 33 s for a 156-layer MobileNetV2: saving and
    reloading every layer's functions), so the frozen path goes first and the SavedModel
    path is the fallback. A SavedModel folder only has the SavedModel path.
    """
    import tensorflow as tf
    import tf_keras

    if isinstance(model, str | Path):
        return tf.lite.TFLiteConverter.from_saved_model(str(model)) if how != "frozen" else None
    if how == "saved_model" and isinstance(model, tf_keras.Model):
        return tf.lite.TFLiteConverter.from_keras_model(model)
    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    concrete = fn.get_concrete_function()
    if how == "frozen":
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)


# ---------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Size:
    bytes: int
    gzip_bytes: int

    def as_dict(self) -> dict[str, int]:
        return {"bytes": self.bytes, "gzip_bytes": self.gzip_bytes}


def size_of(blob: bytes) -> Size:
    """Raw and gzip-compressed size (level 9). Sparsity and clustering only show after gzip."""
    return Size(len(blob), len(gzip.compress(blob, compresslevel=9)))


# ---------------------------------------------------------------- quantization by hand


def first_kernel(model) -> tuple[str, np.ndarray]:
    """(name, weights) of the first kernel in ``model`` (the first convolution, usually)."""
    for name, kernel in _kernels(model):
        return name, kernel
    raise ValueError(f"{model.name} has no layer with a kernel")


def quantization_demo(
    kernel: np.ndarray, *, fixed_point_bits: int = 6, show: int = 8
) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """The same weights quantized three ways: symmetric int8, affine int8, fixed point.

    Returns:
        ``(rows, errors)``: the first ``show`` weights with their codes and restored values,
        and per method its scale, zero point and largest rounding error.
    """
    flat = np.asarray(kernel, dtype=np.float32).ravel()
    sym, aff = symmetric_quantize(flat), affine_quantize(flat)
    step = 2.0**fixed_point_bits
    fixed = np.round(flat * step) / step
    rows = [
        {
            "float": float(flat[i]),
            "int8 code (symmetric)": int(sym["q"][i]),
            "restored (symmetric)": float(sym["restored"][i]),
            "int8 code (affine)": int(aff["q"][i]),
            "restored (affine)": float(aff["restored"][i]),
            f"fixed point p={fixed_point_bits}": float(fixed[i]),
        }
        for i in range(min(show, flat.size))
    ]
    errors = {
        "symmetric": {k: float(sym[k]) for k in ("scale", "zero_point", "max_abs_error")},
        "affine": {k: float(aff[k]) for k in ("scale", "zero_point", "max_abs_error")},
        f"fixed_point_p{fixed_point_bits}": {
            "scale": 1 / step,
            "zero_point": 0.0,
            "max_abs_error": float(np.abs(fixed - flat).max()),
        },
    }
    return rows, errors


def affine_quantize(values: np.ndarray, *, bits: int = 8) -> dict[str, np.ndarray | float | int]:
    """Asymmetric (affine) quantization, as TFLite does for activations.

    ``scale = (max - min) / (2^bits - 1)``, ``zero_point = round(q_min - min / scale)``,
    ``q = clip(round(x / scale) + zero_point, q_min, q_max)``, ``x' = (q - zero_point) * scale``.
    The range always includes 0 so that zero is represented exactly.
    """
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    zero_point = int(np.clip(round(qmin - lo / scale), qmin, qmax))
    q = np.clip(np.round(values / scale) + zero_point, qmin, qmax).astype(np.int32)
    restored = (q - zero_point) * scale
    return {
        "scale": scale,
        "zero_point": zero_point,
        "q": q,
        "restored": restored,
        "max_abs_error": float(np.max(np.abs(restored - values))),
    }


def symmetric_quantize(values: np.ndarray, *, bits: int = 8) -> dict[str, np.ndarray | float | int]:
    """Symmetric quantization (zero point 0), as TFLite does for weights."""
    qmax = 2 ** (bits - 1) - 1
    scale = float(np.max(np.abs(values))) / qmax or 1.0
    q = np.clip(np.round(values / scale), -qmax, qmax).astype(np.int32)
    restored = q * scale
    return {
        "scale": scale,
        "zero_point": 0,
        "q": q,
        "restored": restored,
        "max_abs_error": float(np.max(np.abs(restored - values))),
    }


def free_memory() -> None:
    """Release models the caller has dropped: Python garbage, then Keras' global state.

    Fine-tuning several tfmot variants in one kernel adds up; call this after ``del``-ing
    models that are already converted, to stay inside small machines (Binder: 2 GB).
    Some memory stays with TensorFlow regardless: each fine-tune and each conversion of a
    quantization-aware model keeps part of what it allocated.
    """
    import gc

    import tf_keras as keras

    gc.collect()
    keras.backend.clear_session()
    gc.collect()
    _trim_heap()


def _trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise); no-op elsewhere."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # musl or another libc: nothing to trim
            pass


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:400]
