"""Should *your* model run on the edge or in the cloud? The whole flow for any image classifier.

``python -m workbench assess --model PATH --data PATH --out DIR`` (or :func:`assess`) runs,
for a Keras image classifier and labelled images (the contract: :mod:`workbench.contract`):

1. **compress**: every edge variant built, converted and measured
   (:mod:`workbench.variants`), with the smallest and the fastest within an accuracy budget;
2. **edge vs cloud**: the float model behind the model server against the edge variant,
   link by link (:mod:`workbench.compare`);
3. **split**: the valid cut points from the graph, each cut profiled, the best per link,
   and the best intermediate one run for real through the server (:mod:`workbench.collab`);
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

from workbench import network
from workbench import variants as variants_mod

ASSESSMENT = "assessment.json"


class AssessError(RuntimeError):
    """The assessment cannot start (output folder, settings); the message says what to do."""


@dataclass
class Settings:
    """How much work each stage does. ``PROFILES`` holds the named sets."""

    variants: variants_mod.Settings = field(default_factory=variants_mod.Settings)
    space: variants_mod.SearchSpace = field(default_factory=variants_mod.SearchSpace)
    links: tuple[str, ...] = tuple(network.PROFILES)  # link profiles to compare on
    budget_pp: float = 1.0  # accuracy a variant may lose (validation images), points
    validation_fraction: float = 0.1  # training images held out to judge variants
    n_train: int | None = None  # cap on training images (None: all)
    n_test: int | None = None  # cap on test images (None: all)
    server_repeats: int = 100  # timed single-image requests per encoding
    max_cuts: int = 10  # cut points profiled (both ends plus the cheapest in between)
    profile_repeats: int = 30  # timed runs per cut and side
    split_link: str = "4g"  # link whose best intermediate cut is run for real
    edge_slowdown: float = 100.0  # what-if for splits: an edge this many times slower
    cascade_tolerance_pp: float = 0.5  # cascade goal: within this of the cloud's accuracy
    seed: int = 0


PROFILES: dict[str, Settings] = {
    # Notebook 03's search without its teaching extras (plain QAT, the ends pruned too, 90%
    # sparsity), none of which won on the CIFAR model: with them, assessing that model
    # (150k parameters, 5k images, 2 cores) took 14.2 minutes, over its 10-minute target.
    "default": Settings(
        space=variants_mod.SearchSpace(
            sparsities=(0.5, 0.7, 0.8), compare_all_layers=False, qat=False
        ),
    ),
    "smoke": Settings(
        variants=variants_mod.Settings(
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
        space=variants_mod.SearchSpace(
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
        profile_repeats=5,
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
) -> dict:
    """Run the whole flow for one model and dataset; write ``out_dir``; return the assessment.

    Raises:
        workbench.contract.ContractError: the model, the data or the pair is wrong
            (checked before anything is written).
        workbench.data.DatasetError: the dataset cannot be read.
        AssessError: ``out_dir`` holds something other than an earlier assessment.
    """
    from workbench import atomic

    start = time.perf_counter()
    settings = settings or Settings()
    out_dir = Path(out_dir).expanduser()
    _check_out_dir(out_dir)
    unknown = [k for k in (*settings.links, settings.split_link) if k not in network.PROFILES]
    if unknown:
        raise AssessError(f"Unknown link(s) {unknown}; choose from {', '.join(network.PROFILES)}.")
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
    )
    with atomic.temp_dir(out_dir) as tmp:
        result = run(subject, tmp, settings=settings, progress=progress)
        result["seconds"] = time.perf_counter() - start
        atomic.write_json(tmp / ASSESSMENT, _jsonable(result))
        write_page(result, tmp / "index.html")
    return result


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise AssessError(f"--out {out_dir} is a file; give a folder (it will be created).")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / ASSESSMENT).exists():
        raise AssessError(
            f"--out {out_dir} already holds files that are not an earlier assessment; the "
            "assessment replaces the whole folder, so give a new or empty one."
        )


def split_data(dataset, settings: Settings):
    """Capped train/test images and a validation split held out from training (seeded)."""
    x_train, y_train = dataset.x_train[: settings.n_train], dataset.y_train[: settings.n_train]
    x_test, y_test = dataset.x_test[: settings.n_test], dataset.y_test[: settings.n_test]
    from workbench import data

    fit, val = data.validation_split(len(x_train), settings.validation_fraction, settings.seed)
    return x_train[fit], y_train[fit], x_train[val], y_train[val], x_test, y_test


@dataclass
class Subject:
    """A model and its data, opened and checked: what notebooks 03-05 and the command share."""

    classifier: object  # workbench.contract.ImageClassifier
    dataset: object  # workbench.data.ImageDataset
    input_scale: float | None
    x_train: np.ndarray  # training images left after the validation split (stored units)
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    evaluation: variants_mod.Evaluation  # test/validation images in model units, float answers
    name: str  # short name for files and the model server

    def scaled(self, x: np.ndarray) -> np.ndarray:
        """Images in model units (``pixels * input_scale``)."""
        from workbench import contract

        return contract.scale_inputs(x, self.input_scale)

    def describe(self) -> str:
        """What was opened: the model, the data, the split, the float model's accuracy."""
        from workbench import models

        c, e = self.classifier, self.evaluation
        keras_model = c.keras_model if c.keras_model is not None else None
        macs = models.count_macs(keras_model) if keras_model is not None else None
        params = c.describe()["parameters"]
        lines = [
            f"model: {c.path} ({c.saved_by}; input {tuple(c.input_shape)}, {c.num_classes} "
            f"classes"
            + (f", {params:,} parameters" if params else "")
            + (f", {macs / 1e6:.2f} M MACs per image" if macs else "")
            + ")",
            f"  tf-keras for tfmot: {c.keras_note}",
            f"  input: pixels x {self.input_scale:.6g}"
            if self.input_scale is not None
            else "  input: pixels as stored (float32)",
            f"data: {self.dataset.source}",
            f"  {len(self.y_train):,} training / {len(self.y_val):,} validation / "
            f"{len(self.y_test):,} test images, {tuple(self.dataset.x_train.shape[1:])} "
            f"{self.dataset.x_train.dtype}",
            f"float model: test accuracy {e.float_accuracy:.4f}, validation accuracy "
            f"{e.float_val_accuracy:.4f}",
        ]
        return "\n".join(lines)


