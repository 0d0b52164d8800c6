"""Should *your* model run on the edge or in the cloud? The whole flow for any image classifier.

``python -m workbench assess --model PATH --data PATH --out DIR`` (or :func:`assess`) runs,
for a Keras image classifier and labelled images (the contract: :mod:`workbench.models.contract`):

1. **compress**: every edge variant built, converted and measured
   (:mod:`workbench.edge.variants`), with the smallest and the fastest within an accuracy budget;
2. **edge vs cloud**: the float model behind the model server against the edge variant,
   link by link (:mod:`workbench.collab.compare`);
3. **split**: the valid cut points from the graph, each cut measured, the best per link,
   and the best intermediate one run for real through the server (:mod:`workbench.collab.split`);
4. **cascade**: the edge answers when confident, the cloud otherwise, threshold chosen to
   stay within a tolerance of the cloud's accuracy.

It writes ``DIR/assessment.json`` (every figure), ``DIR/index.html`` (a page in the style of
the workbench's report), the figures (``DIR/figures/``), the TFLite files (``DIR/edge/``) and
the exports the server used (``DIR/serving/``). The folder is written complete or not at all:
a bad model/data pair fails before any work, and a failure midway leaves ``DIR`` as it was.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from workbench.assess import summary
from workbench.edge import search
from workbench.edge import variants as edge_variants
from workbench.models.subject import Subject, open_subject
from workbench.network import latency
from workbench.report import recorder


class AssessError(RuntimeError):
    """The assessment cannot start (output folder, settings); the message says what to do."""


@dataclass
class Settings:
    """How much work each stage does. ``PROFILES`` holds the named sets."""

    variants: edge_variants.Settings = field(default_factory=edge_variants.Settings)
    space: search.SearchSpace = field(default_factory=search.SearchSpace)
    links: tuple[str, ...] = tuple(latency.LINKS)  # links to compare on
    budget_pp: float = 1.0  # accuracy a variant may lose (validation images), points
    confidence: float = 0.9  # a winner's lower confidence bound must be within the budget
    validation_fraction: float | None = None  # held out to judge variants (None: sized for it)
    n_train: int | None = None  # cap on training images (None: all)
    n_test: int | None = None  # cap on test images (None: all)
    server_repeats: int = 100  # timed single-image requests per encoding
    max_cuts: int = 10  # cut points measured (both ends plus the cheapest in between)
    split_repeats: int = 30  # timed runs per cut and side
    split_link: str = "4g"  # link whose best intermediate cut is run for real
    devices: tuple[str, ...] | None = None  # device classes for splits (None: the catalog's)
    cascade_tolerance_pp: float = 0.5  # cascade goal: within this of the cloud's accuracy
    seed: int = 0


DEFAULT_PROFILE = "default"  # what `workbench assess` and assess() use unless told otherwise
PROFILES: dict[str, Settings] = {
    # Notebook 03's search without its teaching extras (plain QAT, the ends pruned too, 90%
    # sparsity), none of which won on the CIFAR model: with them, assessing that model
    # (150k parameters, 5k images, 2 cores) took 14.2 minutes, over its 10-minute target.
    "default": Settings(
        space=search.SearchSpace(sparsities=(0.5, 0.7, 0.8), compare_all_layers=False, qat=False),
    ),
    "smoke": Settings(
        variants=edge_variants.Settings(
            prune_steps=20,
            slim_steps=20,
            cluster_steps=10,
            qat_steps=10,
            calibration_samples=100,
            latency_repeats=30,
        ),
        # one of each technique family (PQAT stands for quantization-aware training), none of
        # the costly extras (ladder climbing, the ends pruned too, plain QAT, PCQAT: notebook
        # 03's smoke run and the unit tests cover those)
        space=search.SearchSpace(
            sparsities=(0.5,),
            compare_all_layers=False,
            clusters=(),
            qat=False,
            slim_fractions=(0.25,),
        ),
        n_train=600,
        n_test=200,
        server_repeats=20,
        max_cuts=5,
        split_repeats=5,
    ),
}


def assess(
    model_path: str | Path,
    data_path: str | Path,
    out_dir: str | Path,
    *,
    settings: Settings | None = None,
    logits: bool = False,
    input_scale: float | None = None,
    class_names: list[str] | None = None,
    progress: bool = True,
    trust_model: bool = False,
    max_data_bytes: int | None = None,
) -> dict:
    """Run the whole flow for one model and dataset; write ``out_dir``; return the assessment.

    ``settings``: how much work each stage does; by default the ``default`` profile
    (:data:`DEFAULT_PROFILE`), the same as ``workbench assess`` without ``--profile``.
    ``trust_model`` loads the model without the safety checks (a model file is code:
    :mod:`workbench.models.trust`); ``max_data_bytes`` caps the decoded data (default: a
    share of this machine's memory).

    Raises:
        workbench.models.loading.ContractError: the model, the data or the pair is wrong
            (checked before anything is written).
        workbench.data.datasets.DatasetError: the dataset cannot be read.
        AssessError: ``out_dir`` holds files an earlier assessment did not write (listed).
    """
    from workbench.assess import schema
    from workbench.core import atomic

    start = time.perf_counter()
    settings = settings or PROFILES[DEFAULT_PROFILE]
    out_dir = Path(out_dir).expanduser()
    _check_out_dir(out_dir)
    unknown = [k for k in (*settings.links, settings.split_link) if k not in latency.LINKS]
    if unknown:
        raise AssessError(f"Unknown link(s) {unknown}; choose from {', '.join(latency.LINKS)}.")
    subject = open_subject(
        model_path,
        data_path,
        input_scale=input_scale,
        logits=logits,
        class_names=class_names,
        n_train=settings.n_train,
        n_test=settings.n_test,
        validation_fraction=settings.validation_fraction,
        seed=settings.seed,
        trust_model=trust_model,
        max_data_bytes=max_data_bytes,
    )
    with atomic.temp_dir(out_dir) as tmp:
        result = run(subject, tmp, settings=settings, progress=progress)
        result["seconds"] = time.perf_counter() - start
        # the format's version and what shaped the figures first (workbench/assess/schema.py)
        result = {
            "schema_version": schema.SCHEMA_VERSION,
            "packages": schema.package_versions(),
            **result,
        }
        written = {*_entries(tmp), summary.ASSESSMENT, "index.html"}
        result[WRITTEN_BY_KEY] = {"tool": WRITTEN_BY, "entries": sorted(written)}
        atomic.write_json(tmp / summary.ASSESSMENT, recorder.jsonable(result))
        summary.write_page(result, tmp / "index.html")
    return result


# assessment.json records what the workbench wrote; --out replaces nothing else
WRITTEN_BY_KEY = "written_by"
WRITTEN_BY = "workbench assess"


def _entries(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, relative, ``/``-separated (links not followed)."""
    import os

    found = set()
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            found.add((Path(root) / name).relative_to(folder).as_posix())
    return found


def _written_by_us(assessment: Path) -> set[str] | None:
    """The entries an earlier assessment recorded writing, or None (no such record)."""
    import json

    try:
        doc = json.loads(assessment.read_text())
        record = doc[WRITTEN_BY_KEY]
        if record["tool"] == WRITTEN_BY and all(isinstance(e, str) for e in record["entries"]):
            return set(record["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out`` folder holding anything an earlier assessment did not write."""
    if out_dir.exists() and not out_dir.is_dir():
        raise AssessError(f"--out {out_dir} is a file; give a folder (it will be created).")
    present = _entries(out_dir) if out_dir.is_dir() else set()
    if not present:
        return
    ours = _written_by_us(out_dir / summary.ASSESSMENT) or set()
    foreign = sorted(present - ours)
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if foreign[10:] else "")
        raise AssessError(
            f"--out {out_dir} holds {len(foreign)} file(s) or folder(s) that no earlier "
            f"assessment wrote: {shown}. The assessment replaces the whole folder, so it "
            "refuses rather than delete them: move them away, or give a new or empty folder."
        )


def run(subject: Subject, out: Path, *, settings: Settings, progress: bool = True) -> dict:
    """The four stages on an opened, checked subject; files go under ``out``."""
    from workbench.collab import compare
    from workbench.core import machine
    from workbench.edge import runtime
    from workbench.report import plots

    stages = _Stages(progress)
    classifier, dataset, evaluation = subject.classifier, subject.dataset, subject.evaluation
    input_scale = subject.input_scale
    x_train, y_train, x_val = subject.x_train, subject.y_train, subject.x_val
    x_test, y_test = subject.x_test, subject.y_test
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)

    # 1. compress
    stages.start("compress: build and measure every edge variant")
    variant_settings = replace(settings.variants, seed=settings.seed)
    found = search.search(
        classifier,
        x_train,
        y_train,
        evaluation,
        input_scale=input_scale,
        budget_pp=settings.budget_pp,
        confidence=settings.confidence,
        settings=variant_settings,
        space=settings.space,
        out_dir=out / "edge",
        progress=progress,
    )
    built, best = found.variants, found.winners
    variant_rows = [_variant_row(v) for v in built]
    _explain_int8(variant_rows, subject, settings)
    edge_name = best["fastest"] or "float32"
    edge_variant = found.variant(edge_name)
    ok = [v for v in built if v.ok]
    _save_figure(
        plots.scatter_tradeoff(
            {v.variant: (v.gzip_bytes / 1024, 100 * v.accuracy) for v in ok},
            xlabel="gzip size [KiB] (log)",
            ylabel="test accuracy [%]",
            title="Accuracy against size",
        ),
        figures / "variants-pareto.png",
    )
    _save_figure(
        plots.bars(
            {v.variant: v.p50_ms for v in ok},
            ylabel="inference time [ms]",
            title=f"Single-image latency, p50, {variant_settings.threads} thread(s)",
            fmt="{:.3f}",
        ),
        figures / "variants-latency.png",
    )

    # 2. edge vs cloud
    stages.start("edge vs cloud: serve the float model, compare per link")
    links = {k: latency.LINKS[k] for k in settings.links}
    cloud = compare.measure_cloud(
        classifier,
        x_test,
        y_test,
        input_scale=input_scale,
        serving_base=out / "serving",
        repeats=settings.server_repeats,
    )
    link_rows = compare.compare(
        cloud,
        edge_p50_ms=edge_variant.p50_ms,
        edge_p95_ms=edge_variant.p95_ms,
        edge_accuracy=edge_variant.accuracy,
        links=links,
    )

    # 3. split computing
    stages.start("split: cut points, profile, best per link, one split run for real")
    splits = _split_stage(classifier, evaluation, cloud, settings, links, out, figures)

    # 4. cascade
    stages.start("cascade: edge first, cloud when unsure")
    edge_model = runtime.EdgeModel(edge_variant.blob, num_threads=variant_settings.threads)
    edge_probs = edge_model.predict(evaluation.x_test)
    cascade = _cascade_stage(
        edge_probs, cloud, y_test, edge_variant, link_rows, settings, figures, edge_name
    )
    stages.close()

    return {
        "assessed": {
            "model": classifier.describe(),
            "data": {
                "source": str(dataset.source),
                "digest": getattr(dataset, "digest", None),
                "train_images": int(len(x_train)),
                "validation_images": int(len(x_val)),
                "test_images": int(len(x_test)),
                "image_shape": list(dataset.x_train.shape[1:]),
                "dtype": str(dataset.x_train.dtype),
                "classes": list(getattr(dataset, "classes", []) or []),
            },
            "input_scale": input_scale,
            "hardware": machine.hardware(),
            "hardware_line": machine.describe_hardware(),
            "settings": asdict(settings),
        },
        "float_model": {
            "test_accuracy": evaluation.float_accuracy,
            "validation_accuracy": evaluation.float_val_accuracy,
        },
        "variants": variant_rows,
        "budget_pp": settings.budget_pp,
        "winners": best,
        "picks": found.picks(),
        "pick_rule": found.rule.describe(),
        "uncertified_winners": found.uncertified_winners,
        "frontier": {"size": found.frontier_size, "speed": found.frontier_speed},
        "search_log": found.log,
        "edge_variant": edge_name,
        "cloud": {
            "accuracy": cloud.accuracy,
            "encodings": cloud.encodings,
            "best_encoding": cloud.best_encoding,
            "server_overhead_ms": cloud.server_overhead_ms,
        },
        "links": [
            {
                "link": r["key"],
                "label": r["link"],
                "edge_p50_ms": r["edge_p50_ms"],
                "cloud_p50_ms": r["cloud_p50_ms"],
                "cloud_p95_ms": r["cloud_p95_ms"],
                "faster": r["faster"],
                "speed_ratio": r["speed_ratio"],
            }
            for r in link_rows
        ],
        "splits": splits,
        "cascade": cascade,
        "figures": sorted(p.name for p in figures.glob("*.png")),
    }


def _variant_row(v) -> dict:
    row = v.row()
    if row.get("reason") is None:
        row.pop("reason", None)
    return row


QUANT_DEBUG_BELOW = 0.9  # int8 agreeing less with the float model: say which layers lose


def _explain_int8(rows: list[dict], subject: Subject, settings: Settings) -> None:
    """Where int8 agrees with the float model on fewer than :data:`QUANT_DEBUG_BELOW` of the
    test images, add ``quant_debug`` to its row: the layers TFLite's quantization debugger
    finds losing most (:func:`workbench.edge.convert.quantization_debug`)."""
    from workbench.edge import convert

    row = next((r for r in rows if r["variant"] == "int8" and r["status"] == "ok"), None)
    if row is None or row["agreement_float"] >= QUANT_DEBUG_BELOW:
        return
    c = subject.classifier
    source = c.native if hasattr(c.native, "layers") else c.path
    row["quant_debug"] = convert.quantization_debug(
        source,
        subject.x_train,
        input_scale=subject.input_scale,
        samples=min(64, settings.variants.calibration_samples),
        seed=settings.seed,
    )


def _split_stage(classifier, evaluation, cloud, settings, links, out, figures) -> dict:
    from workbench.collab import split
    from workbench.edge import devices
    from workbench.report import plots

    keras_graph = hasattr(classifier.native, "layers")  # Keras 3 or tf-keras: no bridge needed
    result = split.split_stage(
        classifier.native if keras_graph else None,
        evaluation,
        links=links,
        server_overhead_ms=cloud.server_overhead_ms,
        response_bytes=int(cloud.best["response_bytes"]),
        max_cuts=settings.max_cuts,
        repeats=settings.split_repeats,
        devices=devices.slowdowns(devices.select(settings.devices)),
        split_link=settings.split_link,
        input_bytes=int(cloud.best["request_bytes"]),
        serving_base=out / "serving_split",
        threads=settings.variants.threads,
        unavailable=None if keras_graph else classifier.keras_note,
    )
    if result["status"] == "ok":
        _save_figure(plots.split_times(result["measured"]), figures / "split-times.png")
    if result.get("run", {}).get("status") == "ok":
        result["run"].pop("probabilities", None)
    result.pop("points", None)
    return result


def _cascade_stage(edge_probs, cloud, y_test, edge_variant, link_rows, settings, figures, name):
    from workbench.collab.cascade import THRESHOLDS, cascade_sweep, pick_threshold
    from workbench.report import plots

    thresholds = THRESHOLDS
    cloud_ms = {r["key"]: r["cloud_p50_ms"] for r in link_rows}
    sweep = cascade_sweep(
        edge_probs,
        cloud.probabilities,
        y_test,
        thresholds=thresholds,
        edge_ms=edge_variant.p50_ms,
        cloud_ms_per_link=cloud_ms,
    )
    target = cloud.accuracy - settings.cascade_tolerance_pp / 100
    choice = pick_threshold(sweep, target_accuracy=target)
    _save_figure(
        plots.cascade(
            {f"edge: {name}": sweep}, {f"edge: {name}": choice}, cloud_accuracy=cloud.accuracy
        ),
        figures / "cascade.png",
    )
    return {
        "edge_variant": name,
        "target_accuracy": target,
        "threshold": choice["threshold"],
        "accuracy": choice["accuracy"],
        "cloud_fraction": choice["cloud_fraction"],
        "edge_accuracy": float(np.mean(edge_probs.argmax(1) == y_test)),
        "cloud_accuracy": cloud.accuracy,
        "sweep": sweep,
    }


class _Stages:
    """One progress bar over the four stages, with the current one named."""

    NAMES = 4

    def __init__(self, progress: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.NAMES, desc="assess", unit="stage", disable=not progress)
        self.started = 0

    def start(self, what: str) -> None:
        if self.started:
            self.bar.update(1)
        self.started += 1
        self.bar.set_description(f"assess [{self.started}/{self.NAMES}] {what}")

    def close(self) -> None:
        self.bar.update(1)
        self.bar.close()


def _save_figure(fig, path: Path) -> Path:
    """Write a figure as PNG and close it (an assessment draws many; memory is short)."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
