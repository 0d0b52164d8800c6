"""Build, convert and measure a model's edge variants: the table behind "how small, how fast?".

A *variant* is a recipe (a chain of compression techniques, then a TFLite conversion) and
what it measures on the edge runtime: accuracy, agreement with the float model, bytes
(raw and gzip), latency at the chosen thread count. :func:`build_variants` runs every recipe
for any :class:`~workbench.contract.ImageClassifier`:

- the four post-training variants (``float32``, ``dynamic_range``, ``float16``, ``int8``)
  need no tf-keras and run for every model;
- the tfmot variants (pruning, QAT, PQAT, PCQAT) need the model's tf-keras form; when it
  has none, or a technique or the converter refuses the model, the variant is reported as
  ``skipped`` with the reason, and the run goes on.

Intermediate models are shared: the pruned model feeds ``pruned_float32``, ``pruned_int8``,
PQAT and the clustering behind PCQAT, and is built once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from workbench import compress, contract, edge

POST_TRAINING = compress.TFLITE_VARIANTS


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
    """How hard to work on the variants. Work is counted in optimizer steps, not epochs."""

    sparsity: float = 0.8  # target share of zero weights for the pruned variants
    clusters: int = 16  # shared values per kernel after clustering
    prune_steps: int = 300  # fine-tuning steps while pruning (learning rate 1e-3)
    slim_steps: int = 600  # fine-tuning steps after channel pruning (cosine decay from 1e-3)
    cluster_steps: int = 100  # fine-tuning steps while clustering
    qat_steps: int = 100  # quantization-aware training steps
    batch_size: int = 64
    calibration_samples: int = 500  # training images for int8 calibration
    latency_repeats: int = 200  # timed single-image inferences per variant
    threads: int = 1  # interpreter threads: 1 models a small edge core
    keep_dense: tuple[str, ...] = ()  # layers never pruned or clustered
    seed: int = 0


def default_recipes(settings: Settings) -> list[Recipe]:
    """The post-training variants and tfmot's collaborative-optimization chain."""
    prune = Step.of("prune", sparsity=settings.sparsity)
    cluster = Step.of("cluster", clusters=settings.clusters)
    recipes = [Recipe(v, (), v) for v in POST_TRAINING]
    recipes += [
        Recipe("pruned_float32", (prune,), "float32"),
        Recipe("pruned_int8", (prune,), "int8"),
        Recipe("qat_int8", (Step.of("qat"),), "int8"),
        Recipe("pqat_int8", (prune, Step.of("pqat")), "int8"),
        Recipe("pcqat_int8", (prune, cluster, Step.of("pcqat")), "int8"),
    ]
    return recipes


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
    bytes: int | None = None
    gzip_bytes: int | None = None
    first_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    agreement_float: float | None = None  # same top-1 class as the float model
    agreement_source: float | None = None  # same top-1 class as the Keras model it came from
    input_dtype: str | None = None
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

    @classmethod
    def of(
        cls, classifier, x_test, y_test, *, x_val, y_val, input_scale: float | None
    ) -> Evaluation:
        x = contract.scale_inputs(x_test, input_scale)
        xv = contract.scale_inputs(x_val, input_scale)
        probs = classifier.predict(x)
        val_acc = accuracy(classifier.predict(xv), y_val) if len(xv) else float("nan")
        return cls(
            x,
            np.asarray(y_test),
            probs,
            accuracy(probs, y_test),
            xv,
            np.asarray(y_val),
            val_acc,
            x[:1],
        )


def accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of class scores against integer labels."""
    return float(np.mean(np.argmax(probabilities, axis=1) == np.asarray(y)))


def build_variants(
    classifier,
    x_train: np.ndarray,
    y_train: np.ndarray,
    evaluation: Evaluation,
    *,
    input_scale: float | None,
    settings: Settings | None = None,
    recipes: list[Recipe] | None = None,
    out_dir: Path | None = None,
    file_prefix: str = "",
    progress: bool = True,
    on_variant: Callable[[Variant], None] | None = None,
) -> list[Variant]:
    """Build, convert and measure every recipe; never stops on a technique that fails.

    Args:
        classifier: the float model (:class:`~workbench.contract.ImageClassifier`).
        x_train, y_train: training images (stored units) for fine-tuning and calibration.
        evaluation: test images and the float model's answers (:meth:`Evaluation.of`).
        out_dir: where to write ``{file_prefix}{variant}.tflite`` (None: keep bytes only).
        on_variant: called with each finished variant (e.g. to print a line).

    Returns:
        One :class:`Variant` per recipe, in order, ``ok`` or ``skipped`` with its reason.
    """
    from tqdm.auto import tqdm

    settings = settings or Settings()
    recipes = recipes if recipes is not None else default_recipes(settings)
    builder = _Builder(classifier, x_train, y_train, settings, input_scale, recipes, progress)
    results = []
    for recipe in tqdm(recipes, desc="variants", disable=not progress):
        t0 = time.perf_counter()
        try:
            source, source_probs = builder.source(recipe, evaluation)
            blob = compress.to_tflite(
                source,
                recipe.tflite,
                input_scale=input_scale,
                x_calibration=x_train,
                calibration_samples=settings.calibration_samples,
            )
            variant = measure(
                blob,
                recipe,
                evaluation,
                source_probs=source_probs,
                threads=settings.threads,
                repeats=settings.latency_repeats,
            )
        except (compress.TechniqueError, compress.ConversionError, _Skip) as err:
            variant = Variant(recipe.name, recipe.describe(), "skipped", reason=str(err))
        except edge.EdgeModelError as err:
            variant = Variant(
                recipe.name, recipe.describe(), "skipped", reason=f"LiteRT refused it: {err}"
            )
        variant.build_seconds = time.perf_counter() - t0
        if variant.ok and out_dir is not None:
            path = Path(out_dir) / f"{file_prefix}{recipe.name}.tflite"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(variant.blob)
            variant.file = path.name
        builder.done_with(recipe)
        results.append(variant)
        if on_variant:
            on_variant(variant)
    builder.release()
    return results


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
    val_acc = (
        accuracy(model.predict(evaluation.x_val), evaluation.y_val)
        if len(evaluation.x_val)
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


class _Skip(RuntimeError):
    """A recipe cannot run on this model (e.g. no tf-keras form); the message says why."""


class _Builder:
    """Applies recipe steps, sharing intermediate models between recipes, freeing them after."""

    def __init__(self, classifier, x_train, y_train, settings, input_scale, recipes, progress):
        self.classifier = classifier
        self.x_train, self.y_train = x_train, y_train
        self.settings = settings
        self.input_scale = input_scale
        self.progress = progress
        self.cache: dict[tuple[Step, ...], object] = {}
        self.failed: dict[tuple[Step, ...], str] = {}
        self.pending = [r.steps for r in recipes]

    def source(self, recipe: Recipe, evaluation: Evaluation):
        """The model to convert and its predictions on the test images."""
        if not recipe.steps:
            c = self.classifier
            if c.keras_model is not None:
                return c.keras_model, evaluation.float_probs
            if c._signature is not None:  # a plain SavedModel: convert the folder itself
                return c.path, evaluation.float_probs
            return c.native, evaluation.float_probs
        if self.classifier.keras_model is None:
            raise _Skip(
                f"{recipe.steps[0].technique} needs the model in tf-keras: "
                f"{self.classifier.keras_note}"
            )
        model = self._model(recipe.steps)
        return model, model.predict(evaluation.x_test, batch_size=256, verbose=0)

    def _model(self, steps: tuple[Step, ...]):
        if not steps:
            return self.classifier.keras_model
        if steps in self.failed:
            raise _Skip(self.failed[steps])
        if steps not in self.cache:
            base = self._model(steps[:-1])
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
        if step.technique == "slim":  # structured: fewer channels, fewer MACs, faster
            from workbench import slim

            kw.setdefault("steps", s.slim_steps)
            return slim.prune_channels(model, x, y, **kw, **common).model
        if step.technique == "prune":
            return compress.prune(
                model, x, y, steps=s.prune_steps, keep_dense=s.keep_dense, **kw, **common
            )
        if step.technique == "cluster":
            return compress.cluster(
                model, x, y, steps=s.cluster_steps, keep_dense=s.keep_dense, **kw, **common
            )
        preserve = {"qat": None, "pqat": "sparsity", "pcqat": "clusters"}[step.technique]
        return compress.quantization_aware(
            model, x, y, steps=s.qat_steps, preserve=preserve, **kw, **common
        )

    def done_with(self, recipe: Recipe) -> None:
        """Drop intermediate models no remaining recipe needs (memory: Binder has 2 GB)."""
        self.pending.remove(recipe.steps)
        needed = {p[:i] for p in self.pending for i in range(1, len(p) + 1)}
        dropped = [k for k in self.cache if k not in needed]
        for key in dropped:
            del self.cache[key]
        if dropped:
            self._free()

    def release(self) -> None:
        self.cache.clear()
        self._free()

    def _free(self) -> None:
        from workbench import bridge

        compress.free_memory()  # clears tf-keras' session, and with it its layer-name counters
        if self.classifier.keras_model is not None:
            bridge.reserve_layer_names(self.classifier.keras_model)
