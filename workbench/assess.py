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
    "default": Settings(),
    "smoke": Settings(
        variants=variants_mod.Settings(
            prune_steps=20,
            cluster_steps=10,
            qat_steps=10,
            sparsity=0.5,
            calibration_samples=100,
            latency_repeats=30,
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
    from workbench import atomic, contract, data

    start = time.perf_counter()
    settings = settings or Settings()
    out_dir = Path(out_dir).expanduser()
    _check_out_dir(out_dir)
    unknown = [k for k in (*settings.links, settings.split_link) if k not in network.PROFILES]
    if unknown:
        raise AssessError(f"Unknown link(s) {unknown}; choose from {', '.join(network.PROFILES)}.")
    dataset = data.load_image_dataset(data_path, class_names=class_names)
    classifier = contract.open_pair(model_path, dataset, logits=logits, input_scale=input_scale)
    with atomic.temp_dir(out_dir) as tmp:
        result = run(
            classifier, dataset, tmp, settings=settings, input_scale=input_scale, progress=progress
        )
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
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(x_train))
    n_val = int(round(settings.validation_fraction * len(order)))
    val, fit = order[:n_val], order[n_val:]
    return x_train[fit], y_train[fit], x_train[val], y_train[val], x_test, y_test


def run(
    classifier,
    dataset,
    out: Path,
    *,
    settings: Settings,
    input_scale: float | None,
    progress: bool = True,
) -> dict:
    """The four stages on an opened, checked pair; files go under ``out``."""
    from workbench import bench, compare, edge, plots

    stages = _Stages(progress)
    x_train, y_train, x_val, y_val, x_test, y_test = split_data(dataset, settings)
    evaluation = variants_mod.Evaluation.of(
        classifier, x_test, y_test, x_val=x_val, y_val=y_val, input_scale=input_scale
    )
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)

    # 1. compress
    stages.start("compress: build and measure every edge variant")
    variant_settings = replace(settings.variants, seed=settings.seed)
    built = variants_mod.build_variants(
        classifier,
        x_train,
        y_train,
        evaluation,
        input_scale=input_scale,
        settings=variant_settings,
        out_dir=out / "edge",
        progress=progress,
    )
    best = variants_mod.winners(built, settings.budget_pp)
    edge_name = best["fastest"] or "float32"
    edge_variant = next(v for v in built if v.variant == edge_name)
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

    model = classifier.keras_model
    if model is None:
        return {
            "status": "skipped",
            "reason": f"needs the model in tf-keras: {classifier.keras_note}",
        }
    try:
        points = collab.cut_points(model)
    except ValueError as err:
        return {"status": "skipped", "reason": str(err)}
    chosen = collab.choose_cuts(points, settings.max_cuts)
    rows = collab.profile_splits(
        model,
        evaluation.x_test[:8],
        threads=settings.variants.threads,
        repeats=settings.profile_repeats,
        points=chosen,
    )
    response_bytes = int(cloud.best["response_bytes"])
    overhead = cloud.server_overhead_ms
    best = collab.best_splits(
        rows, links, server_overhead_ms=overhead, response_bytes=response_bytes
    )
    slow_rows = [{**r, "edge_ms": r["edge_ms"] * settings.edge_slowdown} for r in rows]
    best_slow = collab.best_splits(
        slow_rows, links, server_overhead_ms=overhead, response_bytes=response_bytes
    )
    _save_figure(plots.split_profile(rows), figures / "split-profile.png")
    result = {
        "status": "ok",
        "cut_points": [p.after for p in points],
        "profiled": rows,
        "server_overhead_ms": overhead,
        "best_per_link": [{k: v for k, v in b.items() if k != "totals"} for b in best],
        "edge_slowdown": settings.edge_slowdown,
        "best_per_link_slow_edge": [
            {k: v for k, v in b.items() if k != "totals"} for b in best_slow
        ],
    }
    link = next((b for b in best_slow if b["key"] == settings.split_link), best_slow[0])
    try:
        cut = collab.best_intermediate_cut(slow_rows, link["totals"])
    except ValueError as err:
        result["run"] = {"status": "skipped", "reason": str(err)}
        return result
    run = collab.run_split(
        model,
        cut["after"],
        x_calibration=evaluation.x_val[:256] if len(evaluation.x_val) else evaluation.x_test[:256],
        x_test=evaluation.x_test,
        reference_probs=evaluation.float_probs,
        serving_base=out / "serving_split",
        threads=settings.variants.threads,
    )
    run.pop("probabilities")
    result["run"] = {"status": "ok", "link": link["key"], **run}
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
