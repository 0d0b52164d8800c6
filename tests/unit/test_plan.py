"""The time budget: estimates from the work each notebook's parameters ask for (a stub probe,
no TensorFlow), recorded runs scaled by the work ratio, the progress line, runs.json."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from notebook_runs import recorded_run

from workbench import cli
from workbench.core import machine
from workbench.models.subject import validation_share
from workbench.report import page
from workbench.run import notebooks, params, probe, workload
from workbench.run.estimates import (
    Estimate,
    Plan,
    Term,
    estimate_from_probe,
    make_plan,
    read_runs,
    scale_recorded,
)
from workbench.run.progress import Progress

STUB = probe.Rates(
    train_ips={"improved_cnn": 400.0, "seed_cnn": 1500.0, "student_cnn": 2000.0, "resnet": 80.0},
    first_step_s={"improved_cnn": 3.0, "seed_cnn": 1.5, "student_cnn": 1.5, "resnet": 6.0},
    predict_ips=2000.0,
    tflite_ms=0.5,
    latency_ms=0.6,
    convert_s=0.7,
    import_s=6.0,
    probe_s=12.0,
)
SUBSET = workload.Environment(n_train=5438, n_test=1017)
# the subset's training images after the validation split notebooks 02-05 hold out
SUBSET_FIT = 5438 - int(round(validation_share(5438) * 5438))


def stub_probe() -> probe.Rates:
    return STUB


def no_probe() -> probe.Rates:
    raise AssertionError("the probe must not run here")


def no_links(names):
    return {}


@pytest.fixture
def subset_counts(tmp_path, monkeypatch):
    """An .npz with the subset's label counts (and one image each: only headers are read)."""
    path = tmp_path / "counts.npz"
    np.savez(
        path,
        x_train=np.zeros((1, 32, 32, 3), np.uint8),
        y_train=np.zeros(5438, np.int64),
        x_test=np.zeros((1, 32, 32, 3), np.uint8),
        y_test=np.zeros(1017, np.int64),
    )
    monkeypatch.setenv("WORKBENCH_CIFAR10", str(path))
    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("WORKBENCH_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("WORKBENCH_ARTIFACTS", str(tmp_path / "artifacts"))
    return path


def terms(name: str, overrides: dict | None = None, env=SUBSET) -> dict[str, Term]:
    model = workload.MODELS[name]
    values = params.notebook_values(name, "full") | (overrides or {})
    work = model.terms({p: values[p] for p in model.uses}, env)
    return {t.label: t for t in estimate_from_probe(name, work, STUB)}


def test_every_parameter_a_work_model_reads_exists_in_its_notebook():
    assert set(workload.MODELS) == set(params.notebook_names())
    for name, model in workload.MODELS.items():
        declared = params.notebook_parameters(name)
        missing = [p for p in model.uses if p not in declared]
        assert not missing, f"{name} lacks {missing}: update workbench.run.workload.MODELS"
        for profile in ("full", "smoke"):  # each model prices its notebook's real values
            values = params.notebook_values(name, profile)
            work = model.terms({p: values[p] for p in model.uses}, SUBSET)
            assert work and all(w.quantity >= 0 for w in work)


def test_the_training_term_scales_with_the_images_asked_for():
    base = terms("02-cloud-cifar10-cnn", {"improved_images": 147_000})
    double = terms("02-cloud-cifar10-cnn", {"improved_images": 2 * 147_000})
    label = "improved CNN training"
    per_epoch = SUBSET_FIT  # the subset's training images after the validation split
    epochs = round(147_000 / per_epoch)  # epochs_for: the nearest whole number of epochs
    assert base[label].quantity == epochs * per_epoch
    assert double[label].seconds / base[label].seconds == pytest.approx(2.0, rel=0.03)
    assert base[label].seconds == pytest.approx(epochs * per_epoch / 400)
    assert double["seed CNN training"] == base["seed CNN training"]
    # the same work on the full dataset: a tenth of the epochs, about the same images
    full = terms(
        "02-cloud-cifar10-cnn", {"improved_images": 147_000}, workload.Environment(50_000, 10_000)
    )
    assert full[label].quantity == 3 * 45_000
    assert full[label].seconds == pytest.approx(base[label].seconds, rel=0.1)


def test_training_a_checkpoint_already_holds_is_not_counted(subset_counts):
    per_epoch = SUBSET_FIT  # the subset's training images after the validation split
    budget = {"improved_images": 30 * per_epoch}  # 30 epochs of them

    def improved(*checkpoints) -> float:
        env = workload.Environment(5438, 1017, checkpoints=checkpoints)
        return terms("02-cloud-cifar10-cnn", budget, env)["improved CNN training"].quantity

    assert improved(("improved_cnn", 30, 30 * per_epoch)) == 0
    assert improved(("improved_cnn", 10, 10 * per_epoch)) == 20 * per_epoch  # resumed
    assert improved(("improved_cnn", 3, 3 * 45_000)) == 30 * per_epoch  # another dataset
    assert improved(("seed_cnn", 30, 30 * per_epoch)) == 30 * per_epoch
    # what the plan finds on disk: train.fit's state file
    from workbench.cloud.train import epochs_for

    values = params.notebook_values("02-cloud-cifar10-cnn", "full")
    planned = epochs_for(values["improved_images"], per_epoch)
    state = subset_counts.parent / "artifacts" / "cloud" / "checkpoints" / "improved_cnn-abc"
    state.mkdir(parents=True)
    (state / "state.json").write_text(
        json.dumps(
            {"architecture": "improved_cnn", "epoch": planned, "images_seen": planned * per_epoch}
        )
    )
    assert workload.find_checkpoints() == (("improved_cnn", planned, planned * per_epoch),)
    found = make_plan(
        ["02-cloud-cifar10-cnn"], "full", probe_fn=stub_probe, runs={}, environment=no_links
    )
    assert f"improved_cnn {planned} of {planned} epochs" in found.describe()
    assert found.estimates["02-cloud-cifar10-cnn"].work["improved CNN training"] == 0
    assert "batch" not in found.describe()  # the notebook's batch sizes are the probe's
    wide = workload.MODELS["02-cloud-cifar10-cnn"].explain(
        values | {"improved_batch_size": 128}, workload.Environment(5438, 1017)
    )
    assert wide == [
        "the probe trained improved_cnn at batch 64, this run uses 128: its rate differs"
    ]


def test_compression_work_counts_every_variant_of_the_search():
    space = {"sparsities": [0.5, 0.7, 0.8, 0.9], "cluster_counts": [16, 8]}
    base = terms("03-compress-for-the-edge", space | {"slim_fractions": [0.25, 0.5]})
    # 4 post-training + QAT + 2 fractions x (float32, int8, dynamic-range) + 4 levels
    # + pruned float32, all layers, PQAT + 2 clusters
    assert base["TFLite conversions"].quantity == 4 + 1 + 2 * 3 + 4 + 3 + 2
    assert base["set-ups: clustering + PCQAT"].quantity == 2
    # the ladder's four rungs (on the slim model), the ends pruned too (one rung)
    assert base["fine-tuning: pruning"].quantity == (4 + 1) * 150 * 64
    more = terms("03-compress-for-the-edge", {"prune_steps": 300})
    less = terms("03-compress-for-the-edge", {"prune_steps": 150})
    assert more["fine-tuning: pruning"].seconds == pytest.approx(
        2 * less["fine-tuning: pruning"].seconds
    )
    students = {"distill_seeds": [0, 1, 2], "student_steps": 1500, "alphas": [0.5]}
    wider = terms("05-edge-cloud-collaboration", students | {"temperatures": [2.0, 4.0, 8.0]})
    narrow = terms("05-edge-cloud-collaboration", students | {"temperatures": [2.0, 4.0]})
    assert wider["student training"].quantity == 3 * 4 * 1500 * 64
    assert narrow["student training"].quantity == 3 * 3 * 1500 * 64
    assert narrow["teacher answers while distilling"].quantity == 3 * 2 * 1500 * 64


def test_scoring_through_the_server_is_priced_per_test_image():
    from dataclasses import replace

    small = terms("04-edge-vs-cloud")["scoring through the server"]
    large = terms("04-edge-vs-cloud", env=replace(SUBSET, n_test=10_000))
    assert small.quantity == SUBSET.n_test
    assert large["scoring through the server"].seconds == pytest.approx(
        small.seconds * 10_000 / SUBSET.n_test
    )


def test_smoke_is_shorter_than_full_for_every_notebook(subset_counts):
    names = params.notebook_names()
    kw = dict(probe_fn=stub_probe, runs={}, environment=no_links)
    smoke = make_plan(names, "smoke", **kw)
    full = make_plan(names, "full", **kw)
    assert [d.n_train for d in full.data] == [5438] and full.data[0].n_test == 1017
    for name in names:
        assert smoke.estimates[name].basis == "probe"
        assert 0 < smoke.estimates[name].seconds < full.estimates[name].seconds, name
    assert smoke.total_s < full.total_s
    text = full.describe()
    assert "5,438 training and 1,017 test images (read from the .npz headers)" in text
    assert "improved CNN training" in text and "images at 400 images/s = " in text
    assert "upper bound" in text and text.splitlines()[-1].startswith("  total")


def test_without_the_probe_there_is_no_estimate_and_it_says_so(subset_counts):
    names = ["01-edge-iris-knn"]
    quiet = make_plan(names, "smoke", measure=False, probe_fn=no_probe, runs={})
    assert quiet.estimates[names[0]].seconds is None
    assert "--no-estimate" in quiet.probe_note and "--no-estimate" in quiet.describe()

    def broken() -> probe.Rates:
        raise probe.ProbeError("the throughput probe failed (exit 1: boom)")

    failed = make_plan(names, "smoke", probe_fn=broken, runs={})
    assert failed.estimates[names[0]].seconds is None
    assert "boom" in failed.describe()


def test_a_recorded_run_is_scaled_by_the_work_ratio(subset_counts):
    name = "02-cloud-cifar10-cnn"
    first = make_plan([name], "full", probe_fn=stub_probe, runs={})
    estimate = first.estimates[name]
    recorded = {"profile": "full", "seconds": 1000.0, **estimate.record()}
    assert recorded["machine"] == machine.machine_id()
    again = make_plan([name], "full", probe_fn=no_probe, runs={name: recorded})
    assert again.estimates[name].seconds == pytest.approx(1000.0)
    assert again.estimates[name].basis.startswith("recorded run (full profile, 16:40) x work")
    assert "not needed" in again.probe_note

    work = dict(recorded["work"])
    work["improved CNN training"] *= 2
    seconds, ratio, scaled = scale_recorded(recorded, work)
    train = recorded["estimate_terms"]["improved CNN training"]
    assert ratio == pytest.approx(1 + train / sum(recorded["estimate_terms"].values()))
    assert seconds == pytest.approx(1000.0 * ratio)
    assert scaled["improved CNN training"] == pytest.approx(2 * train)
    # too far from the recorded work, another machine, or another work model: not used
    work["improved CNN training"] *= 50
    assert scale_recorded(recorded, work) is None
    assert scale_recorded(recorded | {"work": {"epochs": 3}}, work) is None
    other = make_plan(
        [name], "full", probe_fn=stub_probe, runs={name: recorded | {"machine": "elsewhere"}}
    )
    assert other.estimates[name].basis == "probe"


def test_runs_json_gains_the_estimate_next_to_the_seconds(subset_counts, tmp_path):
    name = "02-cloud-cifar10-cnn"
    estimate = make_plan([name], "smoke", probe_fn=stub_probe, runs={}).estimates[name]
    output = tmp_path / "reports" / "executed" / f"{name}.ipynb"
    execution = notebooks.Execution(name, output, 95.0, 2**30, 2**29)
    notebooks.record_run(execution, "smoke", estimate.record())
    runs = json.loads((tmp_path / "reports" / "results" / "runs.json").read_text())
    entry = runs[name]
    assert entry["seconds"] == 95.0 and entry["estimate_s"] == round(estimate.seconds, 1)
    assert entry["estimate_basis"] == "probe"
    assert entry["work"]["improved CNN training"] == 5400
    assert set(entry["estimate_terms"]) == set(entry["work"])
    assert recorded_run(name) == execution  # what the tests read back is unchanged
    assert read_runs() == runs


def clocked(plan_: Plan, *, interactive: bool):
    now = [0.0]
    out = io.StringIO()
    progress = Progress(
        plan_, stream=out, interactive=interactive, clock_fn=lambda: now[0], thread=False
    )
    return progress, out, now


def two_notebooks() -> Plan:
    estimates = {
        "01-a": Estimate("01-a", 100.0, "probe"),
        "02-b": Estimate("02-b", 300.0, "probe"),
    }
    return Plan("full", [], estimates, STUB, "stub")


def test_progress_into_a_log_writes_a_line_every_30_s():
    progress, out, now = clocked(two_notebooks(), interactive=False)
    progress.start("01-a")
    for second in range(1, 91):
        now[0] = float(second)
        progress.tick()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert lines[0].startswith("    ... [1/2] 01-a 0:30 / ~1:40 | run 0:30, ~6:10 left, ETA ")
    assert "(over)" not in lines[2] and "~5:10 left" in lines[2]
    now[0] = 180.0
    # 80 s over on a 100 s estimate, with a minute counted on target: later ones x (240 / 160)
    assert progress.finish("01-a", 180.0) == (
        "    estimate 1:40, took 3:00 (1.80x); later estimates x1.50; remaining notebooks now ~7:30"
    )
    assert progress.estimate("02-b") == pytest.approx(450.0)
    progress.start("02-b")
    now[0] = 190.0
    progress.tick()
    assert len(out.getvalue().splitlines()) == 3  # the next line comes 30 s into 02-b
    now[0] = 210.0
    progress.tick()
    assert "[2/2] 02-b 0:30 / ~7:30 | run 3:30, ~7:00 left" in out.getvalue().splitlines()[-1]
    assert progress.finish("02-b", 200.0).startswith("    estimate 7:30 (planned 5:00), took 3:20")


def test_a_notebook_running_over_raises_the_later_estimates():
    estimates = {n: Estimate(n, 100.0, "probe") for n in ("01-a", "02-b", "03-c")}
    progress, out, now = clocked(Plan("full", [], estimates, STUB, "stub"), interactive=False)
    progress.start("01-a")
    now[0] = 40.0
    assert progress.remaining() == pytest.approx(60 + 200)
    now[0] = 200.0  # 100 s over: the two later ones as if 01-a took 200 s (+ a minute on target)
    assert progress.remaining() == pytest.approx(2 * 100 * (200 + 60) / (100 + 60))
    assert progress.estimate("02-b") == pytest.approx(100.0)  # not rescaled until 01-a ends


def test_progress_on_a_terminal_redraws_one_line():
    progress, out, now = clocked(two_notebooks(), interactive=True)
    progress.start("01-a")
    for second in range(1, 6):
        now[0] = float(second)
        progress.tick()
    text = out.getvalue()
    assert text.count("\r") == 5 and "\n" not in text
    progress.write("==> a line of its own")
    assert out.getvalue().endswith("\r==> a line of its own\n")
    now[0] = 120.0
    progress.tick()
    assert "2:00 / ~1:40 (over)" in out.getvalue()
    progress.close()


def test_run_all_prints_the_plan_and_records_the_estimate(subset_counts, tmp_path, monkeypatch):
    names = ["01-edge-iris-knn", "02-cloud-cifar10-cnn"]
    monkeypatch.setattr(probe, "probe", stub_probe)
    monkeypatch.setattr(params, "notebook_names", lambda: names)

    def execute(name, *, profile, memory_limit, progress, record):
        execution = notebooks.Execution(name, tmp_path / f"{name}.ipynb", 10.0, 0, 0)
        notebooks.record_run(execution, profile, record)
        return execution

    monkeypatch.setattr(notebooks, "execute", execute)
    monkeypatch.setattr(notebooks, "to_html", lambda output: output)
    monkeypatch.setattr(page, "build_index", lambda: tmp_path / "index.html")
    monkeypatch.setattr(page, "summary_rows", lambda: [])
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert cli.main(["run", "--profile", "smoke"]) == 0
    text = out.getvalue()
    assert text.index("plan (smoke profile)") < text.index("==> 01-edge-iris-knn")
    assert "5,438 training and 1,017 test images" in text
    assert "later estimates x" in text
    runs = read_runs()
    assert all(runs[n]["estimate_basis"] == "probe" and runs[n]["estimate_s"] > 0 for n in names)

    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path / "elsewhere"))  # no recorded runs
    monkeypatch.setattr(probe, "probe", no_probe)
    out.truncate(0)
    assert cli.main(["run", "--profile", "smoke", "--no-estimate"]) == 0
    assert "throughput: not measured (--no-estimate)" in out.getvalue()
    assert read_runs()[names[0]]["estimate_basis"].startswith("no estimate")


def test_the_probe_process_answer_is_read_or_refused(monkeypatch):
    import subprocess
    from dataclasses import asdict

    answers = []

    def run(cmd, **kw):
        assert cmd[1:] == ["-m", "workbench.run.probe"]
        return answers.pop(0)

    monkeypatch.setattr(subprocess, "run", run)
    values = {k: v for k, v in asdict(STUB).items() if k != "probe_s"}
    answers.append(subprocess.CompletedProcess([], 0, "TF noise\n" + json.dumps(values), ""))
    rates = probe.probe()
    assert rates.train_ips == STUB.train_ips and rates.probe_s >= 0
    assert rates.slowdown == pytest.approx(0.625)  # the middle of 0.64, 0.625, 0.235
    answers.append(subprocess.CompletedProcess([], 1, "", "Traceback...\nImportError: no tf\n"))
    with pytest.raises(probe.ProbeError, match=r"exit 1: ImportError: no tf"):
        probe.probe()
    answers.append(subprocess.CompletedProcess([], 0, '{"train_ips": {}}', ""))
    with pytest.raises(probe.ProbeError, match="answered"):
        probe.probe()
