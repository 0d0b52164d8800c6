"""Every notebook, executed top to bottom by papermill in the smoke profile.

A notebook added to ``notebooks/`` is picked up without editing this file; a
notebook with specific figure checks gets them from ``CHECKS`` below, and every
notebook must at least record its figures. Later notebooks read the artifacts
of earlier ones, so each test first runs the notebooks before it (once per session).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from workbench import report, runner

NOTEBOOKS = runner.notebook_names()
_done: dict[str, runner.Execution] = {}


def _run(name: str, out_dir) -> runner.Execution:
    for earlier in NOTEBOOKS[: NOTEBOOKS.index(name)]:
        if earlier not in _done:
            _run(earlier, out_dir)
    if name not in _done:
        try:
            _done[name] = runner.execute(name, profile="smoke", out_dir=out_dir, progress=False)
        except runner.NotebookFailed as err:
            pytest.fail(str(err), pytrace=False)
    return _done[name]


def check_01(r: dict) -> None:
    assert r["test_accuracy"] >= 0.9
    assert r["k"] in r["cv_scores"] or str(r["k"]) in r["cv_scores"]
    assert r["reload_identical"] is True
    assert r["latency_ms"]["p50_ms"] > 0 and r["latency_ms"]["p95_ms"] >= r["latency_ms"]["p50_ms"]
    assert r["footprint"]["training_set_bytes"] == 120 * 4 * 8 + 120 * 8  # 120 rows x 4 float64 + labels


CHECKS: dict[str, Callable[[dict], None]] = {"01": check_01}


@pytest.mark.notebooks
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook(name: str, workdirs, cifar10_path) -> None:
    execution = _run(name, workdirs["reports"] / "executed")
    assert execution.output.exists()
    results = report.load_results(name)
    assert results.get("summary_keys"), f"{name} recorded no summary figures"
    for key in results["summary_keys"]:
        assert results.get(key) is not None, f"{name} lists {key} as a key figure but never recorded it"
    check = CHECKS.get(name[:2])
    if check:
        check(results)


def test_notebooks_are_committed_without_outputs() -> None:
    import nbformat

    for name in NOTEBOOKS:
        nb = nbformat.read(runner.paths.notebooks_dir() / f"{name}.ipynb", as_version=4)
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{name} has outputs in cells {dirty}: run nbstripout"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), (
            f"{name} must open with a title"
        )
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        for heading in ("You will learn", "## Results", "## What to try next"):
            assert heading.lower() in text.lower(), f"{name} lacks the skeleton section '{heading}'"


def test_smoke_profile_names_real_parameters() -> None:
    """Every smoke override must exist in the notebook's parameters cell (no silent typos)."""
    import nbformat

    for name in NOTEBOOKS:
        nb = nbformat.read(runner.paths.notebooks_dir() / f"{name}.ipynb", as_version=4)
        params_src = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        declared = {line.split("=")[0].strip() for line in params_src.splitlines() if "=" in line}
        unknown = set(runner.profile_parameters(name, "smoke")) - declared
        assert not unknown, f"smoke.yaml sets {unknown} for {name}, which its parameters cell lacks"
