"""Keras 2 for TensorFlow Model Optimization: set where Jupyter expects environment (the kernel
spec), defaulted by ``import workbench``, never overriding an explicit value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, **env_overrides: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; TF_USE_LEGACY_KERAS only if given in ``env_overrides``."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )


def test_import_sets_legacy_keras_only_if_unset():
    out = _python("import os, workbench; print(os.environ['TF_USE_LEGACY_KERAS'])")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "1"
    kept = _python(
        "import os, workbench; print(os.environ['TF_USE_LEGACY_KERAS'])", TF_USE_LEGACY_KERAS="0"
    )
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert kept.stdout.strip() == "0"


def test_tf_keras_is_keras_2_in_a_fresh_process():
    out = _python(
        "import workbench, tensorflow as tf; workbench.check_keras(); print(tf.keras.__name__)"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("tf_keras")


def test_import_after_tensorflow_still_selects_keras_2():
    out = _python(
        "import tensorflow as tf; import workbench; workbench.check_keras(); print(tf.keras.__name__)"
    )
    assert out.returncode == 0 and out.stdout.strip().startswith("tf_keras"), out.stderr[-2000:]


def test_check_keras_explains_keras_3():
    # tf.keras resolved to Keras 3 before workbench could select Keras 2
    out = _python(
        "import tensorflow as tf; tf.keras.layers; import workbench; workbench.check_keras()"
    )
    assert out.returncode != 0
    assert "KerasVersionError" in out.stderr and "import workbench" in out.stderr


def test_explicit_legacy_keras_0_is_respected_and_check_keras_explains():
    out = _python(
        "import workbench, tensorflow as tf; print(tf.keras.__name__, flush=True); "
        "workbench.check_keras()",
        TF_USE_LEGACY_KERAS="0",
    )
    assert out.returncode != 0
    assert not out.stdout.strip().startswith("tf_keras"), out.stdout  # Keras 3, as asked
    assert "KerasVersionError" in out.stderr
    assert "TF_USE_LEGACY_KERAS is set to '0'" in out.stderr, out.stderr[-2000:]


def _kernel_install_lines(text: str) -> list[str]:
    """The ``ipykernel install`` command in a Makefile or shell script, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return [line for line in joined.splitlines() if "ipykernel install" in line]


@pytest.mark.parametrize("path", ["Makefile", "binder/postBuild"])
def test_kernel_install_sets_legacy_keras_in_the_spec(path):
    lines = _kernel_install_lines((ROOT / path).read_text())
    assert lines, f"{path} does not install the workbench kernel"
    for line in lines:
        assert "--name workbench" in line, f"{path}: {line}"
        assert "--env TF_USE_LEGACY_KERAS 1" in line, f"{path}: the kernel spec must set it"


def test_installed_kernel_spec_has_the_env():
    """The spec ``make setup`` wrote into this environment, if it has one (CI's always does)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("workbench")
    except NoSuchKernel:
        if os.environ.get("CI"):
            pytest.fail("the workbench kernel is not installed: run `make setup`")
        pytest.skip("the workbench kernel is not installed here (`make setup` installs it)")
    kernel_json = json.loads((Path(spec.resource_dir) / "kernel.json").read_text())
    assert kernel_json.get("env", {}).get("TF_USE_LEGACY_KERAS") == "1", kernel_json
    assert spec.display_name == "Python (workbench)"


def test_binder_start_exports_legacy_keras(tmp_path):
    start = ROOT / "binder" / "start"
    assert os.access(start, os.X_OK), "binder/start must be executable"
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run(
        [str(start), "sh", "-c", 'printf %s "$TF_USE_LEGACY_KERAS"'],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "1"  # and it ran the command it was given (repo2docker's contract)


def test_console_script_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["workbench"] == "workbench.cli:main"


# ------------------------------------------------------------------ in a checkout, or installed


def test_the_checkout_is_found_by_its_pyproject_and_notebooks(tmp_path):
    from workbench.core import paths

    assert paths.REPO_ROOT == ROOT
    assert paths.find_checkout(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text("")
    assert paths.find_checkout(tmp_path) is None  # a project of the user's, not ours
    (tmp_path / "notebooks").mkdir()
    assert paths.find_checkout(tmp_path) == tmp_path


def test_installed_outputs_go_to_the_current_folder(tmp_path, monkeypatch):
    """Outside a checkout nothing is written into site-packages: the roots are in the
    current folder, unless the WORKBENCH_* variables say otherwise."""
    from workbench.core import paths

    monkeypatch.setattr(paths, "REPO_ROOT", None)
    for variable in (*paths.ROOT_VARIABLES, "WORKBENCH_NOTEBOOKS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.artifacts_dir("cloud") == tmp_path / "artifacts" / "cloud"
    assert paths.reports_dir() == tmp_path / "reports"
    assert paths.datasets_dir() == tmp_path / "datasets"
    assert paths.notebooks_dir() == tmp_path
    assert paths.shipped_notebooks() == paths.PACKAGE_DIR / "_notebooks"
    monkeypatch.setenv("WORKBENCH_REPORTS", "relative/reports")
    roots = paths.root_variables()
    assert roots["WORKBENCH_REPORTS"] == str(tmp_path / "relative" / "reports")  # absolute
    assert roots["WORKBENCH_ARTIFACTS"] == str(tmp_path / "artifacts")
    monkeypatch.setenv("WORKBENCH_NOTEBOOKS", str(tmp_path / "course"))
    assert paths.notebooks_dir() == tmp_path / "course"


def test_in_a_checkout_outputs_stay_in_it_wherever_you_start(tmp_path, monkeypatch):
    from workbench.core import paths

    for variable in (*paths.ROOT_VARIABLES, "WORKBENCH_NOTEBOOKS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.root_variables()["WORKBENCH_REPORTS"] == str(ROOT / "reports")
    assert paths.notebooks_dir() == ROOT / "notebooks"
    assert not any(tmp_path.iterdir())  # nothing created by asking


def test_the_wheel_carries_the_notebooks():
    """setup.py copies notebooks/ into the built package; MANIFEST.in puts it in the sdist."""
    setup = (ROOT / "setup.py").read_text()
    assert '"_notebooks"' in setup and "build_py" in setup
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert "notebooks/[0-9][0-9]-*.ipynb" in manifest and "notebooks/params/*.yaml" in manifest
    assert not (ROOT / "workbench" / "_notebooks").exists(), "no committed copy of the notebooks"
