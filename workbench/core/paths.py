"""Where the workbench reads and writes files: one ignored root for everything generated.

In a checkout of the repository (``pyproject.toml`` and ``notebooks/`` next to the package,
as with ``pip install -e .``) the roots are the checkout's ignored folders (``artifacts/``,
``reports/``, ``datasets/``), wherever the process starts. Installed from a wheel, they are
created in the current directory. Environment variables move them, which is how the tests
run every notebook in a temporary folder without editing any notebook:

- ``WORKBENCH_ARTIFACTS``: models, TFLite files, checkpoints, manifests.
- ``WORKBENCH_REPORTS``: executed notebooks, HTML, recorded figures, plots.
- ``WORKBENCH_DATASETS``: the dataset cache.
- ``WORKBENCH_NOTEBOOKS``: the notebooks ``workbench run`` executes (see :func:`notebooks_dir`).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
NOTEBOOK_PATTERN = "[0-9][0-9]-*.ipynb"  # the numbered notebooks, in flow order by name
# The roots of what the workbench writes: environment variable -> folder name.
ROOT_VARIABLES = {
    "WORKBENCH_ARTIFACTS": "artifacts",
    "WORKBENCH_REPORTS": "reports",
    "WORKBENCH_DATASETS": "datasets",
}


def find_checkout(folder: Path) -> Path | None:
    """``folder`` if it is a checkout of the repository (``pyproject.toml`` and ``notebooks/``
    in it), else None."""
    if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
        return folder
    return None


# The checkout this package runs from (the repository, or an editable install of it); None
# when the package was installed from a wheel (then it lives in site-packages).
REPO_ROOT: Path | None = find_checkout(PACKAGE_DIR.parent)


def output_base() -> Path:
    """Where the roots go unless a variable moves them: the checkout, else the current folder."""
    return REPO_ROOT if REPO_ROOT is not None else Path.cwd()


def _location(env: str, default: str) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else output_base() / default


def _root(env: str, default: str) -> Path:
    path = _location(env, default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def root_variables() -> dict[str, str]:
    """The three roots as absolute paths, keyed by their environment variables.

    What a child process (a notebook kernel started in another folder, the model server)
    needs in its environment to write where this process does. Nothing is created.
    """
    return {env: str(_location(env, name).resolve()) for env, name in ROOT_VARIABLES.items()}


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


def shipped_notebooks() -> Path:
    """The notebooks as this copy of the workbench ships them: the checkout's ``notebooks/``, or
    the copy inside the installed package (``workbench/_notebooks/``, put there by the build)."""
    return REPO_ROOT / "notebooks" if REPO_ROOT is not None else PACKAGE_DIR / "_notebooks"


def notebooks_dir() -> Path:
    """The folder holding the numbered notebooks that ``workbench run`` executes.

    ``WORKBENCH_NOTEBOOKS`` if set; in a checkout, its ``notebooks/``; installed, the current
    folder (one made by ``workbench notebooks DIR``, say). The shipped copy inside the package
    is never run in place (site-packages may be read-only): :func:`shipped_notebooks`.
    """
    value = os.environ.get("WORKBENCH_NOTEBOOKS")
    if value:
        return Path(value).expanduser().resolve()
    if REPO_ROOT is not None:
        return REPO_ROOT / "notebooks"
    return Path.cwd()


# Fixed locations that connect the notebooks (a contract between stages).
CLOUD_MODEL_NAME = "cifar10_cloud"  # TensorFlow Serving name of the cloud model notebook 02 exports
EDGE_CANDIDATE = "improved_cnn"  # notebook 02's small model, which notebook 03 compresses


def serving_base() -> Path:
    """Model base path in TensorFlow Serving's layout: ``<base>/<name>/<version>/``."""
    return artifacts_dir("serving")


def cloud_dir() -> Path:
    """Notebook 02's outputs: .keras files, metadata JSON, checkpoints, TensorBoard logs."""
    return artifacts_dir("cloud")


def edge_dir() -> Path:
    """Notebook 03's outputs: TFLite models and their manifest."""
    return artifacts_dir("edge")
