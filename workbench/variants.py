"""Build, convert and measure a model's edge variants, and search them within an accuracy budget.

A *variant* is a recipe (a chain of compression techniques, then a TFLite conversion) and
what it measures on the edge runtime: accuracy on the test images and on validation images
held out from training, agreement with the float model, bytes (raw and gzip), latency at the
chosen thread count. Works for any :class:`~workbench.contract.ImageClassifier`:

- the four post-training variants (``float32``, ``dynamic_range``, ``float16``, ``int8``)
  need no tf-keras and run for every model;
- the tfmot variants (pruning, clustering, QAT, PQAT, PCQAT) and structured pruning need
  the model's tf-keras form; when it has none, or a technique or the converter refuses the
  model, the variant is reported as ``skipped`` with the reason, and the run goes on.

:func:`search` answers "what is the smallest, and what is the fastest, edge model that loses
at most ``budget_pp`` points?": it tries structured pruning (fewer channels, fewer
multiply-accumulates), then, on the slimmed model within the budget, climbs a ladder of
sparsities (each level pruned on from the one before, reusing its fine-tuning) until the
validation accuracy leaves the budget, clusters and trains quantization-aware from the
sparsest level within it, and picks the winners on the validation images.
:func:`build_variants` builds a fixed list of recipes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from workbench import compress, contract, edge

POST_TRAINING = compress.TFLITE_VARIANTS
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

    The defaults are notebook 03's full profile (see :mod:`workbench.plan` for what they cost).
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


@dataclass
class Evaluation:
    """What every variant is measured on, in model units, with the float model's answers.

    Choices (which variant is "within budget") are made on the validation images, held out
    from training and distinct from the test images the final table reports.
    """

    x_test: np.ndarray
    y_test: np.ndarray
    float_probs: np.ndarray
    float_accuracy: float
    x_val: np.ndarray
    y_val: np.ndarray
    float_val_accuracy: float
    x_one: np.ndarray  # the image timed for latency
    float_val_probs: np.ndarray | None = None  # the float model on the validation images

    @classmethod
    def of(
        cls, classifier, x_test, y_test, *, x_val, y_val, input_scale: float | None
    ) -> Evaluation:
        x = contract.scale_inputs(x_test, input_scale)
        xv = contract.scale_inputs(x_val, input_scale)
        probs = classifier.predict(x)
        val_probs = classifier.predict(xv) if len(xv) else None
        val_acc = accuracy(val_probs, y_val) if val_probs is not None else float("nan")
        return cls(
            x,
            np.asarray(y_test),
            probs,
            accuracy(probs, y_test),
            xv,
            np.asarray(y_val),
            val_acc,
            x[:1],
            val_probs,
        )


def accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of class scores against integer labels."""
    return float(np.mean(np.argmax(probabilities, axis=1) == np.asarray(y)))


def paired_noise_pp(probs: np.ndarray, reference: np.ndarray, y: np.ndarray) -> float:
    """Standard error, in points, of the accuracy difference of two models on the same images.

    Paired (McNemar): only the images one model gets right and the other wrong vary the
    difference, so ``var = ((b + c) / n - ((b - c) / n) ** 2) / n`` with ``b`` and ``c`` the
    two kinds of disagreement on ``n`` images.
    """
    y = np.asarray(y)
    ok, ok_ref = np.argmax(probs, axis=1) == y, np.argmax(reference, axis=1) == y
    n = len(y)
    b, c = float(np.sum(ok & ~ok_ref)), float(np.sum(~ok & ok_ref))
    return 100 * float(np.sqrt(max((b + c) / n - ((b - c) / n) ** 2, 0.0) / n))


