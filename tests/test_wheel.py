"""The package as a user installs it: a wheel built from this checkout, installed into a fresh
virtualenv, used from an empty folder far from the checkout.

Offline: the wheel is built without build isolation (setuptools comes from the lock), and the
fresh virtualenv sees this environment's packages (the lock's) through a ``.pth`` line instead
of downloading them; the wheel itself is installed with ``--no-deps --no-index``. That line
adds the folder only: the editable install of the checkout that folder holds (a ``.pth``
hook) is not run, so ``workbench`` comes from the wheel, which the test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import deadlines
import pytest

from workbench import __version__
from workbench.core import paths

pytestmark = pytest.mark.slow
ROOT = paths.REPO_ROOT
# What a build needs from the checkout (copied, so the build writes nothing into it).
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "workbench")


def _copy_sources(dest: Path) -> Path:
    dest.mkdir(parents=True)

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [
            n
            for n in names
            if n in ("__pycache__", "_notebooks")
            or not (Path(folder, n).is_file() or Path(folder, n).is_dir())  # sockets, fifos
        ]

    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    (dest / "notebooks" / "params").mkdir(parents=True)
    for notebook in (ROOT / "notebooks").glob(paths.NOTEBOOK_PATTERN):
        shutil.copy2(notebook, dest / "notebooks" / notebook.name)
    for profile in (ROOT / "notebooks" / "params").glob("*.yaml"):
        shutil.copy2(profile, dest / "notebooks" / "params" / profile.name)
    return dest


def _run(args: list[str], *, cwd: Path, env: dict, timeout: int = 600):
    done = deadlines.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout_s=timeout, what="A step"
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, args))}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("build")
    source = _copy_sources(build / "src")
    dist = build / "dist"
    _run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
            "--no-build-isolation", "--wheel-dir", str(dist), str(source),
        ],
        cwd=build,
        env=dict(os.environ),
    )  # fmt: skip
    (found,) = dist.glob("edge_cloud_workbench-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh virtualenv with the wheel installed; the dependencies are this environment's."""
    folder = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120
    )
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    Path(purelib, "lock-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
            "--no-deps", "--no-index", str(wheel),
        ],
        cwd=folder,
        env=dict(os.environ),
    )  # fmt: skip
    return folder


def _user_env(venv: Path) -> dict:
    """A user's shell: the venv first on PATH, none of the workbench's variables set.

    The dependencies' data files (nbconvert's templates) live under this environment's
    prefix, not the fresh one's: ``JUPYTER_PATH`` names a folder holding only those, so that
    Jupyter's kernels are still the fresh venv's own (``python3``, its Python and the wheel).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORKBENCH_", "JUPYTER")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    data = venv.parent / "jupyter-data"
    if not data.exists():
        data.mkdir()
        (data / "nbconvert").symlink_to(Path(sys.prefix, "share", "jupyter", "nbconvert"))
    env["JUPYTER_PATH"] = str(data)
    return env


def test_the_wheel_carries_notebooks_profiles_schema_and_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for notebook in (ROOT / "notebooks").glob(paths.NOTEBOOK_PATTERN):
        assert f"workbench/_notebooks/{notebook.name}" in names, notebook.name
    assert "workbench/_notebooks/params/smoke.yaml" in names
    for data in (
        "workbench/assess/assessment.schema.json",
        "workbench/report/templates/page.html.j2",
        "workbench/run/calibration.json",
    ):
        assert data in names, data
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "docs/"))]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Name: edge-cloud-workbench" in text and f"Version: {__version__}" in text
    assert "Requires-Python: >=3.11\n" in text


def test_installed_tool_works_from_an_empty_folder(venv, tmp_path):
    env = _user_env(venv)
    empty = tmp_path / "empty"
    empty.mkdir()
    workbench = str(venv / "bin" / "workbench")

    version = _run([workbench, "--version"], cwd=empty, env=env).stdout
    assert version.startswith(f"edge-cloud-workbench {__version__} (installed in {venv}"), version
    assert str(ROOT) not in version  # the wheel's copy, not the checkout's

    helped = _run([workbench, "assess", "--help"], cwd=empty, env=env).stdout
    assert "--model" in helped and "examples:" in helped

    copied = _run([workbench, "notebooks", "course"], cwd=empty, env=env).stdout
    assert "copied into course" in copied
    course = empty / "course"
    for notebook in (ROOT / "notebooks").glob(paths.NOTEBOOK_PATTERN):
        assert (course / notebook.name).read_bytes() == notebook.read_bytes(), notebook.name
    assert (course / "params" / "smoke.yaml").read_bytes() == (
        ROOT / "notebooks" / "params" / "smoke.yaml"
    ).read_bytes()
    assert sorted(p.name for p in empty.iterdir()) == ["course"]  # nothing else written

    # `workbench run` in an empty folder says where to get the notebooks
    refused = subprocess.run(
        [workbench, "run", "--no-estimate"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "workbench notebooks ." in refused.stderr


def test_installed_run_from_a_copied_course_writes_there(venv, tmp_path):
    """``workbench notebooks`` then ``workbench run`` in that folder: the notebook runs and
    everything it writes lands beside it, nothing in site-packages."""
    env = _user_env(venv)
    workbench = str(venv / "bin" / "workbench")
    _run([workbench, "notebooks", "course"], cwd=tmp_path, env=env)
    course = tmp_path / "course"
    _run(
        [workbench, "run", "--profile", "smoke", "--no-estimate", "01-edge-iris-knn"],
        cwd=course,
        env=env,
        timeout=900,
    )
    executed = course / "reports" / "executed" / "01-edge-iris-knn.ipynb"
    assert executed.exists() and (course / "reports" / "index.html").exists()
    # run by the fresh venv's own kernel (its Python, the wheel), not the checkout's kernel
    assert json.loads(executed.read_text())["metadata"]["kernelspec"]["name"] == "python3"
    runs = json.loads((course / "reports" / "results" / "runs.json").read_text())
    assert runs["01-edge-iris-knn"]["profile"] == "smoke"
    assert (course / "artifacts").is_dir()
    site_packages = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import workbench; print(workbench.__file__)"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=True,
            timeout=300,
        ).stdout.strip()
    ).parents[1]
    assert site_packages.is_relative_to(venv)
    for generated in ("artifacts", "reports", "datasets"):
        assert not (site_packages / generated).exists(), f"{generated}/ written into site-packages"
