"""What a notebook records: figures and tables both shown and saved next to the executed
notebook (``reports/results/<notebook>.json``, PNG figures), for tests and the report; the
checks of its "predict, then run" exercises (:meth:`Recorder.exercise`) and of its solutions
notebook's answers (:meth:`Recorder.answer`); and how it shows tables (:func:`setup_display`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
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
    """The JSON file holding ``notebook``'s recorded figures (a solutions notebook, named
    ``solutions/<notebook>``, records under ``results/solutions/``)."""
    path = paths.reports_dir("results") / f"{notebook}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def setup_display() -> None:
    """Show tables whole: every column, every row up to 500, cells never cut short.

    pandas' defaults cut a cell after 50 characters ("the la..."), elide columns past 20
    and rows past 60 with "...": a reader of a saved notebook cannot get them back. Call it
    once in a notebook's set-up cell.
    """
    import pandas as pd

    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.max_columns", None)
    pd.set_option("display.max_rows", 500)
    pd.set_option("display.min_rows", 500)
    pd.set_option("display.expand_frame_repr", False)  # text repr: one block, not wrapped
    pd.set_option("styler.render.max_columns", None)
    pd.set_option("styler.render.max_rows", None)


@dataclass(frozen=True)
class ExerciseCheck:
    """One "predict, then run" exercise: the learner's prediction, what the reasoning gives
    (``expected``), what the run measured, and whether the check (``claim``) holds."""

    number: int
    prediction: float | None
    expected: float | None
    measured: float
    claim: str
    ok: bool
    unit: str = ""
    expected_label: str = "by reasoning"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """The check in words, with how far the prediction (if any) is from the measurement."""
        unit = f" {self.unit}" if self.unit else ""
        parts = [f"Exercise {self.number}"]
        if self.prediction is None:
            parts.append(
                f"your prediction: none yet (set prediction_{self.number} and run the cell again)"
            )
        else:
            parts.append(
                f"your prediction: {number_text(self.prediction)}{unit} "
                f"({closeness(self.prediction, self.measured)})"
            )
        if self.expected is not None:
            parts.append(f"{self.expected_label}: {number_text(self.expected)}{unit}")
        parts.append(f"measured: {number_text(self.measured)}{unit}")
        verdict = "holds" if self.ok else "does NOT hold: look again at the reasoning"
        return " · ".join(parts) + f"\n  check: {self.claim}: {verdict}"


def number_text(value: float) -> str:
    """A number as a reader writes it: ``4,800``, ``0.3333``, ``1.25e-05``."""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def closeness(prediction: float, measured: float) -> str:
    """How far a prediction is from a measurement, in words (relative when possible)."""
    if isinstance(measured, bool | np.bool_) or isinstance(prediction, bool | np.bool_):
        return "right" if bool(prediction) == bool(measured) else "wrong"
    if measured == 0:
        return "exact" if prediction == 0 else f"off by {number_text(prediction - measured)}"
    error = (prediction - measured) / abs(measured)
    if abs(error) < 0.005:
        return "within 0.5% of the measurement"
    return f"{abs(error):.0%} {'above' if error > 0 else 'below'} the measurement"


def check_exercise(
    number: int,
    *,
    prediction: float | None,
    measured: float,
    expected: float | None = None,
    claim: str | None = None,
    ok: bool | None = None,
    unit: str = "",
    rel_tol: float = 1e-9,
    expected_label: str = "by reasoning",
) -> ExerciseCheck:
    """Check one exercise: by default that the reasoning (``expected``) gives the measured
    value within ``rel_tol``; or pass ``ok`` and ``claim`` for a check of another kind
    (e.g. "batching is faster than one sample at a time"), with ``expected_label`` naming
    the value ``expected`` holds then.

    Raises:
        ValueError: neither ``expected`` nor ``ok`` was given (nothing to check).
    """
    if ok is None:
        if expected is None:
            raise ValueError(
                f"Exercise {number}: give the value the reasoning expects (expected=...) or "
                "the outcome of the check (ok=..., with claim=...)."
            )
        ok = math.isclose(float(expected), float(measured), rel_tol=rel_tol, abs_tol=1e-12)
        claim = claim or "the reasoning gives the measured value"
    return ExerciseCheck(
        number=number,
        prediction=None if prediction is None else jsonable(prediction),
        expected=None if expected is None else jsonable(expected),
        measured=jsonable(measured),
        claim=claim or "the check",
        ok=bool(ok),
        unit=unit,
        expected_label=expected_label,
    )


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

    def exercise(self, number: int, **check: Any) -> None:
        """Check a "predict, then run" exercise, print the outcome and record it.

        Takes the arguments of :func:`check_exercise`; records ``exercise_<number>`` (the
        whole check) and ``exercise_<number>_ok``, which the notebook tests assert.
        """
        result = check_exercise(number, **check)
        print(result.describe())
        self.values[f"exercise_{number}"] = jsonable(result)
        self.record(f"exercise_{number}_ok", result.ok)

    def answer(self, number: int | str, *, ok: bool, claim: str) -> None:
        """In a solutions notebook: check a worked answer against what its notebook
        recorded, print it and record ``answer_<number>_ok`` (asserted by the tests)."""
        print(f"Answer {number}: {claim}: {'holds' if ok else 'does NOT hold'}")
        self.record(f"answer_{number}_ok", bool(ok))

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
