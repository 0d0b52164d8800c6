"""Build, convert and measure a model's edge variants.

A *variant* is a recipe (a chain of compression techniques, then a TFLite conversion) and
what it measures on the edge runtime: accuracy on the test images and on validation images
held out from training, agreement with the float model, bytes (raw and gzip), latency at the
chosen thread count. Works for any :class:`~workbench.models.loading.ImageClassifier`:

- the four post-training variants (``float32``, ``dynamic_range``, ``float16``, ``int8``)
  need no tf-keras and run for every model;
- the tfmot variants (pruning, clustering, QAT, PQAT, PCQAT) and structured pruning need
  the model's tf-keras form; when it has none, or a technique or the converter refuses the
  model, the variant is reported as ``skipped`` with the reason, and the run goes on.

:func:`build_variants` builds a fixed list of recipes; :func:`workbench.edge.search.search`
chooses which to build within an accuracy budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from workbench.core import memory, metrics
from workbench.edge import convert, finetune, runtime, techniques
from workbench.models import subject

POST_TRAINING = convert.TFLITE_VARIANTS


# The slimmed model's conversions besides float32: int8, and dynamic-range (int8 weights,
# activations quantized at run time), which on CPUs with 8-bit dot products can be faster.
SLIM_CONVERSIONS = ("int8", "dynamic_range")


@dataclass(frozen=True)
class Step:
    """One compression technique with its settings, e.g. ``Step("prune", sparsity=0.8)``."""

    technique: str  # "prune", "cluster", "qat", "pqat", "pcqat", "slim" (channel pruning)
    settings: tuple[tuple[str, object], ...] = ()

    @classmethod
    def of(cls, technique: str, **settings) -> Step:
        return cls(technique, tuple(sorted(settings.items())))

    def describe(self) -> str:
        args = ", ".join(
            f"{k}={v:.0%}" if k in ("sparsity", "fraction") else f"{k}={v}"
            for k, v in self.settings
        )
        return f"{self.technique}({args})" if args else self.technique


@dataclass(frozen=True)
class Recipe:
    """A variant to build: techniques applied in order to the float model, then a conversion."""

    name: str
    steps: tuple[Step, ...]
    tflite: str  # one of compress.TFLITE_VARIANTS

    def describe(self) -> str:
        chain = " -> ".join(s.describe() for s in self.steps)
        return f"{chain} -> TFLite {self.tflite}" if chain else f"TFLite {self.tflite}"


@dataclass
class Settings:
    """How hard to work on the variants. Work is counted in optimizer steps, not epochs.

    The defaults are notebook 03's full profile (see :mod:`workbench.run.estimates` for what they cost).
    Channel pruning gets the most steps: on the CIFAR-10 subset (improved CNN, 62.4% test
    accuracy) 25% of channels removed and 400 steps lost 2.3 pp on the test images, 800 steps
    +0.4; 35% removed, 400 steps -2.5 pp, 800 steps -0.2. Distilling from the unpruned model
    instead of the labels did worse (25%, 400 steps: -2.9 pp at T=4)."""

    prune_steps: int = 150  # fine-tuning steps per pruning level (cosine decay from 1e-3)
    slim_steps: int = 800  # fine-tuning steps after channel pruning (cosine decay from 3e-3)
    cluster_steps: int = 60  # fine-tuning steps while clustering
    qat_steps: int = 100  # quantization-aware training steps
    batch_size: int = 64
    calibration_samples: int = 500  # training images for int8 calibration
    latency_repeats: int = 200  # timed single-image inferences per variant
    threads: int = 1  # interpreter threads: 1 models a small edge core
    keep_dense: tuple[str, ...] = ()  # layers never pruned or clustered
    seed: int = 0


@dataclass
class Variant:
    """One row of the variants table (and, while in memory, its TFLite bytes)."""

    variant: str
    recipe: str
    status: str  # "ok" or "skipped"
    reason: str | None = None
    accuracy: float | None = None  # top-1 on the test images
    delta_pp: float | None = None  # accuracy minus the float model's, percentage points
    val_accuracy: float | None = None  # top-1 on the validation images (choices use this)
    val_delta_pp: float | None = None
    # its standard error: paired, from the validation images one model gets right and the
    # other wrong (a 544-image split cannot resolve a point or two between similar models)
    val_noise_pp: float | None = None
    bytes: int | None = None
    gzip_bytes: int | None = None
    first_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    agreement_float: float | None = None  # same top-1 class as the float model
    agreement_source: float | None = None  # same top-1 class as the Keras model it came from
    input_dtype: str | None = None
    macs: int | None = None  # multiply-accumulates per image of the model converted
    sparsity: float | None = None  # share of zero weights in its kernels
    build_seconds: float | None = None
    file: str | None = None
    blob: bytes | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict:
        """The JSON/table form (no bytes)."""
        return {k: v for k, v in asdict(self).items() if k != "blob"}


def measure(
    blob: bytes,
    recipe: Recipe,
    evaluation: subject.Evaluation,
    *,
    source_probs: np.ndarray | None = None,
    threads: int = 1,
    repeats: int = 200,
) -> Variant:
    """Accuracy, agreement, sizes and single-image latency of a TFLite model on LiteRT."""
    model = runtime.EdgeModel(blob, num_threads=threads, name=recipe.name)
    probs = model.predict(evaluation.x_test)
    acc = metrics.accuracy(probs, evaluation.y_test)
    val_probs = model.predict(evaluation.x_val) if len(evaluation.x_val) else None
    val_acc = metrics.accuracy(val_probs, evaluation.y_val) if val_probs is not None else None
    noise = (
        metrics.paired_noise_pp(val_probs, evaluation.float_val_probs, evaluation.y_val)
        if val_probs is not None and evaluation.float_val_probs is not None
        else None
    )
    latency = model.benchmark(evaluation.x_one, repeats=repeats)
    size = convert.size_of(blob)
    return Variant(
        variant=recipe.name,
        recipe=recipe.describe(),
        status="ok",
        accuracy=acc,
        delta_pp=100 * (acc - evaluation.float_accuracy),
        val_accuracy=val_acc,
        val_delta_pp=None if val_acc is None else 100 * (val_acc - evaluation.float_val_accuracy),
        val_noise_pp=noise,
        bytes=size.bytes,
        gzip_bytes=size.gzip_bytes,
        first_ms=latency.first_ms,
        p50_ms=latency.p50_ms,
        p95_ms=latency.p95_ms,
        agreement_float=metrics.agreement(probs, evaluation.float_probs),
        agreement_source=metrics.agreement(
            probs, evaluation.float_probs if source_probs is None else source_probs
        ),
        input_dtype=str(model.input_dtype),
        blob=blob,
    )


def table(variants: list[Variant]):
    """The variants as a DataFrame indexed by name, with size and speed ratios to float32.

    ``compression_x`` is the float32 TFLite file's raw size over each variant's gzip size
    (what a device downloads); ``speedup_x`` is float32's p50 over each variant's.
    """
    import pandas as pd

    df = pd.DataFrame([v.row() for v in variants]).set_index("variant")
    ref = (
        df.loc["float32"] if "float32" in df.index and df.loc["float32", "status"] == "ok" else None
    )
    if ref is not None:
        df["compression_x"] = ref["bytes"] / df["gzip_bytes"]
        df["speedup_x"] = ref["p50_ms"] / df["p50_ms"]
    return df


def within_budget(variants: list[Variant], budget_pp: float) -> list[Variant]:
    """The ``ok`` variants whose validation delta (point estimate) is within ``budget_pp``
    points of the float model (the test delta when there are no validation images). The
    search explores with this; the pick needs more (:class:`PickRule`)."""
    out = []
    for v in variants:
        if not v.ok:
            continue
        delta = v.val_delta_pp if v.val_delta_pp is not None else v.delta_pp
        if delta >= -budget_pp:
            out.append(v)
    return out


@dataclass(frozen=True)
class PickRule:
    """When a variant counts as within the budget: with stated confidence, not by luck.

    Among many variants whose validation noise is as large as the budget, the one that looks
    best on the validation images is the one most likely to have been lucky there (the
    winner's curse). So a variant qualifies only if the one-sided lower confidence bound of
    its validation delta is within the budget::

        val_delta_pp - z * val_noise_pp >= -budget_pp,   z = Phi^-1(confidence)

    where ``val_noise_pp`` is the paired standard error of the delta
    (:func:`workbench.core.metrics.paired_noise_pp`). A variant with no validation noise
    measured (no validation images) is judged on its delta alone.
    """

    budget_pp: float = 1.0
    confidence: float = 0.9

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), not {self.confidence}")

    @property
    def z(self) -> float:
        from statistics import NormalDist

        return NormalDist().inv_cdf(self.confidence)

    def bound_pp(self, v: Variant) -> float | None:
        """The lower confidence bound of ``v``'s validation delta (None: not measured)."""
        delta = v.val_delta_pp if v.val_delta_pp is not None else v.delta_pp
        if delta is None:
            return None
        return delta - self.z * (v.val_noise_pp or 0.0)

    def certifies(self, v: Variant) -> bool:
        bound = self.bound_pp(v)
        return v.ok and bound is not None and bound >= -self.budget_pp

    def describe(self) -> str:
        return (
            f"validation delta - {self.z:.2f} x its standard error >= -{self.budget_pp:g} pp "
            f"(one-sided {self.confidence:.0%} confidence)"
        )

    def images_needed(self, noise_pp: float, n_val: int) -> int:
        """Validation images at which a variant with this noise, truly as accurate as the
        float model, would be certified: the standard error shrinks as 1/sqrt(n)."""
        if noise_pp <= 0 or n_val <= 0:
            return 0
        return int(np.ceil(n_val * (self.z * noise_pp / self.budget_pp) ** 2))


def winners(
    variants: list[Variant], budget_pp: float, *, confidence: float | None = None
) -> dict[str, str | None]:
    """The smallest (gzip bytes) and the fastest (p50) variant within the accuracy budget.

    ``confidence``: pick only variants the :class:`PickRule` certifies at that confidence;
    ``None`` judges the point estimate alone (:func:`within_budget`).
    """
    if confidence is None:
        ok = within_budget(variants, budget_pp)
    else:
        rule = PickRule(budget_pp, confidence)
        ok = [v for v in variants if rule.certifies(v)]
    return {
        "smallest": min(ok, key=lambda v: (v.gzip_bytes, v.p50_ms)).variant if ok else None,
        "fastest": min(ok, key=lambda v: (v.p50_ms, v.gzip_bytes)).variant if ok else None,
    }


def frontier(variants: list[Variant], cost: str) -> list[str]:
    """Names on the Pareto frontier of validation accuracy against ``cost`` (a Variant field
    such as ``gzip_bytes`` or ``p50_ms``): no other variant is both cheaper and more accurate."""
    ok = [v for v in variants if v.ok]
    acc = {v.variant: v.val_accuracy if v.val_accuracy is not None else v.accuracy for v in ok}
    front, best = [], -np.inf
    for v in sorted(ok, key=lambda v: (getattr(v, cost), -acc[v.variant])):
        if acc[v.variant] > best:
            front.append(v.variant)
            best = acc[v.variant]
    return front


# ===================================================================== building variants


class _Skip(RuntimeError):
    """A recipe cannot run on this model (e.g. no tf-keras form); the message says why."""


class Builder:
    """Builds and measures recipes one at a time, sharing intermediate models between them.

    Intermediate models are cached by their chain of steps (the 80% pruned model feeds its
    int8 variant, PQAT, the clustering behind PCQAT and the next sparsity level) until
    :meth:`keep_only` drops those no longer needed (memory: Binder has 2 GB).
    """

    def __init__(self, classifier, x_train, y_train, evaluation, *, input_scale, settings,
                 out_dir, file_prefix, progress, on_variant):  # fmt: skip
        self.classifier = classifier
        self.x_train, self.y_train = x_train, y_train
        self.evaluation = evaluation
        self.input_scale = input_scale
        self.settings = settings
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.file_prefix = file_prefix
        self.progress = progress
        self.on_variant = on_variant
        self.cache: dict[tuple[Step, ...], object] = {}
        self.failed: dict[tuple[Step, ...], str] = {}
        self.results: list[Variant] = []

    def run(self, recipe: Recipe) -> Variant:
        """Build, convert, measure (and write) one recipe; a failure becomes ``skipped``."""
        t0 = time.perf_counter()
        try:
            source, source_probs = self._source(recipe)
            blob = convert.to_tflite(
                source,
                recipe.tflite,
                input_scale=self.input_scale,
                x_calibration=self.x_train,
                calibration_samples=self.settings.calibration_samples,
            )
            variant = measure(
                blob,
                recipe,
                self.evaluation,
                source_probs=source_probs,
                threads=self.settings.threads,
                repeats=self.settings.latency_repeats,
            )
            variant.macs, variant.sparsity = _shape_of(source)
        except (finetune.TechniqueError, convert.ConversionError, _Skip) as err:
            variant = Variant(recipe.name, recipe.describe(), "skipped", reason=str(err))
        except runtime.EdgeModelError as err:
            reason = f"LiteRT refused it: {err}"
            variant = Variant(recipe.name, recipe.describe(), "skipped", reason=reason)
        variant.build_seconds = time.perf_counter() - t0
        if variant.ok and self.out_dir is not None:
            from workbench.core import atomic

            path = self.out_dir / f"{self.file_prefix}{recipe.name}.tflite"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(path, variant.blob)
            variant.file = path.name
        self.results.append(variant)
        if self.on_variant:
            self.on_variant(variant)
        return variant

    def _source(self, recipe: Recipe):
        """The model to convert and its answers on the test images."""
        c = self.classifier
        if not recipe.steps:  # post-training: the model in the Keras it came in, no bridge
            if c._signature is not None:  # a plain SavedModel: convert the folder itself
                return c.path, self.evaluation.float_probs
            return c.native, self.evaluation.float_probs
        if c.keras_model is None:
            raise _Skip(f"{recipe.steps[0].technique} needs the model in tf-keras: {c.keras_note}")
        model = self.model(recipe.steps)
        return model, _predict(model, self.evaluation.x_test)

    def model(self, steps: tuple[Step, ...]):
        """The tf-keras model after ``steps`` (built once, from the longest cached prefix)."""
        if not steps:
            return self.classifier.keras_model
        if steps in self.failed:
            raise _Skip(self.failed[steps])
        if steps not in self.cache:
            base = self.model(steps[:-1])
            try:
                self.cache[steps] = self._apply(steps[-1], base)
            except finetune.TechniqueError as err:
                self.failed[steps] = str(err)
                raise
        return self.cache[steps]

    def _apply(self, step: Step, model):
        s, kw = self.settings, dict(step.settings)
        common = dict(
            batch_size=s.batch_size,
            input_scale=self.input_scale,
            progress=self.progress,
            seed=s.seed,
        )
        x, y = self.x_train, self.y_train
        keep = self._keep(kw.pop("keep", "ends"))
        if step.technique == "slim":  # structured: fewer channels, fewer MACs, faster
            from workbench.edge import slim

            kw.setdefault("steps", s.slim_steps)
            return slim.prune_channels(model, x, y, **kw, **common).model
        if step.technique == "prune":
            kw.setdefault("steps", s.prune_steps)
            return techniques.prune(model, x, y, keep_dense=keep, **kw, **common)
        if step.technique == "cluster":
            kw.setdefault("steps", s.cluster_steps)
            return techniques.cluster(model, x, y, keep_dense=keep, **kw, **common)
        preserve = {"qat": None, "pqat": "sparsity", "pcqat": "clusters"}[step.technique]
        kw.setdefault("steps", s.qat_steps)
        return techniques.quantization_aware(model, x, y, preserve=preserve, **kw, **common)

    def _keep(self, which: str) -> tuple[str, ...]:
        """Layers left dense: ``"ends"`` = the first and the last layer with a kernel (few
        weights, much accuracy), ``"none"`` = prune everything; plus ``settings.keep_dense``."""
        extra = tuple(self.settings.keep_dense)
        if which == "none" or self.classifier.keras_model is None:
            return extra
        with_kernel = [
            layer.name
            for layer in self.classifier.keras_model.layers
            if any(finetune.is_kernel(w.name) for w in layer.weights)
        ]
        return tuple(dict.fromkeys(with_kernel[:1] + with_kernel[-1:] + list(extra)))

    def keep_only(self, chains) -> None:
        """Drop cached models except ``chains`` and their prefixes; give memory back."""
        needed = {c[:i] for c in chains for i in range(1, len(c) + 1)}
        dropped = [k for k in self.cache if k not in needed]
        for key in dropped:
            del self.cache[key]
        if dropped:
            self._free()

    def _free(self) -> None:
        from workbench.models import bridge

        memory.free_memory()  # clears tf-keras' session, and with it its layer-name counters
        if self.classifier.keras_model is not None:
            bridge.reserve_layer_names(self.classifier.keras_model)


def _shape_of(source) -> tuple[int | None, float | None]:
    """MACs per image and kernel sparsity of a Keras source model, Keras 3 or tf-keras (None
    for a SavedModel folder)."""
    from workbench.models.macs import count_macs

    if not hasattr(source, "layers"):
        return None, None
    try:
        macs = count_macs(source)
    except (ValueError, AttributeError):
        macs = None
    return macs, techniques.overall_sparsity(source)


def _predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Inference-mode outputs by direct calls (no ``predict`` function to trace: for a
    quantization-aware model with many layers, tracing costs far more than the call)."""
    return np.concatenate(
        [
            np.asarray(model(x[i : i + batch_size], training=False))
            for i in range(0, len(x), batch_size)
        ]
    )


def build_variants(
    classifier,
    x_train: np.ndarray,
    y_train: np.ndarray,
    evaluation: subject.Evaluation,
    *,
    input_scale: float | None,
    recipes: list[Recipe],
    settings: Settings | None = None,
    out_dir: Path | None = None,
    file_prefix: str = "",
    progress: bool = True,
    on_variant: Callable[[Variant], None] | None = None,
) -> list[Variant]:
    """Build, convert and measure every recipe; never stops on a technique that fails.

    Args:
        classifier: the float model (:class:`~workbench.models.loading.ImageClassifier`).
        x_train, y_train: training images (stored units) for fine-tuning and calibration.
        evaluation: test and validation images, the float model's answers
            (:meth:`Evaluation.of`).
        recipes: what to build, in order.
        out_dir: where to write ``{file_prefix}{variant}.tflite`` (None: keep bytes only).
        on_variant: called with each finished variant (e.g. to print a line).

    Returns:
        One :class:`Variant` per recipe, in order, ``ok`` or ``skipped`` with its reason.
    """
    from workbench.core.progressbar import track

    runner = Builder(classifier, x_train, y_train, evaluation, input_scale=input_scale,
                     settings=settings or Settings(), out_dir=out_dir, file_prefix=file_prefix,
                     progress=progress, on_variant=on_variant)  # fmt: skip
    for i, recipe in enumerate(
        track(recipes, desc="variants", unit="variant", disable=not progress)
    ):
        runner.run(recipe)
        runner.keep_only([r.steps for r in recipes[i + 1 :]])
    runner.keep_only([])
    return runner.results


# ===================================================================== reading the results


def styled(df):
    """The variants table formatted for reading (a pandas Styler)."""
    formats = {
        "accuracy": "{:.4f}",
        "delta_pp": "{:+.2f}",
        "val_accuracy": "{:.4f}",
        "val_delta_pp": "{:+.2f}",
        "val_noise_pp": "{:.2f}",
        "bytes": "{:,.0f}",
        "gzip_bytes": "{:,.0f}",
        "first_ms": "{:.3f}",
        "p50_ms": "{:.3f}",
        "p95_ms": "{:.3f}",
        "agreement_float": "{:.3f}",
        "agreement_source": "{:.3f}",
        "build_seconds": "{:.1f}",
        "macs": "{:,.0f}",
        "sparsity": "{:.1%}",
        "compression_x": "{:.1f}",
        "speedup_x": "{:.2f}",
    }
    hidden = [c for c in ("recipe", "file", "first_ms", "input_dtype") if c in df.columns]
    shown = df.drop(columns=hidden)
    return shown.style.format({k: v for k, v in formats.items() if k in shown.columns}, na_rep="")


def mac_rates(variants: list[Variant], peak) -> list[dict]:
    """Each variant's achieved MAC rate (MACs / p50) against this CPU core's peak."""
    from workbench.core import machine

    rows = []
    for v in variants:
        if not v.ok or not v.macs:
            continue
        # dynamic-range models keep float inputs but quantize activations at run time and
        # multiply int8 by int8 (LiteRT's hybrid and XNNPACK's dynamically quantized kernels)
        dynamic = v.recipe.endswith("TFLite dynamic_range")
        dtype = "int8" if v.input_dtype == "int8" or dynamic else "float32"
        rate = machine.achieved_mac_rate(v.macs, v.p50_ms, dtype=dtype, peak=peak)
        rows.append(
            {
                "variant": v.variant,
                "macs": v.macs,
                "kernels": "int8 (activations quantized at run time)" if dynamic else dtype,
                "p50_ms": v.p50_ms,
                "achieved_gmacs": rate["gmacs"],
                "peak_gmacs": rate["peak_gmacs"],
                "share_of_peak": rate["share_of_peak"],
            }
        )
    return rows
