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


ZOO_TEST = "test_family_goes_through_every_stage"  # tests/test_zoo.py's test of one family


def pytest_collection_modifyitems(config, items):
    """The zoo's tests of families run last: their runs start with the session
    (:func:`zoo_ahead`) and are then ready, or nearly."""
    zoo = [item for item in items if item.name.startswith(ZOO_TEST)]
    if zoo:
        items[:] = [item for item in items if not item.name.startswith(ZOO_TEST)] + zoo


@pytest.fixture(scope="session", autouse=True)
def zoo_ahead(request, tmp_path_factory):
    """Start the selected zoo runs when the session starts (:class:`workbench.assess.zoo.Ahead`:
    two at a time, at the lowest CPU priority), so they use the cores the other tests leave
    idle; None when no family of the zoo was selected (or there is no CIFAR-10).

    ``WORKBENCH_ZOO_JOBS`` sets how many run at once (default 2).
    """
    runs = [
        (item.callspec.params["family"], item.callspec.params["flavour"])
        for item in request.session.items
        if item.name.startswith(ZOO_TEST) and hasattr(item, "callspec")
    ]
    if not runs or cifar10_source() is None:
        yield None
        return
    os.environ.setdefault("WORKBENCH_CIFAR10", str(cifar10_source()))
    from workbench.assess import zoo

    folder = tmp_path_factory.mktemp("zoo")
    data = zoo.zoo_data(folder / "cifar10-zoo.npz", training=zoo.Training())
    ahead = zoo.Ahead(
        runs, folder, data_path=data, jobs=int(os.environ.get("WORKBENCH_ZOO_JOBS", "2"))
    )
    yield ahead
    ahead.stop()


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