def open_subject(
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
    *,
    input_scale: float | None = None,
    logits: bool = False,
    class_names: list[str] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> Subject:
    """Open a model and its data, check the pair, split off validation images.

    Args:
        model_path: a Keras image classifier (see :mod:`workbench.contract`); ``None``:
            notebook 02's improved CNN, with the input scale it records (pixels / 255).
        data_path: an ``.npz`` or a folder of class folders
            (:func:`workbench.data.load_image_dataset`); ``None``: CIFAR-10
            (:func:`workbench.data.load_cifar10`: ``$WORKBENCH_CIFAR10``, the cache, or the
            download).
        input_scale: the model gets ``pixels * input_scale`` (None: pixels as stored).
        n_train, n_test: use only the first images of each split.
        validation_fraction, seed: the validation images held out from the training images.

    Raises:
        workbench.contract.ContractError: the model, the data or the pair is wrong.
        workbench.data.DatasetError: the data cannot be read.
    """
    from workbench import contract, data, paths

    if model_path is None:
        model_path = paths.cloud_dir() / "improved_cnn.keras"
        if not Path(model_path).exists():
            raise contract.ContractError(
                f"No model at {model_path}: run notebook 02 to train the cloud model, or "
                "pass model_path to use your own."
            )
        if input_scale is None:
            input_scale = _recorded_input_scale(paths.cloud_dir() / "cloud_model.json")
    if data_path is None:
        dataset = data.load_cifar10()
    else:
        dataset = data.load_image_dataset(data_path, class_names=class_names)
    settings = Settings(
        n_train=n_train, n_test=n_test, validation_fraction=validation_fraction, seed=seed
    )
    x_train, y_train, x_val, y_val, x_test, y_test = split_data(dataset, settings)
    classifier = contract.open_pair(model_path, dataset, logits=logits, input_scale=input_scale)
    evaluation = variants_mod.Evaluation.of(
        classifier, x_test, y_test, x_val=x_val, y_val=y_val, input_scale=input_scale
    )
    stem = Path(model_path).stem if Path(model_path).suffix else Path(model_path).name
    return Subject(
        classifier, dataset, input_scale, x_train, y_train, x_val, y_val, x_test, y_test,
        evaluation, name=stem,
    )  # fmt: skip


def load_edge_model(
    subject: Subject, folder: Path, variant: str | None = None, *, threads: int = 1
):
    """The edge model notebook 03 wrote for this subject (its manifest's default).

    Raises:
        FileNotFoundError: notebook 03 has not run.
        ValueError: the manifest was written for another model (names both).
    """
    from workbench import edge

    manifest = edge.read_manifest(folder)
    made_from = (manifest.get("model") or {}).get("sha256")
    if made_from and made_from != subject.classifier.sha256:
        raise ValueError(
            f"The edge models in {folder} were made from {manifest['model'].get('file')} "
            f"(sha256 {made_from[:12]}...), not from {subject.classifier.path} "
            f"({subject.classifier.sha256[:12]}...): run notebook 03 with the same model_path."
        )
    return edge.load_from_manifest(folder, variant, num_threads=threads)


def _recorded_input_scale(metadata: Path) -> float:
    """The input scale notebook 02 recorded for its model (1/255 when it recorded none)."""
    import json

    if metadata.exists():
        value = json.loads(metadata.read_text()).get("input_scale")
        if isinstance(value, int | float) and value > 0:
            return float(value)
    return 1 / 255


def run(subject: Subject, out: Path, *, settings: Settings, progress: bool = True) -> dict:
    """The four stages on an opened, checked subject; files go under ``out``."""
    from workbench import bench, compare, edge, plots

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
    found = variants_mod.search(
        classifier,
        x_train,
        y_train,
        evaluation,
        input_scale=input_scale,
        budget_pp=settings.budget_pp,
        settings=variant_settings,
        space=settings.space,
        out_dir=out / "edge",
        progress=progress,
    )
    built, best = found.variants, found.winners
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
    links = {k: network.PROFILES[k] for k in settings.links}
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
    edge_model = edge.EdgeModel(edge_variant.blob, num_threads=variant_settings.threads)
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
            "hardware": bench.hardware(),
            "hardware_line": bench.describe_hardware(),
            "settings": asdict(settings),
        },
        "float_model": {
            "test_accuracy": evaluation.float_accuracy,
            "validation_accuracy": evaluation.float_val_accuracy,
        },
        "variants": [_variant_row(v) for v in built],
        "budget_pp": settings.budget_pp,
        "winners": best,
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


