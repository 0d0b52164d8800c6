"""The runner: profiles checked against the notebooks' parameters, the data checked before any
notebook starts, failures reported from papermill's fields, runs recorded atomically."""

from __future__ import annotations

import nbformat
import numpy as np
import pytest
from notebook_runs import recorded_run

from workbench import cli
from workbench.core import paths
from workbench.data import cifar10, datasets
from workbench.run.notebooks import Execution, NotebookFailed, _failure_message, execute, record_run
from workbench.run.params import ProfileError, check_data, notebook_parameters, profile_parameters

MiB = 2**20


@pytest.fixture
def notebooks(tmp_path, monkeypatch):
    """A notebooks folder with one tiny notebook reading CIFAR-10, and a smoke profile."""
    folder = tmp_path / "notebooks"
    (folder / "params").mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("n = 3  # how many\ncifar10_path = None  # the data")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny"), params, nbformat.v4.new_code_cell("n")]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    nbformat.write(nb, folder / "01-tiny.ipynb")
    (folder / "params" / "smoke.yaml").write_text("01-tiny:\n  n: 1\n")
    monkeypatch.setattr(paths, "notebooks_dir", lambda: folder)
    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("WORKBENCH_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.delenv("WORKBENCH_CIFAR10", raising=False)
    monkeypatch.setattr(cifar10, "CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    return folder


def test_parameters_are_read_with_papermill(notebooks):
    declared = notebook_parameters("01-tiny")
    assert set(declared) == {"n", "cifar10_path"}
    assert declared["n"]["default"] == "3" and declared["n"]["help"] == "how many"
    assert profile_parameters("01-tiny", "smoke") == {"n": 1}
    assert profile_parameters("01-tiny", "full") == {}


def test_a_profile_setting_an_undeclared_parameter_is_refused(notebooks):
    (notebooks / "params" / "smoke.yaml").write_text("01-tiny:\n  n: 1\n  epochs: 2\n")
    with pytest.raises(ProfileError, match=r"sets \['epochs'\] for 01-tiny"):
        profile_parameters("01-tiny", "smoke")
    with pytest.raises(ProfileError, match="No profile file"):
        profile_parameters("01-tiny", "nightly")


def test_missing_data_is_one_message_before_any_notebook(notebooks, capsys):
    with pytest.raises(datasets.DatasetError, match="No CIFAR-10 found"):
        check_data(["01-tiny"])
    assert cli.main(["run", "--profile", "smoke", "01-tiny"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("No CIFAR-10 found") and "WORKBENCH_CIFAR10" in err
    assert "Traceback" not in err and "==>" not in out  # no notebook started
    assert not (notebooks.parent / "reports" / "executed").exists()


def test_data_named_by_the_profile_is_checked(notebooks, tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
        "y_train": np.arange(4),
        "x_test": rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
        "y_test": np.arange(2),
    }
    np.savez(tmp_path / "d.npz", **arrays)
    (notebooks / "params" / "smoke.yaml").write_text(
        f"01-tiny:\n  cifar10_path: {tmp_path}/d.npz\n"
    )
    assert check_data(["01-tiny"], "smoke") == [f"{tmp_path}/d.npz (via the path you passed)"]
    (notebooks / "params" / "smoke.yaml").write_text("01-tiny:\n  cifar10_path: /nowhere.npz\n")
    with pytest.raises(datasets.DatasetError, match="not found at /nowhere.npz"):
        check_data(["01-tiny"], "smoke")


def test_a_failure_message_comes_from_papermills_fields(tmp_path):
    from papermill.exceptions import PapermillExecutionError

    err = PapermillExecutionError(
        cell_index=4,
        exec_count=7,
        source="x = 1 / 0",
        ename="ZeroDivisionError",
        evalue="division by zero",
        traceback=["\x1b[0;31mZeroDivisionError\x1b[0m Traceback", "----> 1 x = 1 / 0"],
    )
    message = _failure_message("09-x", err, tmp_path / "09-x.ipynb")
    assert message.startswith("Notebook 09-x failed in cell [7] (ZeroDivisionError: division by")
    assert "x = 1 / 0" in message and "\x1b[" not in message
    assert message.endswith(f"Executed copy: {tmp_path / '09-x.ipynb'}")
    setup = PapermillExecutionError(
        4, 7, "load()", "DatasetError", "No CIFAR-10 found (...)", ["tb"]
    )
    short = _failure_message("09-x", setup, tmp_path / "09-x.ipynb")
    assert short.splitlines()[0] == "Notebook 09-x failed in cell [7]: No CIFAR-10 found (...)"
    assert "tb" not in short and "load()" not in short


def test_a_recorded_run_reads_back(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path))
    sent = Execution(
        "09-x",
        tmp_path / "executed" / "09-x.ipynb",
        12.3,
        900 * MiB,
        500 * MiB,
        2048 * MiB,
        1500 * MiB,
    )
    record_run(sent, "smoke")
    assert recorded_run("09-x") == sent
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["runs.json"]
    with pytest.raises(KeyError, match="No recorded run of 10-y"):
        recorded_run("10-y")


@pytest.mark.slow
def test_a_failing_cell_is_reported_with_its_source(notebooks, tmp_path):
    nb = nbformat.read(notebooks / "01-tiny.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("ratio = n / (n - n)"))
    nbformat.write(nb, notebooks / "01-tiny.ipynb")
    with pytest.raises(NotebookFailed) as err:
        execute("01-tiny", profile="smoke", out_dir=tmp_path / "out", progress=False)
    message = str(err.value)
    assert (
        "failed in cell [4] (ZeroDivisionError: division by zero)" in message
    )  # after the injected cell
    assert "ratio = n / (n - n)" in message and "\x1b[" not in message
    assert (tmp_path / "out" / "01-tiny.ipynb").exists()
