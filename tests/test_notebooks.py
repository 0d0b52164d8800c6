"""Every notebook, executed top to bottom by papermill in the smoke profile.

A notebook added to ``notebooks/`` is picked up without editing this file; a
notebook with specific figure checks gets them from ``CHECKS`` below, and every
notebook must at least record its figures. Later notebooks read the artifacts
of earlier ones, so each test first runs the notebooks before it (once per session).
Every exercise check a notebook records (``exercise_<n>_ok``) must hold, and a solutions
notebook in ``notebooks/solutions/`` runs after its notebook, its worked answers checked
against that run (``answer_<n>_ok``).
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
    latency = r["latency_ms"]
    assert latency["first_ms"] > 0 and latency["n"] == r["parameters"]["latency_repeats"]
    # the four "predict, then run" exercises, each checked by the notebook itself
    assert exercise_numbers(r) == [1, 2, 3, 4]
    assert r["exercise_1"]["measured"] == pytest.approx(1 / 3)  # k = n: one class for all
    assert r["exercise_2"]["measured"] == 20  # p95 of 21 sorted timings: the 20th
    assert r["exercise_4"]["measured"] == r["footprint"]["training_set_bytes"]
    assert r["batching_gain_x"] > 1 and r["throughput_per_s"] == r["exercise_3"]["measured"]
    matrix = r["confusion_matrix"]
    wrong = sum(map(sum, matrix)) - sum(matrix[i][i] for i in range(len(matrix)))
    assert wrong == round((1 - r["test_accuracy"]) * r["n_test"])
    assert 0.5 <= r["two_feature_test_accuracy"] <= 1.0
    assert "01-decision-regions" in r["figures"], "the widget's figure is also saved static"


def exercise_numbers(r: dict) -> list[int]:
    """The exercises a notebook checked (``exercise_<n>_ok``), each of which must hold."""
    found = {int(m.group(1)): r[k] for k in r if (m := re.fullmatch(r"exercise_(\d+)_ok", k))}
    failed = sorted(n for n, ok in found.items() if ok is not True)
    assert not failed, f"exercise checks that do not hold: {failed}"
    return sorted(found)


def check_02(r: dict) -> None:
    from workbench.core import paths

    for arch in ("seed_cnn", "improved_cnn", "cloud"):
        m = r["models"][arch]
        assert 0.0 <= m["test_accuracy"] <= 1.0 and m["macs"] > 0 and m["parameters"] > 0
        assert m["images_per_second"] > 0
    cloud = r["cloud_model"]
    assert set(cloud) == {"name", "parameters", "macs", "test_accuracy", "images_seen", "seconds"}
    # the cloud model is the large one: at least 5x the edge candidate's compute per image
    assert cloud["macs"] >= 5 * r["models"]["improved_cnn"]["macs"]
    assert r["cloud_macs_ratio"] >= 5
    assert r["resume_epochs_trained"] == 0, "a completed run must resume without retraining"
    assert r["export_reload_identical"] is True
    assert (paths.serving_base() / paths.CLOUD_MODEL_NAME / "1" / "saved_model.pb").exists()
    assert (paths.cloud_dir() / "cloud_model.json").exists()
    assert not list(paths.serving_base().glob(f"{paths.CLOUD_MODEL_NAME}/.*tmp*")), (
        "no half-written export"
    )
    # the four "predict, then run" exercises, each checked by the notebook itself
    assert exercise_numbers(r) == [1, 2, 3, 4]
    assert r["exercise_1"]["measured"] == 16 * 16 * 3 * 3 * 32 * 64  # seed CNN's conv2, 'same'
    assert r["exercise_2"]["measured"] == 8 * 8 * 64 * 128 + 128  # its first dense layer
    assert r["exercise_3"]["measured"] == r["models"]["cloud"]["epochs"]
    d = r["gain_disagreements"]  # the gain is (b - c) / n, its noise the paired standard error
    assert 100 * (d["b"] - d["c"]) / d["n"] == pytest.approx(r["cloud_gain_over_edge_candidate_pp"])
    assert r["exercise_4"]["measured"] == pytest.approx(r["cloud_gain_noise_pp"])


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
    # the five exercises; the demo quantizes per tensor and per channel
    assert exercise_numbers(r) == [1, 2, 3, 4, 5]
    demo = r["quantization_demo"]
    assert demo["per_channel"]["scales"] > 1 and demo["symmetric"]["scales"] == 1
    assert demo["per_channel"]["rms_error"] < demo["symmetric"]["rms_error"]
    assert r["exercise_2"]["measured"] == pytest.approx(0.4375)  # PolynomialDecay halfway
    # pruned, stripped and converted by hand: zeros at the target, paid only after gzip
    hand = r["by_hand"]
    assert abs(hand["pruned_zeros"] - 0.5) < 0.005
    assert hand["pruned_float32_gzip_bytes"] < 0.8 * hand["pruned_float32_bytes"]
    assert hand["pruned_float32_bytes"] >= 4 * hand["parameters"] * 0.95
    assert hand["int8_bytes"] < hand["pruned_float32_bytes"] / 3 and hand["qat_int8_bytes"] > 0


def check_04(r: dict) -> None:
    assert r["load_test"]["failures"] == 0
    assert r["metrics_requests_by_status"].get("200", 0) >= r["load_test"]["requests"]
    winners = r["winner_per_device_link"]  # device -> link -> who answers first
    assert winners and all(
        set(links.values()) <= {"edge", "cloud"} and len(links) == 6 for links in winners.values()
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
    # The edge model (03's pick, from the small CNN) and the cloud model (02's residual
    # network) are different networks trained on the same images: they agree more than two
    # independent classifiers of their accuracies would (right together a * b of the time,
    # wrong alike (1 - a)(1 - b) / 9 with ten classes).
    a, b = r["edge_accuracy"], r["cloud_accuracy"]
    independent = a * b + (1 - a) * (1 - b) / 9
    assert r["edge_cloud_agreement"] > independent, (r["edge_variant"], r["edge_cloud_agreement"])
    points = {(row["batching"], row["clients"]) for row in r["batching"]}
    assert len(points) == len(r["batching"]) >= 4 and all(
        row["failures"] == 0 for row in r["batching"]
    )
    assert r["bandwidth_validation"] or r["bandwidth_skipped_reason"]
    # Judged where the transfer dominates the base time and its measured spread (as in
    # tests/test_netem.py); where it does not ("base-dominated"), the time is the machine's.
    judged = [row for row in r["bandwidth_validation"] if row["verdict"] != "base-dominated"]
    assert judged or not r["bandwidth_validation"], r["bandwidth_validation"]
    for row in judged:  # kept-alive transfers follow bytes / bandwidth (15% plus the noise)
        if row["connection"] == "keep-alive":
            assert row["verdict"] == "within", row
        else:  # a new connection's set-up can overlap the transfer (reported, not hidden)
            assert row["verdict"] in ("within", "overlap"), row
    assert r["netem_validation"] or r["netem_skipped_reason"]
    for v in r["netem_validation"]:  # 15% of the median plus the spread measured on the link
        spread = v["measured_p95_ms"] - v["measured_p50_ms"]
        gap = abs(v["predicted_ms"] - v["measured_p50_ms"])
        assert gap <= 0.15 * v["measured_p50_ms"] + spread, v
    # the four exercises: a device estimate, the 4G latency (p50, p95), Little's law
    assert exercise_numbers(r) == [1, 2, 3, 4]
    links = {row["key"]: row for row in r["links"]}
    assert r["exercise_2"]["measured"] == pytest.approx(links["4g"]["cloud_p50_ms"])
    assert r["exercise_3"]["measured"] == pytest.approx(links["4g"]["cloud_p95_ms"])
    assert r["exercise_4"]["measured"] == r["load_test"]["latency"]["mean_ms"]
    parts = r["agreement_parts"]  # agreement = both right + both wrong with the same class
    assert parts["both_right"] + parts["same_wrong"] == pytest.approx(r["edge_cloud_agreement"])
    for row in r["decision_table"]:  # a device without a latency is not called faster or slower
        if row["edge_p50_ms"] is None:
            assert row["faster"].startswith("cloud (no latency"), row


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
    student = r["student_cascade_choice"]
    assert 0 <= student["cloud_fraction"] <= 1
    assert abs(student["cloud_accuracy"] - r["cloud_accuracy"]) < 1e-9
    best = r["best_split_per_device_link"]  # one row per device class and link
    assert len({row["key"] for row in best}) == 6
    assert len(best) == 6 * len({row["device"] for row in best})
    assert 0.0 <= r["student_int8"]["accuracy"] <= 1.0 and r["student_int8"]["gzip_bytes"] > 0
    students = r["students"]
    assert len(students["gain_test_pp"]["per_seed"]) == len(
        {row["seed"] for row in students["runs"]}
    )
    # the five exercises; the split by hand agrees with the full model as the served one does
    assert exercise_numbers(r) == [1, 2, 3, 4, 5]
    assert r["exercise_4"]["measured"] == 0 and r["exercise_5"]["measured"] == 1
    hand, run = r["split_by_hand"], r["split_run"]
    assert hand["after"] == run["after"] and abs(hand["agreement"] - r["split_agreement"]) <= 0.01
    assert run["modelled_ms"] >= run["best_ms"] - 1e-9, "the run's time is shown against the best"


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
    exercise_numbers(results)  # every exercise check the notebook recorded holds
    saved = paths.reports_dir("figures")
    missing = [f for f in results.get("figures", []) if not (saved / f"{f}.png").exists()]
    assert not missing, f"{name} recorded figures never saved as PNG: {missing}"
    check = CHECKS.get(name[:2])
    if check:
        check(results)
    check_readable(execution.output)


SOLUTIONS = params.solution_names()


@pytest.mark.notebooks
@pytest.mark.parametrize("name", SOLUTIONS)
def test_solution(name: str, workdirs, cifar10_path) -> None:
    """A solutions notebook runs after its notebook, and every worked answer it checks
    against that run holds; every exercise the notebook checked has its answer."""
    from workbench.run import notebooks

    notebook = params.notebook_of(name)
    assert notebook in NOTEBOOKS, f"{name} answers no notebook: there is no {notebook}.ipynb"
    _run(notebook)
    try:
        execution = notebooks.execute(name, profile="smoke", progress=False)
    except notebooks.NotebookFailed as err:
        pytest.fail(str(err), pytrace=False)
    answers = recorder.load_results(name)
    checked = {k: v for k, v in answers.items() if re.fullmatch(r"answer_\w+_ok", k)}
    assert checked, f"{name} checks none of its answers"
    failed = sorted(k for k, ok in checked.items() if ok is not True)
    assert not failed, f"{name}: worked answers that do not hold against the run: {failed}"
    exercises = exercise_numbers(recorder.load_results(notebook))
    unanswered = [n for n in exercises if f"answer_{n}_ok" not in checked]
    assert not unanswered, f"{name} has no checked answer to exercises {unanswered}"
    check_readable(execution.output)


# Library noise a reader must not see (workbench.core.quiet filters each, with the reason),
# and what a reader should never be shown in its place: private class names, numpy reprs.
NOISE = (
    "INFO:tensorflow",
    "Assets written to",
    "fully_quantize:",
    "Gradients do not exist",
    "Statistics for quantized inputs",
    "Created TensorFlow Lite XNNPACK delegate",
    "Please consider providing the trackable_obj",
    "oneDNN custom operations are on",
    "failed call to cuInit",
    "Could not find cuda drivers",
    "All log messages before absl::InitializeLog",
    "only on platforms with AVX-512",
    "is slow compared to the batch time",
    "_DefaultDistributionStrategy",
    "np.str_(",
    "np.float64(",
    "np.int64(",
    "np.float32(",
    "interactive(children=",  # a widget's repr: a static view must show a sentence instead
)
# A tqdm-style bar ("45%|####      | 9/20"): frozen where it stood when the notebook was saved.
PROGRESS_BAR = re.compile(r"\d+%\|.*\| *\d+/\d+")
# pandas cuts a long cell to "the la..." and elides rows or columns with "..." cells.
TRUNCATED_CELL = re.compile(r"<t[dh][^>]*>[^<]*(\.\.\.|\u2026)\s*</t[dh]>")


def shown_texts(out: dict) -> list[str]:
    """What an output shows a reader: a stream's text, or its plain, Markdown and HTML forms."""
    if out.get("output_type") == "stream":
        return [str(out.get("text", ""))]
    data = out.get("data", {})
    return [str(data[m]) for m in ("text/plain", "text/markdown", "text/html") if m in data]


