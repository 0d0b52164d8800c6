"""Where the workbench reads and writes files: one ignored root for everything generated.

Defaults live under the repository (``artifacts/``, ``reports/``, ``datasets/``);
environment variables move them, which is how the tests run every notebook in a
temporary folder without editing any notebook:

- ``WORKBENCH_ARTIFACTS``: models, TFLite files, checkpoints, manifests.
- ``WORKBENCH_REPORTS``: executed notebooks, HTML, recorded figures, plots.
- ``WORKBENCH_DATASETS``: the dataset cache.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _root(env: str, default: str) -> Path:
    value = os.environ.get(env)
    path = Path(value).expanduser() if value else REPO_ROOT / default
    path.mkdir(parents=True, exist_ok=True)
    return path


def artifacts_dir(*parts: str) -> Path:
    """Return (and create) a folder under the artifacts root, e.g. ``artifacts_dir("cloud")``."""
    path = _root("WORKBENCH_ARTIFACTS", "artifacts").joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def reports_dir(*parts: str) -> Path:
    """Return (and create) a folder under the reports root."""
    path = _root("WORKBENCH_REPORTS", "reports").joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    """Return (and create) the dataset cache folder."""
    return _root("WORKBENCH_DATASETS", "datasets")


def notebooks_dir() -> Path:
    """The folder holding the numbered notebooks."""
    return REPO_ROOT / "notebooks"


# Fixed locations that connect the notebooks (a contract between stages).
CLOUD_MODEL_NAME = "cifar10_cnn"  # TensorFlow Serving model name of notebook 02's export


def serving_base() -> Path:
    """Model base path in TensorFlow Serving's layout: ``<base>/<name>/<version>/``."""
    return artifacts_dir("serving")


def cloud_dir() -> Path:
    """Notebook 02's outputs: .keras files, metadata JSON, checkpoints, TensorBoard logs."""
    return artifacts_dir("cloud")


def edge_dir() -> Path:
    """Notebook 03's outputs: TFLite models and their manifest."""
    return artifacts_dir("edge")
