"""Shared fixtures: every test writes artifacts and reports under a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SUBSET = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "datasets"
    / "cifar10-subset"
    / "cifar10_subset.npz"
)


@pytest.fixture(scope="session")
def workdirs(tmp_path_factory) -> dict[str, Path]:
    """Point WORKBENCH_ARTIFACTS / WORKBENCH_REPORTS / WORKBENCH_DATASETS at a session temp folder.

    The variables are set in os.environ so papermill kernels (child processes) inherit them.
    """
    root = tmp_path_factory.mktemp("workbench")
    dirs = {name: root / name for name in ("artifacts", "reports", "datasets")}
    saved = {
        k: os.environ.get(k)
        for k in ("WORKBENCH_ARTIFACTS", "WORKBENCH_REPORTS", "WORKBENCH_DATASETS")
    }
    for name, path in dirs.items():
        path.mkdir()
        os.environ[f"WORKBENCH_{name.upper()}"] = str(path)
    yield dirs
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def cifar10_source() -> Path | None:
    """The CIFAR-10 file the tests may use: $WORKBENCH_CIFAR10, else the shared offline subset."""
    env = os.environ.get("WORKBENCH_CIFAR10")
    if env and Path(env).exists():
        return Path(env)
    return SUBSET if SUBSET.exists() else None


@pytest.fixture(scope="session")
def cifar10_path() -> Path:
    path = cifar10_source()
    if path is None:
        message = "no CIFAR-10 available: set WORKBENCH_CIFAR10 (see README, 'CIFAR-10 offline')"
        if os.environ.get("CI"):  # in CI a missing dataset is a broken set-up, not a reason to skip
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    os.environ.setdefault("WORKBENCH_CIFAR10", str(path))
    return path