def _split_stage(classifier, evaluation, cloud, settings, links, out, figures) -> dict:
    from workbench import collab, plots

    result = collab.split_stage(
        classifier.keras_model,
        evaluation,
        links=links,
        server_overhead_ms=cloud.server_overhead_ms,
        response_bytes=int(cloud.best["response_bytes"]),
        max_cuts=settings.max_cuts,
        repeats=settings.profile_repeats,
        edge_slowdown=settings.edge_slowdown,
        split_link=settings.split_link,
        serving_base=out / "serving_split",
        threads=settings.variants.threads,
        unavailable=None if classifier.keras_model is not None else classifier.keras_note,
    )
    if result["status"] == "ok":
        _save_figure(plots.split_profile(result["profiled"]), figures / "split-profile.png")
    if result.get("run", {}).get("status") == "ok":
        result["run"].pop("probabilities", None)
    result.pop("points", None)
    for key in ("best_per_link", "best_per_link_slow_edge"):
        if key in result:
            result[key] = [{k: v for k, v in b.items() if k != "totals"} for b in result[key]]
    return result


def _cascade_stage(edge_probs, cloud, y_test, edge_variant, link_rows, settings, figures, name):
    from workbench import collab, plots

    thresholds = np.round(np.linspace(0.0, 1.0, 21), 2)
    thresholds[-1] = 1.01  # everything to the cloud
    cloud_ms = {r["key"]: r["cloud_p50_ms"] for r in link_rows}
    sweep = collab.cascade_sweep(
        edge_probs,
        cloud.probabilities,
        y_test,
        thresholds=thresholds,
        edge_ms=edge_variant.p50_ms,
        cloud_ms_per_link=cloud_ms,
    )
    target = cloud.accuracy - settings.cascade_tolerance_pp / 100
    choice = collab.pick_threshold(sweep, target_accuracy=target)
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


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def summary_lines(result: dict) -> list[str]:
    """The assessment's conclusions in a few sentences (console, HTML page)."""
    model, data = result["assessed"]["model"], result["assessed"]["data"]
    winners = result["winners"]
    cascade = result["cascade"]
    splits = result["splits"]
    faster = {r["label"]: r["faster"] for r in result["links"]}
    return [
        f"Model {Path(model['file']).name} (sha256 {model['sha256'][:12]}..., {model['saved_by']}, "
        f"input {tuple(model['input_shape'])}, {model['num_classes']} classes); data "
        f"{data['source']} ({data['train_images']:,} train / {data['validation_images']:,} "
        f"validation / {data['test_images']:,} test images).",
        f"Float model: test accuracy {result['float_model']['test_accuracy']:.4f}. Within "
        f"{result['budget_pp']:g} pp on the validation images, the smallest edge variant is "
        f"{winners['smallest']}, the fastest {winners['fastest']}.",
        "Edge is faster on: "
        + (", ".join(k for k, v in faster.items() if v == "edge") or "no link")
        + "; cloud is faster on: "
        + (", ".join(k for k, v in faster.items() if v == "cloud") or "no link")
        + f" (edge: {result['edge_variant']}).",
        _split_line(splits),
        f"Cascade: threshold {cascade['threshold']:.2f} gives accuracy {cascade['accuracy']:.4f} "
        f"with {cascade['cloud_fraction']:.0%} of requests sent to the cloud.",
        f"{result['assessed']['hardware_line']} Assessment took {result['seconds']:.0f} s.",
    ]


