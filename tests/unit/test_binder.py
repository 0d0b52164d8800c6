"""The Binder config is complete and agrees with requirements.txt."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _requirements(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins |= _requirements((path.parent / line[3:].strip()).resolve())
            continue
        name, _, version = re.split(r"(==)", line, maxsplit=1) if "==" in line else (line, "", "")
        pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_binder_files_exist():
    for name in ("requirements.txt", "runtime.txt", "postBuild"):
        assert (ROOT / "binder" / name).is_file(), f"binder/{name} is missing"
    assert os.access(ROOT / "binder" / "postBuild", os.X_OK), "binder/postBuild must be executable"


def test_binder_runtime_is_python_311():
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"


def test_binder_requirements_match_top_level():
    assert _requirements(ROOT / "binder" / "requirements.txt") == _requirements(
        ROOT / "requirements.txt"
    )


def test_requirements_are_pinned_and_complete():
    pins = _requirements(ROOT / "requirements.txt")
    unpinned = [n for n, v in pins.items() if not v]
    assert not unpinned, f"unpinned requirements: {unpinned}"
    for needed in (
        "tensorflow",
        "tf-keras",
        "tensorflow-model-optimization",
        "ai-edge-litert",
        "scikit-learn",
        "matplotlib",
        "ipywidgets",
        "jupyterlab",
        "papermill",
        "skops",
        "fastapi",
        "uvicorn",
    ):
        assert needed in pins, f"{needed} missing from requirements.txt"
    assert pins["tensorflow"].split(".")[:2] == pins["tf-keras"].split(".")[:2], (
        "tensorflow and tf-keras must share a minor version"
    )


def test_postbuild_installs_the_package():
    text = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install" in text and "-e ." in text


def test_readme_has_binder_badge_and_commands():
    readme = (ROOT / "README.md").read_text()
    assert "mybinder.org/badge_logo.svg" in readme
    assert "make run" in readme and "make test" in readme
