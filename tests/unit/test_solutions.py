"""Solutions notebooks: found beside the notebooks, never run by `make run`, each answering
a notebook that exists (workbench.run.params)."""

import json

import pytest

from workbench.run import params


def write_notebook(path, title="# t"):
    path.parent.mkdir(parents=True, exist_ok=True)
    cell = {"cell_type": "markdown", "id": "a", "metadata": {}, "source": [title]}
    path.write_text(
        json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_NOTEBOOKS", str(tmp_path))
    for name in ("01-a", "02-b"):
        write_notebook(tmp_path / f"{name}.ipynb")
    write_notebook(tmp_path / "solutions" / "02-b.ipynb", "# Solutions · b")
    write_notebook(tmp_path / "solutions" / "notes.ipynb")  # not numbered: not a solution
    return tmp_path


def test_solutions_are_named_by_their_folder_and_stay_out_of_the_run(folder):
    assert params.solution_names() == ["solutions/02-b"]
    assert params.notebook_names() == ["01-a", "02-b"], "make run never picks up a solution"
    assert params.notebook_of("solutions/02-b") == "02-b"


def test_a_solution_takes_no_profile_parameters(folder):
    (folder / "params").mkdir()
    (folder / "params" / "smoke.yaml").write_text("02-b: {}\n")
    assert params.profile_parameters("solutions/02-b", "smoke") == {}


def test_every_solution_in_the_repository_answers_a_notebook():
    names = params.notebook_names()
    solutions = params.solution_names()
    assert "solutions/01-edge-iris-knn" in solutions
    assert all(params.notebook_of(s) in names for s in solutions), solutions
