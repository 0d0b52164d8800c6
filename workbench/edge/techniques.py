"""Compression techniques from TensorFlow Model Optimization: magnitude pruning, weight
clustering and quantization-aware training (plain, pruning-preserving and
cluster-preserving).

They follow tfmot's *collaborative optimization* pipeline: prune (sparsity) -> cluster,
preserving sparsity (few unique weights) -> quantization-aware training that preserves both
(PCQAT) -> a full-integer int8 TFLite model (:mod:`workbench.edge.convert`). Each step takes
and returns a tf_keras model, for any image classifier, not only notebook 02's CNN:

- inputs reach the model as ``pixels * input_scale`` (``None``: the stored pixel values,
  for models that carry their own ``Rescaling`` layer); every function takes the scale;
- each technique wraps only the layers tfmot supports for it (a ``Rescaling`` or a custom
  layer stays as it is) and the layers named in ``keep_dense``; when a technique cannot be
  applied at all it raises :class:`~workbench.edge.finetune.TechniqueError` with tfmot's
  reason, which the variant builder reports as "skipped";
- fine-tuning goes through :func:`workbench.edge.finetune.fine_tune`, counted in optimizer
  steps (work), not epochs.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench.core import errors
from workbench.edge import finetune, slim

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
            and finetune.has_kernel(layer)
            and prune_registry.PruneRegistry.supports(layer)
        )

    current = min((_layer_sparsity(layer) for layer in model.layers if wanted(layer)), default=0.0)
    start = current if current < sparsity else 0.0
    schedule = pruning_schedule(sparsity, max(1, steps), initial_sparsity=start)
    pruned = finetune.wrap_layers(
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
    batches = finetune.Batches(
        x_train, y_train, batch_size, input_scale, seed=seed, augment=augment, progress=progress
    )
    batches.fit(
        pruned,
        steps=max(1, steps),
        learning_rate=rate,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        desc=f"prune to {sparsity:.0%}",
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    return finetune.recompiled(stripped, learning_rate)


def _layer_sparsity(layer) -> float:
    """Share of exactly-zero weights in a layer's kernels."""
    kernels = [np.asarray(w.numpy()) for w in layer.weights if finetune.is_kernel(w.name)]
    total = sum(k.size for k in kernels)
    return sum(int(np.count_nonzero(k == 0)) for k in kernels) / total if total else 0.0


def sparsity_report(model) -> list[dict]:
    """Per-layer share of exactly-zero weights in each kernel, plus the overall figure."""
    rows, zeros, total = [], 0, 0
    for name, k in finetune.kernels(model):
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
        kernels = [w for w in layer.weights if finetune.is_kernel(w.name)]
        return (
            layer.name not in keep_dense
            and bool(kernels)
            and all(int(np.prod(w.shape)) > clusters for w in kernels)
            and clustering_registry.ClusteringRegistry.supports(layer)
        )

    clustered = finetune.wrap_layers(
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
    batches = finetune.Batches(
        x_train, y_train, batch_size, input_scale, seed=seed, augment=augment, progress=progress
    )
    batches.fit(
        clustered, steps=steps, learning_rate=learning_rate, desc=f"cluster to {clusters} values"
    )
    stripped = clustering.strip_clustering(clustered)
    return finetune.recompiled(stripped, learning_rate)


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
            model, _ = slim.fold_batch_norms(model)
        except (ValueError, TypeError, KeyError, AttributeError):
            pass  # a graph it cannot rebuild: QAT on the model as it is (slower, not wrong)
    keep_float = _keep_float_config()

    def annotate(layer):
        if registry.supports(layer):
            return q.quantize_annotate_layer(layer)
        # A layer tfmot does not know and nothing to train (Rescaling; Normalization, whose
        # mean and variance are fixed): annotate it to stay float, else the preserve schemes
        # ask their registry for it and fail (EfficientNet's PQAT did).
        return q.quantize_annotate_layer(layer, quantize_config=keep_float)

    annotated = finetune.wrap_layers(
        model,
        annotate,
        lambda layer: registry.supports(layer) or not layer.trainable_weights,
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
        raise finetune.TechniqueError(f"{what}: {errors.first_line(err)}") from err
    if range_batches:
        calibrate_ranges(qat, x_train, input_scale=input_scale, batches=range_batches, seed=seed)
    batches = finetune.Batches(
        x_train, y_train, batch_size, input_scale, seed=seed, augment=augment, progress=progress
    )
    batches.fit(qat, steps=steps, learning_rate=learning_rate, desc=what)
    if preserve == "clusters":
        qat = combine.strip_clustering_cqat(qat)
    return qat


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

    from workbench.models import loading

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
            qat(loading.scale_inputs(x[take[i : i + batch_size]], input_scale), training=True)
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