def check_readable(executed) -> None:
    """No cell ends on a value nobody asked to see, no known library noise or numpy repr is
    shown, no progress bar is left frozen, and no table cell is cut short."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "execute_result":
                shown = str(out.get("data", {}).get("text/plain", ""))[:120]
                raise AssertionError(f"{executed.name} cell {i} ends on a stray value: {shown}")
            for text in shown_texts(out):
                noise = [n for n in NOISE if n in text]
                assert not noise, f"{executed.name} cell {i} shows noise {noise}: {text[:300]}"
                bar = PROGRESS_BAR.search(text)
                assert not bar, f"{executed.name} cell {i} keeps a progress bar: {bar.group(0)}"
                cut = TRUNCATED_CELL.search(text)
                assert not cut, f"{executed.name} cell {i} shows a cut table cell: {cut.group(0)}"


def test_notebooks_are_committed_without_outputs() -> None:
    import nbformat

    for name in SOLUTIONS:  # solutions: no outputs either, and a title
        nb = nbformat.read(paths.notebooks_dir() / f"{name}.ipynb", as_version=4)
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.outputs]
        assert not dirty, f"{name} has outputs in cells {dirty}: run nbstripout"
        assert nb.cells[0].source.startswith("# Solutions"), f"{name} must open with its title"
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
