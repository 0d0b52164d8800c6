"""What ``assess`` tells: its conclusions in a few lines for the terminal, and an HTML page
in the style of the workbench's report.
"""

from __future__ import annotations

from pathlib import Path

ASSESSMENT = "assessment.json"  # every figure of an assessment, in its output folder


def summary_lines(result: dict) -> list[str]:
    """The assessment's conclusions in a few sentences (console, HTML page)."""
    model, data = result["assessed"]["model"], result["assessed"]["data"]
    winners = result["winners"]
    cascade = result["cascade"]
    splits = result["splits"]
    faster = {r["label"]: r["faster"] for r in result["links"]}
    lines = [
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
    int8 = _int8_line(result)
    return lines[:2] + ([int8] if int8 else []) + lines[2:]


def _int8_line(result: dict) -> str | None:
    """Why int8 disagrees with the float model, when the quantization debugger was asked."""
    row = next((r for r in result["variants"] if r["variant"] == "int8"), None)
    debug = (row or {}).get("quant_debug")
    if not debug:
        return None
    head = f"int8 agrees with the float model on {row['agreement_float']:.1%} of the test images"
    if "error" in debug or not debug.get("layers"):
        return f"{head}; the quantization debugger could not say why ({debug.get('error')})."
    worst = ", ".join(f"{r['layer']} ({r['rmse_over_scale']:.2f})" for r in debug["layers"][:3])
    return (
        f"{head}. Largest int8 errors, in quantization steps (rmse/scale; "
        f"{debug['suspects']} of {debug['operations']} operations above "
        f"{debug['suspect_above']:g}): {worst}. Keeping those layers float or "
        "quantization-aware training (a qat/pqat variant) is what would fix it."
    )


def _split_line(splits: dict) -> str:
    if splits.get("status") != "ok":
        return f"Split computing: skipped ({splits.get('reason')})."
    run = splits.get("run", {})
    best = splits["best_per_device_link"]
    middle = [b for b in best if b["intermediate"]]
    line = (
        f"Split computing: {len(splits['cut_points'])} valid cuts; {len(middle)} of {len(best)} "
        "device and link pairs are fastest with a cut in the middle."
    )
    if run.get("status") == "ok":
        line += (
            f" Run for real after '{run['after']}' ({run['device']}, {run['link']}): "
            f"{run['agreement']:.1%} agreement with the full model."
        )
    return line


def summary(result: dict, out_dir: str | Path) -> str:
    """What ``workbench assess`` prints when it is done."""
    lines = summary_lines(result)
    lines.append(f"Wrote {Path(out_dir) / ASSESSMENT} and {Path(out_dir) / 'index.html'}.")
    return "\n".join(lines)


def write_page(result: dict, path: Path) -> Path:
    """The assessment as one HTML page in the style of ``reports/index.html``."""
    from workbench.report import page

    summary = summary_lines(result)
    splits, cascade = result["splits"], result["cascade"]
    Section, Table, Figure = page.Section, page.Table, page.Figure
    sections = [
        Section("Summary", paragraphs=summary),
        Section(
            "Edge variants",
            paragraphs=[
                f"Accuracy on {result['assessed']['data']['test_images']:,} test images; "
                f"val_delta_pp is the change on the validation images, which choose the winners. "
                "Skipped variants say why."
            ],
            tables=[Table([_short_row(r) for r in result["variants"]], row_name="variant")]
            + _quant_debug_tables(result),
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
                    Table(splits["measured"], title="Profiled cuts", row_name="after"),
                    Table(
                        splits["best_per_device_link"],
                        title="Best cut per device (estimated from its peak) and link",
                        row_name="device",
                    ),
                ],
                figures=[Figure("figures/split-times.png", alt="time by cut")],
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
    return page.render_page(path, title="Edge or cloud? Assessment", sections=sections)


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


def _quant_debug_tables(result: dict) -> list:
    """The int8 variant's worst layers by the quantization debugger, when it was run."""
    from workbench.report import page

    row = next((r for r in result["variants"] if r["variant"] == "int8"), None)
    debug = (row or {}).get("quant_debug") or {}
    if not debug.get("layers"):
        return []
    title = (
        f"Where int8 loses: the {len(debug['layers'])} operations with the largest error "
        f"(rmse/scale, in quantization steps; a rounding error alone is about 0.29), measured "
        f"by TFLite's quantization debugger on {debug['samples']} training images"
    )
    return [page.Table(debug["layers"], title=title, row_name="layer")]