def measure(
    blob: bytes,
    recipe: Recipe,
    evaluation: Evaluation,
    *,
    source_probs: np.ndarray | None = None,
    threads: int = 1,
    repeats: int = 200,
) -> Variant:
    """Accuracy, agreement, sizes and single-image latency of a TFLite model on LiteRT."""
    model = edge.EdgeModel(blob, num_threads=threads, name=recipe.name)
    probs = model.predict(evaluation.x_test)
    acc = accuracy(probs, evaluation.y_test)
    val_probs = model.predict(evaluation.x_val) if len(evaluation.x_val) else None
    val_acc = accuracy(val_probs, evaluation.y_val) if val_probs is not None else None
    noise = (
        paired_noise_pp(val_probs, evaluation.float_val_probs, evaluation.y_val)
        if val_probs is not None and evaluation.float_val_probs is not None
        else None
    )
    latency = model.benchmark(evaluation.x_one, repeats=repeats)
    size = compress.size_of(blob)
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
        agreement_float=edge.agreement(probs, evaluation.float_probs),
        agreement_source=edge.agreement(
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
    """The ``ok`` variants that lose at most ``budget_pp`` points against the float model,
    judged on the validation images (on the test images when there are none)."""
    out = []
    for v in variants:
        if not v.ok:
            continue
        delta = v.val_delta_pp if v.val_delta_pp is not None else v.delta_pp
        if delta >= -budget_pp:
            out.append(v)
    return out


def winners(variants: list[Variant], budget_pp: float) -> dict[str, str | None]:
    """Within the accuracy budget: the smallest (gzip bytes) and the fastest (p50) variant."""
    ok = within_budget(variants, budget_pp)
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


class _Runner:
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
            blob = compress.to_tflite(
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
        except (compress.TechniqueError, compress.ConversionError, _Skip) as err:
            variant = Variant(recipe.name, recipe.describe(), "skipped", reason=str(err))
        except edge.EdgeModelError as err:
            reason = f"LiteRT refused it: {err}"
            variant = Variant(recipe.name, recipe.describe(), "skipped", reason=reason)
        variant.build_seconds = time.perf_counter() - t0
        if variant.ok and self.out_dir is not None:
            from workbench import atomic

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
        if not recipe.steps:
            if c.keras_model is not None:
                return c.keras_model, self.evaluation.float_probs
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
            except compress.TechniqueError as err:
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
            from workbench import slim

            kw.setdefault("steps", s.slim_steps)
            return slim.prune_channels(model, x, y, **kw, **common).model
        if step.technique == "prune":
            kw.setdefault("steps", s.prune_steps)
            return compress.prune(model, x, y, keep_dense=keep, **kw, **common)
        if step.technique == "cluster":
            kw.setdefault("steps", s.cluster_steps)
            return compress.cluster(model, x, y, keep_dense=keep, **kw, **common)
        preserve = {"qat": None, "pqat": "sparsity", "pcqat": "clusters"}[step.technique]
        kw.setdefault("steps", s.qat_steps)
        return compress.quantization_aware(model, x, y, preserve=preserve, **kw, **common)

    def _keep(self, which: str) -> tuple[str, ...]:
        """Layers left dense: ``"ends"`` = the first and the last layer with a kernel (few
        weights, much accuracy), ``"none"`` = prune everything; plus ``settings.keep_dense``."""
        extra = tuple(self.settings.keep_dense)
        if which == "none" or self.classifier.keras_model is None:
            return extra
        with_kernel = [
            layer.name
            for layer in self.classifier.keras_model.layers
            if any(compress._is_kernel(w.name) for w in layer.weights)
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
        from workbench import bridge

        compress.free_memory()  # clears tf-keras' session, and with it its layer-name counters
        if self.classifier.keras_model is not None:
            bridge.reserve_layer_names(self.classifier.keras_model)


def _shape_of(source) -> tuple[int | None, float | None]:
    """MACs per image and kernel sparsity of a tf-keras source model (None for others)."""
    import tf_keras

    from workbench import models

    if not isinstance(source, tf_keras.Model):
        return None, None
    try:
        macs = models.count_macs(source)
    except (ValueError, AttributeError):
        macs = None
    return macs, compress.overall_sparsity(source)


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
    evaluation: Evaluation,
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
        classifier: the float model (:class:`~workbench.contract.ImageClassifier`).
        x_train, y_train: training images (stored units) for fine-tuning and calibration.
        evaluation: test and validation images, the float model's answers
            (:meth:`Evaluation.of`).
        recipes: what to build, in order.
        out_dir: where to write ``{file_prefix}{variant}.tflite`` (None: keep bytes only).
        on_variant: called with each finished variant (e.g. to print a line).

    Returns:
        One :class:`Variant` per recipe, in order, ``ok`` or ``skipped`` with its reason.
    """
    from tqdm.auto import tqdm

    runner = _Runner(classifier, x_train, y_train, evaluation, input_scale=input_scale,
                     settings=settings or Settings(), out_dir=out_dir, file_prefix=file_prefix,
                     progress=progress, on_variant=on_variant)  # fmt: skip
    for i, recipe in enumerate(tqdm(recipes, desc="variants", disable=not progress)):
        runner.run(recipe)
        runner.keep_only([r.steps for r in recipes[i + 1 :]])
    runner.keep_only([])
    return runner.results


# ===================================================================== the budgeted search


@dataclass
class SearchSpace:
    """What :func:`search` tries. Cheap things are searched; expensive ones are few."""

    slim_fractions: tuple[float, ...] = (0.25, 0.35)  # channels removed, largest tried first
    sparsities: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9)  # the ladder (on the slim model)
    compare_all_layers: bool = True  # at the best level, prune the first and last layers too
    clusters: tuple[int, ...] = (16,)  # PCQAT from the sparsest level within budget
    qat: bool = True  # plain quantization-aware training of the float model


@dataclass
class SearchResult:
    """Every variant built, the winners within the budget, the frontiers, and the search's
    own account of what it tried and why it stopped."""

    variants: list[Variant]
    budget_pp: float
    winners: dict[str, str | None]
    frontier_size: list[str]  # validation accuracy against gzip bytes
    frontier_speed: list[str]  # validation accuracy against p50 latency
    log: list[dict]

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.variant == name)


def pct(x: float) -> int:
    return int(round(100 * x))


def search(
    classifier,
    x_train: np.ndarray,
    y_train: np.ndarray,
    evaluation: Evaluation,
    *,
    input_scale: float | None,
    budget_pp: float = 1.0,
    settings: Settings | None = None,
    space: SearchSpace | None = None,
    out_dir: Path | None = None,
    file_prefix: str = "",
    progress: bool = True,
    on_variant: Callable[[Variant], None] | None = None,
) -> SearchResult:
    """The smallest and the fastest edge variant within ``budget_pp`` points of the float model.

    In order (each step's decision is logged):

    1. the four post-training variants, and plain QAT;
    2. structured pruning (fewer MACs: the way to a faster model on a CPU without 8-bit
       dot-product instructions, where float32 already runs near the peak), from the
       largest fraction of channels removed down to the first one within the budget
       (each is a fresh fine-tune, so the fastest candidate goes first), converted to
       float32, int8 and dynamic-range; the slim model within the budget is the *base* of
       what follows (the float model when none is);
    3. a sparsity ladder (``space.sparsities``) on the base, each level pruned on from the
       previous one with the first and last layers left dense, converted to int8, climbed
       until the validation accuracy leaves the budget;
    4. at the sparsest level within the budget: its first and last layers pruned too, one
       more rung (is leaving the ends dense worth it?), its float32 file (zeros only pay
       after gzip), PQAT, and sparsity-preserving clustering + PCQAT per cluster count.

    Names carry the base: ``slim35_pruned80_int8`` is the 35%-slimmed model pruned to 80%;
    ``pruned80_int8`` the float model pruned to 80% (no slim model within the budget).
    Fine-tuning the slim model costs fewer MACs per step than the float model, and what is
    built on it is small *and* does less work.

    The budget is judged on the validation images (held out from training, not the test
    images of the final table).
    """
    settings = settings or Settings()
    space = space or SearchSpace()
    runner = _Runner(classifier, x_train, y_train, evaluation, input_scale=input_scale,
                     settings=settings, out_dir=out_dir, file_prefix=file_prefix,
                     progress=progress, on_variant=on_variant)  # fmt: skip
    log: list[dict] = []

    def within(v: Variant) -> bool:
        return bool(within_budget([v], budget_pp))

    def note(step: str, variant: Variant | None, decision: str) -> None:
        log.append(
            {
                "step": step,
                "variant": variant.variant if variant else None,
                "status": variant.status if variant else None,
                "val_delta_pp": variant.val_delta_pp if variant else None,
                "gzip_bytes": variant.gzip_bytes if variant else None,
                "p50_ms": variant.p50_ms if variant else None,
                "decision": decision,
            }
        )

    # 1. post-training, and plain QAT
    for name in POST_TRAINING:
        v = runner.run(Recipe(name, (), name))
        note("post-training", v, "measured")
    if space.qat:
        v = runner.run(Recipe("qat_int8", (Step.of("qat"),), "int8"))
        note("quantization-aware training", v, "measured")
        runner.keep_only([])

    # 2. structured pruning: fewer channels. Each fraction is a fresh fine-tune of the float
    #    model (nothing to reuse), so the most aggressive comes first: if it is within the
    #    budget it is the fastest, and the milder ones need not be built.
    base: tuple[Step, ...] = ()  # what the ladder starts from: the slim model, or the float one
    prefix = ""
    for fraction in sorted(space.slim_fractions, reverse=True):
        slim_chain = (Step.of("slim", fraction=fraction),)
        f = pct(fraction)
        v = runner.run(Recipe(f"slim{f}_float32", slim_chain, "float32"))
        if v.ok:
            for kind in SLIM_CONVERSIONS:
                runner.run(Recipe(f"slim{f}_{kind}", slim_chain, kind))
        if v.ok and within(v):
            base, prefix = slim_chain, f"slim{f}_"
            note(
                "structured pruning",
                v,
                f"{f}% of channels removed, within budget: the ladder starts from it",
            )
            runner.keep_only([base])
            break
        why = "skipped" if not v.ok else f"loses more than {budget_pp:g} pp"
        note("structured pruning", v, f"{why}: try fewer channels removed")
        runner.keep_only([])
    if space.slim_fractions and not base:
        note(
            "structured pruning",
            None,
            "no fraction within budget: the rest starts from the float model",
        )

    # 3. the sparsity ladder, on the slim model when there is one within the budget
    chain: tuple[Step, ...] = base
    best_chain, best_level = None, None
    for level in sorted(space.sparsities):
        chain = (*chain, Step.of("prune", sparsity=level))
        v = runner.run(Recipe(f"{prefix}pruned{pct(level)}_int8", chain, "int8"))
        if v.ok and within(v):
            best_chain, best_level = chain, level
            note("sparsity ladder", v, f"within {budget_pp:g} pp: climb on")
            runner.keep_only([chain])
            continue
        why = "skipped" if not v.ok else f"loses more than {budget_pp:g} pp"
        note("sparsity ladder", v, f"{why}: stop climbing")
        break
    if best_chain is None and runner.results[-1].ok and len(chain) == len(base) + 1:
        best_chain, best_level = chain, min(space.sparsities)  # the lowest, for reference
        note("sparsity ladder", None, "no level within budget: continue from the lowest one")

    # 4. from the sparsest level within budget
    if best_chain is not None:
        runner.keep_only([best_chain])

        def named(technique: str) -> str:  # e.g. "slim35_pqat80"
            return f"{prefix}{technique}{pct(best_level)}"

        v = runner.run(Recipe(f"{named('pruned')}_float32", best_chain, "float32"))
        note("zeros and gzip", v, "float32 with zeros: small only after gzip")
        if space.compare_all_layers:
            # the ends-dense model with its first and last layers pruned too: what leaving
            # them dense buys, one more rung of fine-tuning (which only helps the comparison)
            all_chain = (*best_chain, Step.of("prune", sparsity=best_level, keep="none"))
            v = runner.run(Recipe(f"{named('pruned')}_all_int8", all_chain, "int8"))
            runner.keep_only([best_chain])
            note("which layers stay dense", v, "the first and last layers pruned too")
        v = runner.run(Recipe(f"{named('pqat')}_int8", (*best_chain, Step.of("pqat")), "int8"))
        note("pruning-preserving QAT", v, "measured")
        runner.keep_only([best_chain])
        for k in space.clusters:
            steps = (*best_chain, Step.of("cluster", clusters=k), Step.of("pcqat"))
            v = runner.run(Recipe(f"{named('pcqat')}_c{k}_int8", steps, "int8"))
            note("clustering + PCQAT", v, f"{k} shared values per kernel")
            runner.keep_only([best_chain])
    runner.keep_only([])

    variants = runner.results
    return SearchResult(
        variants=variants,
        budget_pp=budget_pp,
        winners=winners(variants, budget_pp),
        frontier_size=frontier(variants, "gzip_bytes"),
        frontier_speed=frontier(variants, "p50_ms"),
        log=log,
    )


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
    from workbench import bench

    rows = []
    for v in variants:
        if not v.ok or not v.macs:
            continue
        # dynamic-range models keep float inputs but quantize activations at run time and
        # multiply int8 by int8 (LiteRT's hybrid and XNNPACK's dynamically quantized kernels)
        dynamic = v.recipe.endswith("TFLite dynamic_range")
        dtype = "int8" if v.input_dtype == "int8" or dynamic else "float32"
        rate = bench.achieved_mac_rate(v.macs, v.p50_ms, dtype=dtype, peak=peak)
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


def ladder(found: SearchResult) -> list[dict]:
    """The sparsity ladder's levels that were built (on the slim model or on the float one):
    target and measured sparsity, accuracy."""
    ref = found.variant("float32")
    rows = []
    for v in found.variants:
        match = re.fullmatch(r"(?:slim\d+_)?pruned(\d+)_int8", v.variant)
        if not (v.ok and match):  # pruned80_all_int8 is not on the ladder
            continue
        level = match.group(1)
        rows.append(
            {
                "target_sparsity": int(level) / 100,
                "measured_sparsity": v.sparsity,
                "accuracy": v.accuracy,
                "delta_pp": v.delta_pp,
                "val_delta_pp": v.val_delta_pp,
                "gzip_bytes": v.gzip_bytes,
                "compression_x": ref.bytes / v.gzip_bytes if ref.ok else None,
            }
        )
    return rows


def write_manifest(found: SearchResult, folder: Path, *, extra: dict | None = None) -> dict:
    """The edge models notebooks 04 and 05 read: float32, int8 and the two winners.

    The default edge model is the fastest variant within the budget (int8 if none is).
    Returns the manifest, with its ``path``.
    """
    names = ["float32", "int8", found.winners["smallest"], found.winners["fastest"]]
    chosen = [found.variant(n) for n in dict.fromkeys(n for n in names if n)]
    chosen = [v for v in chosen if v.ok and v.file]
    entries = [
        {
            "variant": v.variant,
            "file": v.file,
            "recipe": v.recipe,
            "accuracy": v.accuracy,
            "val_accuracy": v.val_accuracy,
            "bytes": v.bytes,
            "gzip_bytes": v.gzip_bytes,
            "p50_ms": v.p50_ms,
            "macs": v.macs,
            "input_dtype": v.input_dtype,
            "roles": [role for role, name in found.winners.items() if name == v.variant],
        }
        for v in chosen
    ]
    default = found.winners["fastest"] or "int8"
    path = edge.write_manifest(
        Path(folder),
        entries,
        default=default,
        extra={"winners": found.winners, "budget_pp": found.budget_pp, **(extra or {})},
    )
    return {"path": str(path), "default": default, "models": entries}


def _noisy(v: Variant) -> str:
    """``"+0.55 ± 1.53 pp"``: a validation delta with its standard error, when known."""
    if v.val_delta_pp is None:
        return "not measured"
    noise = f" \u00b1 {v.val_noise_pp:.2f}" if v.val_noise_pp is not None else ""
    return f"{v.val_delta_pp:+.2f}{noise} pp"


def conclusions(found: SearchResult, *, peak=None, dot_flags=(), threads: int = 1) -> str:
    """What the search found, in a few sentences of Markdown (every number from ``found``)."""
    ref = found.variant("float32")
    small = found.variant(found.winners["smallest"]) if found.winners["smallest"] else None
    fast = found.variant(found.winners["fastest"]) if found.winners["fastest"] else None
    lines = [
        f"Within **{found.budget_pp:g} pp** of the float model (judged on the validation "
        f"images), on this CPU at {threads} thread(s):",
        "",
    ]
    if small:
        lines.append(
            f"- **smallest: {small.variant}** ({small.recipe}): {small.gzip_bytes:,} bytes gzip, "
            f"{ref.bytes / small.gzip_bytes:.1f}x smaller than the float32 TFLite file, "
            f"test accuracy {small.accuracy:.4f} ({small.delta_pp:+.2f} pp; validation "
            f"{_noisy(small)})."
        )
    if fast:
        lines.append(
            f"- **fastest: {fast.variant}** ({fast.recipe}): p50 {fast.p50_ms:.3f} ms against "
            f"float32's {ref.p50_ms:.3f} ms ({ref.p50_ms / fast.p50_ms:.2f}x), test accuracy "
            f"{fast.accuracy:.4f} ({fast.delta_pp:+.2f} pp; validation {_noisy(fast)})"
            + (f", {fast.macs / 1e6:.2f} M MACs per image." if fast.macs else ".")
        )
    if not (small or fast):
        lines.append("- no variant stays within the budget: loosen `budget_pp`.")
    winners = [w for w in (small, fast) if w]
    missed = [
        v for i, v in enumerate(winners)
        if v not in winners[:i] and v.delta_pp is not None and v.delta_pp < -found.budget_pp
    ]  # fmt: skip
    if missed:
        lines += [
            "",
            "On the test images "
            + " and ".join(f"{v.variant} loses {-v.delta_pp:.2f} pp" for v in missed)
            + f", more than the {found.budget_pp:g} pp budget its validation images allowed: "
            "a small validation split cannot resolve differences of a point or two (the "
            "\u00b1 above is one standard error, from the images the two models disagree on). "
            "Hold out more images, or read the table for the next candidate.",
        ]
    int8 = next((v for v in found.variants if v.variant == "int8" and v.ok), None)
    if int8:
        speed = ref.p50_ms / int8.p50_ms
        lines += [
            "",
            f"Post-training int8 is {ref.bytes / int8.bytes:.1f}x smaller raw and runs at "
            f"{speed:.2f}x float32's speed here. Pruning pays only after gzip (TFLite stores "
            "zeros densely) and clustering leaves few distinct values, which gzip also "
            "exploits; neither removes work. Removing channels does.",
        ]
        slim_int8 = [
            v for v in found.variants
            if v.ok and v.macs and int8.macs and re.fullmatch(r"slim\d+_int8", v.variant)
        ]  # fmt: skip
        for v in slim_int8:
            lines.append(
                f"{v.variant} does {v.macs / int8.macs:.0%} of int8's MACs and runs at "
                f"{int8.p50_ms / v.p50_ms:.2f}x its speed"
                + (
                    "."
                    if v.p50_ms < 0.9 * int8.p50_ms
                    else ": at this size the work between the multiply-accumulates "
                    "(quantizing, pooling, the interpreter's own steps) takes much of the time."
                )
            )
    if peak is not None and peak.float32_gmacs and ref.macs:
        share = ref.macs / (ref.p50_ms * 1e-3) / 1e9 / peak.float32_gmacs
        text = (
            f"The float32 model runs at {share:.0%} of one core's float32 peak "
            f"({peak.float32_gmacs:.1f} G MAC/s). "
        )
        if dot_flags:
            text += (
                f"This CPU has 8-bit dot-product instructions ({', '.join(dot_flags)}): an "
                "int8 kernel does four MACs per 32-bit lane per instruction, four times "
                "float32's fused multiply-add"
                + (
                    ", which is why int8 is the faster one here."
                    if int8 and ref.p50_ms > 1.1 * int8.p50_ms
                    else "; yet int8 is not faster here: at this size the work around the "
                    "multiply-accumulates dominates."
                    if int8
                    else "."
                )
            )
        else:
            text += (
                "This CPU has no 8-bit dot-product instruction (VNNI, AMX, dotprod): its int8 "
                "kernels get fewer MACs per instruction than float32's fused multiply-add"
                + (", which is why int8 is not the faster one here" if int8 and
                   int8.p50_ms > 0.9 * ref.p50_ms else "")
                + ". On a CPU with them, int8 kernels do four MACs per 32-bit lane per "
                "instruction and would run faster."
            )  # fmt: skip
        lines.append(text)
    return "\n".join(lines)