def _split_line(splits: dict) -> str:
    if splits.get("status") != "ok":
        return f"Split computing: skipped ({splits.get('reason')})."
    run = splits.get("run", {})
    best = ", ".join(f"{b['key']}: {b['best_after']}" for b in splits["best_per_link"])
    line = f"Split computing: {len(splits['cut_points'])} valid cuts; best per link {best}."
    if run.get("status") == "ok":
        line += (
            f" Run for real after '{run['after']}': {run['agreement']:.1%} agreement with the "
            "full model."
        )
    return line


def summary(result: dict, out_dir: str | Path) -> str:
    """What ``workbench assess`` prints when it is done."""
    lines = summary_lines(result)
    lines.append(f"Wrote {Path(out_dir) / ASSESSMENT} and {Path(out_dir) / 'index.html'}.")
    return "\n".join(lines)


def write_page(result: dict, path: Path) -> Path:
    """The assessment as one HTML page in the style of ``reports/index.html``."""
    from workbench import report

    summary = summary_lines(result)
    splits, cascade = result["splits"], result["cascade"]
    Section, Table, Figure = report.Section, report.Table, report.Figure
    sections = [
        Section("Summary", paragraphs=summary),
        Section(
            "Edge variants",
            paragraphs=[
                f"Accuracy on {result['assessed']['data']['test_images']:,} test images; "
                f"val_delta_pp is the change on the validation images, which choose the winners. "
                "Skipped variants say why."
            ],
            tables=[Table([_short_row(r) for r in result["variants"]], row_name="variant")],
            figures=[
                Figure("figures/variants-pareto.png", alt="accuracy against size"),
                Figure("figures/variants-latency.png", alt="latency per variant"),
            ],
        ),
        Section(
            "Request encodings (loopback)",
            tables=[Table(result["cloud"]["encodings"], row_name="encoding")],
        ),
        Section("Edge against cloud, per link", tables=[Table(result["links"], row_name="link")]),
    ]
    if splits.get("status") == "ok":
        sections.append(
            Section(
                "Split computing",
                paragraphs=[
                    f"{len(splits['cut_points'])} valid cut points: "
                    + ", ".join(splits["cut_points"])
                    + ".",
                    _split_line(splits),
                ],
                tables=[
                    Table(splits["profiled"], title="Profiled cuts", row_name="after"),
                    Table(splits["best_per_link"], title="Best cut per link", row_name="link"),
                    Table(
                        splits["best_per_link_slow_edge"],
                        title=f"What-if: an edge {splits['edge_slowdown']:g}x slower",
                        row_name="link",
                    ),
                ],
                figures=[Figure("figures/split-profile.png", alt="split profile")],
            )
        )
    else:
        sections.append(Section("Split computing", paragraphs=[_split_line(splits)]))
    sections.append(
        Section(
            "Cascade",
            paragraphs=[summary[-2]],
            tables=[
                Table(
                    [
                        {k: r[k] for k in ("threshold", "accuracy", "cloud_fraction")}
                        for r in cascade["sweep"]
                    ],
                    row_name="threshold",
                )
            ],
            figures=[Figure("figures/cascade.png", alt="cascade")],
        )
    )
    return report.render_page(path, title="Edge or cloud? Assessment", sections=sections)


def _short_row(row: dict) -> dict:
    keep = (
        "variant",
        "status",
        "accuracy",
        "delta_pp",
        "val_delta_pp",
        "bytes",
        "gzip_bytes",
        "p50_ms",
        "agreement_float",
        "reason",
    )
    return {k: row.get(k) for k in keep if k in row}
