"""Notebook runs shared by the notebook and browser tests: each notebook runs once a session.

Later notebooks read the artifacts of earlier ones, so running one first runs those before
it. Where the machine allows it (Linux, root, a cgroup memory controller), each runs in a
fresh ``python -m workbench run`` process inside a 2 GiB memory cgroup, as a mybinder.org
container is; elsewhere in this process, with the peak sampled.
"""

from __future__ import annotations

import pytest

from workbench.core import memory
from workbench.run import notebooks, params

NOTEBOOKS = params.notebook_names()
BINDER_BYTES = 2 * 1024**3  # mybinder.org's memory limit (a container cap, 2 GB)
# One smoke notebook in its own process: a few minutes on 2 cores. The run's watchdog and
# per-cell timeouts fail a stuck cell first; this catches what hangs outside a cell.
NOTEBOOK_DEADLINE_S = 900
_done: dict[str, notebooks.Execution] = {}


def run_once(name: str) -> notebooks.Execution:
    """Run ``name`` (and the notebooks before it, once): under a 2 GiB cgroup where possible."""
    for earlier in NOTEBOOKS[: NOTEBOOKS.index(name)]:
        if earlier not in _done:
            run_once(earlier)
    if name not in _done:
        _done[name] = _capped(name) if memory.MemoryLimit.unavailable() is None else _plain(name)
    return _done[name]


def _plain(name: str) -> notebooks.Execution:
    try:
        return notebooks.execute(name, profile="smoke", progress=False)
    except notebooks.NotebookFailed as err:
        pytest.fail(str(err), pytrace=False)


def _capped(name: str) -> notebooks.Execution:
    """``python -m workbench run --memory-cap-mib 2048 NAME`` in a fresh process.

    A fresh process because the cgroup charges everything in it: this pytest process has
    TensorFlow loaded by other tests, a Binder session's Jupyter server does not.
    """
    import sys

    from deadlines import run

    done = run(
        [
            sys.executable,
            "-m",
            "workbench",
            "run",
            "--profile",
            "smoke",
            "--memory-cap-mib",
            str(BINDER_BYTES // 2**20),
            name,
        ],
        timeout_s=NOTEBOOK_DEADLINE_S,
        what=f"`workbench run {name}` (smoke profile, under the memory cap)",
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"{name} failed under a {BINDER_BYTES // 2**20} MiB memory cap:\n"
            + "\n".join((done.stderr or done.stdout).splitlines()[-60:]),
            pytrace=False,
        )
    return recorded_run(name)


def recorded_run(name: str) -> notebooks.Execution:
    """Read back what :func:`workbench.run.notebooks.execute` recorded for ``name`` in
    ``runs.json`` (a run in another process, such as ``python -m workbench run
    --memory-cap-mib``)."""
    import json

    from workbench.core import paths

    runs = json.loads((paths.reports_dir("results") / "runs.json").read_text())
    if name not in runs:
        raise KeyError(f"No recorded run of {name} in {paths.reports_dir('results')}")
    run = runs[name]
    return notebooks.Execution(
        name,
        paths.reports_dir("executed") / f"{name}.ipynb",
        run["seconds"],
        round(run["peak_memory_mib"] * 2**20),
        round(run.get("peak_private_mib", 0) * 2**20),
        round(run.get("memory_cap_mib", 0) * 2**20),
        round(run.get("cgroup_peak_mib", 0) * 2**20),
    )
