"""Every notebook, executed top to bottom by papermill in the smoke profile.

A notebook added to ``notebooks/`` is picked up without editing this file; a
notebook with specific figure checks gets them from ``CHECKS`` below, and every
notebook must at least record its figures. Later notebooks read the artifacts
of earlier ones, so each test first runs the notebooks before it (once per session).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from notebook_runs import BINDER_BYTES, NOTEBOOKS
from notebook_runs import run_once as _run

from workbench.core import paths
from workbench.report import recorder
from workbench.run import params

# Where this machine allows it, the notebooks run under a real 2 GiB cgroup cap: a notebook
# that does not fit is killed, which is the test that matters. The cgroup also charges the
# page cache (the dataset, TensorFlow's library files), which it evicts under the cap, so its
# own peak sits at the cap; the headroom is checked on the heap, which cannot be evicted: at
# most 1.7 GiB, 300 MiB below Binder's limit. Elsewhere the sampled peak (heap plus shared
# library pages) must stay below the limit.
HEADROOM_BYTES = int(1.7 * 1024**3)


def check_01(r: dict) -> None:
    assert r["test_accuracy"] >= 0.9
    assert r["k"] in r["cv_scores"] or str(r["k"]) in r["cv_scores"]
    assert r["reload_identical"] is True
    assert r["latency_ms"]["p50_ms"] > 0 and r["latency_ms"]["p95_ms"] >= r["latency_ms"]["p50_ms"]
    assert (
        r["footprint"]["training_set_bytes"] == 120 * 4 * 8 + 120 * 8
    )  # 120 rows x 4 float64 + labels


def check_02(r: dict) -> None:
    from workbench.core import paths

    for arch in ("seed_cnn", "improved_cnn"):
        m = r["models"][arch]
        assert 0.0 <= m["test_accuracy"] <= 1.0 and m["macs"] > 0 and m["parameters"] > 0
        assert m["images_per_second"] > 0
    assert r["resume_epochs_trained"] == 0, "a completed run must resume without retraining"
    assert r["export_reload_identical"] is True
    assert (paths.serving_base() / paths.CLOUD_MODEL_NAME / "1" / "saved_model.pb").exists()
    assert (paths.cloud_dir() / "cloud_model.json").exists()
    assert not list(paths.serving_base().glob(f"{paths.CLOUD_MODEL_NAME}/.*tmp*")), (
        "no half-written export"
    )


def check_03(r: dict) -> None:
    from workbench.core import paths
    from workbench.edge import runtime

    variants = {v["variant"]: v for v in r["variants"]}
    for name in ("float32", "dynamic_range", "float16", "int8"):
        assert variants[name]["status"] == "ok", variants[name]
    for name, v in variants.items():
        if v["status"] != "ok":
            assert v["reason"], f"{name} skipped without a reason"
            continue
        # Agreement with the Keras model it was converted from: exact for float, close for
        # quantized ones. The smoke profile's model is trained for a minute (about 40%), so
        # many test images are near-ties that quantization flips; a QAT model's fake
        # quantizers also see batch norm apart from its convolution, which the converter folds.
        exact = name in ("float32", "float16") or name.endswith("_float32")
        floor = 0.99 if exact else 0.90
        assert v["agreement_source"] >= floor, f"{name}: {v['agreement_source']:.3f} < {floor}"
    ladder = sorted(r["sparsity_ladder"], key=lambda row: row["target_sparsity"])
    assert len(ladder) >= 2, "the smoke budget must let the ladder climb at least once"
    for row in ladder:  # the first and last layers stay dense: a little under the target
        assert row["target_sparsity"] - 0.03 <= row["measured_sparsity"] <= row["target_sparsity"]
    assert ladder[-1]["gzip_bytes"] < ladder[0]["gzip_bytes"], "gzip size must shrink"
    zeros = [m for n in variants if (m := re.fullmatch(r"(slim\d+_)?pruned(\d+)_float32", n))]
    # zeros pay only after gzip: about (1 - sparsity) of the size of the model pruned (the
    # slim one when the ladder started from it), a little more since the first convolution
    # and the classifier stay dense (measured: 0.60 at 50%)
    assert len(zeros) == 1
    base, level = f"{zeros[0].group(1) or ''}float32", int(zeros[0].group(2)) / 100
    assert variants[base]["status"] == "ok"
    assert variants[zeros[0].group(0)]["gzip_bytes"] < (1.15 - level) * variants[base]["gzip_bytes"]
    assert any(n.startswith("slim") for n in variants), "structured pruning was tried"
    winners = r["winners"]
    assert winners["smallest"] in variants and winners["fastest"] in variants
    assert r["search_log"] and r["mac_rates"]
    manifest = runtime.read_manifest(paths.edge_dir())
    assert manifest["default"] == winners["fastest"]
    for entry in manifest["models"]:
        assert (paths.edge_dir() / entry["file"]).exists()


def check_04(r: dict) -> None:
    assert r["load_test"]["failures"] == 0
    assert r["metrics_requests_by_status"].get("200", 0) >= r["load_test"]["requests"]
    assert (
        set(r["winner_per_link"].values()) <= {"edge", "cloud"} and len(r["winner_per_link"]) == 6
    )
    payloads = {p["encoding"]: p for p in r["payloads"]}
    assert {"json", "png_b64", "tensor_proto", "tensor_proto_png"} <= set(payloads)
    assert (
        payloads["png_b64"]["request_bytes"]
        < payloads["json"]["request_bytes"]
        < payloads["json_float"]["request_bytes"]
    )
    assert payloads["tensor_proto_png"]["request_bytes"] < payloads["png_b64"]["request_bytes"]
    assert payloads["tensor_proto"]["protocol"] == "grpc"
    assert all(p["compute_p50_ms"] > 0 for p in payloads.values())
    # The default edge model is the fastest within 03's accuracy budget: the same weights
    # (a plain conversion) agree with the cloud on most images; a slimmed or pruned model is a
    # different network of about the same accuracy, and far above chance agreement (10%).
    same_weights = r["edge_variant"] in ("float32", "float16", "dynamic_range", "int8")
    floor = 0.8 if same_weights else 0.35
    assert r["edge_cloud_agreement"] >= floor, (r["edge_variant"], r["edge_cloud_agreement"])
    points = {(row["batching"], row["clients"]) for row in r["batching"]}
    assert len(points) == len(r["batching"]) >= 4 and all(
        row["failures"] == 0 for row in r["batching"]
    )
    assert r["bandwidth_validation"] or r["bandwidth_skipped_reason"]
    for row in r["bandwidth_validation"]:  # kept-alive transfers follow bytes / bandwidth
        if row["connection"] == "keep-alive":
            assert abs(row["error"]) <= 0.15, row
        else:  # a new connection's set-up can overlap the transfer (reported, not hidden)
            assert row["verdict"] in ("within", "overlap"), row
    assert r["netem_validation"] or r["netem_skipped_reason"]
    for v in r["netem_validation"]:
        assert v["error"] <= 0.15, v


def check_05(r: dict) -> None:
    assert r["split_agreement"] >= 0.98
    assert r["cut_points"][0] == "input" and len(r["cut_points"]) >= 3
    assert all(400 <= row["status"] < 500 and row["error"] for row in r["split_refusals"])
    sweep = r["cascade_sweep"]
    assert sweep[0]["cloud_fraction"] == 0 and abs(sweep[0]["accuracy"] - r["edge_accuracy"]) < 1e-9
    assert (
        sweep[-1]["cloud_fraction"] == 1 and abs(sweep[-1]["accuracy"] - r["cloud_accuracy"]) < 1e-9
    )
    fractions = [row["cloud_fraction"] for row in sweep]
    assert fractions == sorted(fractions)
    student = r["student_cascade_sweep"]
    assert (
        student[-1]["cloud_fraction"] == 1
        and abs(student[-1]["accuracy"] - r["cloud_accuracy"]) < 1e-9
    )
    assert len(r["best_split_per_link"]) == 6
    assert 0.0 <= r["student_int8"]["accuracy"] <= 1.0 and r["student_int8"]["gzip_bytes"] > 0
    students = r["students"]
    assert len(students["gain_test_pp"]["per_seed"]) == len(
        {row["seed"] for row in students["runs"]}
    )


CHECKS: dict[str, Callable[[dict], None]] = {
    "01": check_01,
    "02": check_02,
    "03": check_03,
    "04": check_04,
    "05": check_05,
}


@pytest.mark.notebooks
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook(name: str, workdirs, cifar10_path) -> None:
    execution = _run(name)
    assert execution.output.exists()
    mib = f"{execution.peak_memory_bytes / 2**20:.0f} MiB ({execution.peak_private_bytes / 2**20:.0f} MiB heap)"
    assert 0 < execution.peak_private_bytes <= execution.peak_memory_bytes, mib
    assert execution.peak_private_bytes <= HEADROOM_BYTES, f"{name} peaked at {mib}"
    if execution.limit_bytes:  # it ran to the end inside the cap: it fits
        assert execution.limit_bytes == BINDER_BYTES and execution.limit_peak_bytes > 0
    else:
        assert execution.peak_memory_bytes < BINDER_BYTES, f"{name} peaked at {mib}"
    results = recorder.load_results(name)
    assert results.get("summary_keys"), f"{name} recorded no summary figures"
    for key in results["summary_keys"]:
        assert results.get(key) is not None, (
            f"{name} lists {key} as a key figure but never recorded it"
        )
    check = CHECKS.get(name[:2])
    if check:
        check(results)
    check_readable(execution.output)


# Library noise a reader must not see (workbench.core.quiet filters each, with the reason).
NOISE = (
    "INFO:tensorflow",
    "Assets written to",
    "fully_quantize:",
    "Gradients do not exist",
    "Statistics for quantized inputs",
    "Created TensorFlow Lite XNNPACK delegate",
    "Please consider providing the trackable_obj",
)


def check_readable(executed) -> None:
    """No cell ends on a value nobody asked to see, and no known library noise is shown."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "execute_result":
                shown = str(out.get("data", {}).get("text/plain", ""))[:120]
                raise AssertionError(f"{executed.name} cell {i} ends on a stray value: {shown}")
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            noise = [n for n in NOISE if n in text]
            assert not noise, f"{executed.name} cell {i} shows library noise {noise}: {text[:300]}"


def test_notebooks_are_committed_without_outputs() -> None:
    import nbformat

    for name in NOTEBOOKS:
        nb = nbformat.read(paths.notebooks_dir() / f"{name}.ipynb", as_version=4)
        dirty = [
            i
            for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (c.outputs or c.execution_count)
        ]
        assert not dirty, f"{name} has outputs in cells {dirty}: run nbstripout"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), (
            f"{name} must open with a title"
        )
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        titles = [line for line in text.splitlines() if line.startswith("# ")]
        assert len(titles) == 1, (
            f"{name} has {len(titles)} top-level headings, e.g. {titles[:3]}: one title, "
            "then '##' sections (a '# ' prefix on prose lines renders each as a heading)"
        )
        for heading in ("You will learn", "## Results", "## What to try next"):
            assert heading.lower() in text.lower(), f"{name} lacks the skeleton section '{heading}'"


def test_smoke_profile_names_real_parameters() -> None:
    """Every smoke override must exist in the notebook's parameters cell (no silent typos)."""
    for name in NOTEBOOKS:  # raises ProfileError naming the parameter a notebook lacks
        params.profile_parameters(name, "smoke")
