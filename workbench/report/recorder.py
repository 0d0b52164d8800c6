"""What a notebook records: figures and tables both shown and saved next to the executed
notebook (``reports/results/<notebook>.json``, PNG figures), for tests and the report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core import atomic, paths


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "as_dict"):
        return jsonable(value.as_dict())
    if hasattr(value, "columns") and hasattr(value, "to_dict"):  # a pandas DataFrame
        return jsonable(value.to_dict(orient="records"))
    return value


def results_path(notebook: str) -> Path:
    """The JSON file holding ``notebook``'s recorded figures."""
    return paths.reports_dir("results") / f"{notebook}.json"


class Recorder:
    """Collects a notebook's figures and writes them to its JSON after every call.

    It owns what it records: :meth:`table` records rows *and* lists them among the tables
    the report shows; :meth:`figure` saves a plot *and* lists it among the report's figures;
    :meth:`summary` names the key figures. Nothing is returned, so a notebook cell that ends
    on a call shows no stray value.

    Example:
        >>> rec = Recorder("01-edge-iris-knn")  # doctest: +SKIP
        >>> rec.record("test_accuracy", 0.97)   # doctest: +SKIP
        >>> rec.figure(fig, "01-cv-curve")      # doctest: +SKIP
    """

    def __init__(self, notebook: str, *, fresh: bool = True) -> None:
        self.notebook = notebook
        self.path = results_path(notebook)
        self.values: dict[str, Any] = {}
        if not fresh and self.path.exists():
            self.values = json.loads(self.path.read_text())
        self._write()

    def record(self, name: str, value: Any) -> None:
        """Store ``value`` under ``name`` (converted to JSON: numpy, DataFrames, dataclasses)."""
        self.values[name] = jsonable(value)
        self._write()

    def table(self, name: str, rows: Any) -> None:
        """Record ``rows`` (a DataFrame or a list of dicts) as a table of the report."""
        self.values[name] = jsonable(rows)
        self._add("report_tables", name)

    def figure(self, fig, name: str) -> None:
        """Save ``fig`` as ``reports/figures/<name>.png`` and show it in the report."""
        save_figure(fig, name)
        self._add("figures", name)

    def summary(self, *names: str) -> None:
        """The key figures of this notebook, for the report's summary and the console."""
        self.values["summary_keys"] = list(names)
        self._write()

    def _add(self, key: str, name: str) -> None:
        listed = list(self.values.get(key) or [])
        if name not in listed:
            listed.append(name)
        self.values[key] = listed
        self._write()

    def _write(self) -> None:
        # Names sorted; the rows of a table keep their columns in order (the row name first).
        atomic.write_json(self.path, dict(sorted(self.values.items())), indent=2)


def load_results(notebook: str) -> dict[str, Any]:
    """Read the figures a notebook recorded; raise with a hint if it has not run yet."""
    path = results_path(notebook)
    if not path.exists():
        raise FileNotFoundError(f"No recorded results at {path}: run notebook {notebook} first.")
    return json.loads(path.read_text())


def save_figure(fig, name: str) -> Path:
    """Save a matplotlib figure as PNG under ``reports/figures/`` for the HTML index."""
    path = paths.reports_dir("figures") / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
