"""A Binder-sized run: a fresh virtualenv built from binder/ as repo2docker would, every notebook
executed in it, each under mybinder.org's 2 GB.

Where this machine allows it (Linux, root, a cgroup memory controller) every notebook runs
inside a memory cgroup capped at 2 GiB, as a Binder container is: a notebook that does not
fit is killed and the check fails. Elsewhere the sampled peaks are checked instead.

Building the environment takes minutes, so this runs only when asked:
``WORKBENCH_BINDER_CHECK=1 pytest tests/test_binder_build.py`` or ``make binder-check``.
The regular notebook tests check the same memory ceiling in the project's own environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import deadlines
import pytest

from workbench.core import paths

ROOT = paths.REPO_ROOT
BINDER_LIMIT_BYTES = 2 * 1024**3

pytestmark = [
    pytest.mark.slow,
    # building the environment (network-bound) and running every notebook: longer than
    # pytest-timeout's default per test; each step below has its own deadline within this
    pytest.mark.timeout(6000),
    pytest.mark.skipif(
        os.environ.get("WORKBENCH_BINDER_CHECK") != "1",
        reason="set WORKBENCH_BINDER_CHECK=1 (or run `make binder-check`): builds a fresh env",
    ),
]


def test_binder_environment_runs_every_notebook_under_2_gb(tmp_path, cifar10_path):
    venv = tmp_path / "binder-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    # repo2docker: pip install -r binder/requirements.txt, then binder/postBuild from the repo root.
    deadlines.run(
        [str(py), "-m", "pip", "install", "-q", "-r", str(ROOT / "binder" / "requirements.txt")],
        timeout_s=1800,
        what="Installing binder/requirements.txt",
        check=True,
        env=env,
        cwd=ROOT,
    )
    deadlines.run(
        ["bash", str(ROOT / "binder" / "postBuild")],
        timeout_s=600,
        what="binder/postBuild",
        check=True,
        env=env,
        cwd=ROOT,
    )
    reports = tmp_path / "reports"
    run_env = {
        **env,
        "WORKBENCH_ARTIFACTS": str(tmp_path / "artifacts"),
        "WORKBENCH_REPORTS": str(reports),
        "WORKBENCH_CIFAR10": str(cifar10_path),
    }
    from workbench.core.memory import MemoryLimit

    capped = MemoryLimit.unavailable() is None
    cap = ["--memory-cap-mib", str(BINDER_LIMIT_BYTES // 2**20)] if capped else []
    profile = os.environ.get("WORKBENCH_BINDER_PROFILE", "smoke")
    deadlines.run(
        [str(py), "-m", "workbench", "run", "--profile", profile, *cap],
        timeout_s=3000,
        what=f"Every notebook ({profile} profile) in the Binder environment",
        check=True,
        env=run_env,
        cwd=ROOT,
    )
    runs = json.loads((reports / "results" / "runs.json").read_text())
    print(json.dumps(runs, indent=2))
    Path(paths.reports_dir()).joinpath("binder-check.json").write_text(json.dumps(runs, indent=2))
    assert set(runs) == {p.stem for p in paths.notebooks_dir().glob("[0-9][0-9]-*.ipynb")}
    for name, run in runs.items():
        assert run["peak_private_mib"] * 2**20 < BINDER_LIMIT_BYTES, f"{name}: {run}"
        if capped:  # it ran to the end under the cap
            assert run["memory_cap_mib"] * 2**20 == BINDER_LIMIT_BYTES, f"{name}: {run}"
        else:
            assert run["peak_memory_mib"] * 2**20 < BINDER_LIMIT_BYTES, f"{name}: {run}"
