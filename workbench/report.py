"""Record the figures each notebook computes, and gather them into one report.

A notebook calls :func:`record` for every figure that matters; the values land
in ``reports/results/<notebook>.json`` so tests and the HTML index read numbers,
not screenshots. :func:`build_index` writes ``reports/index.html``.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from workbench import paths


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "as_dict"):
        return _jsonable(value.as_dict())
    if hasattr(value, "columns") and hasattr(value, "to_dict"):  # a pandas DataFrame
        return _jsonable(value.to_dict(orient="records"))
    return value


def results_path(notebook: str) -> Path:
    """The JSON file holding ``notebook``'s recorded figures."""
    return paths.reports_dir("results") / f"{notebook}.json"


class Recorder:
    """Collects a notebook's figures and writes them to its JSON after every call.

    Example:
        >>> rec = Recorder("01-edge-iris-knn")  # doctest: +SKIP
        >>> rec.record("test_accuracy", 0.97)   # doctest: +SKIP
    """

    def __init__(self, notebook: str, *, fresh: bool = True) -> None:
        self.notebook = notebook
        self.path = results_path(notebook)
        self.values: dict[str, Any] = {}
        if not fresh and self.path.exists():
            self.values = json.loads(self.path.read_text())
        self._write()

    def record(self, name: str, value: Any) -> Any:
        """Store ``value`` under ``name`` (JSON-serialisable after conversion) and return it."""
        self.values[name] = _jsonable(value)
        self._write()
        return value

    def _write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.values, indent=2, sort_keys=True))
        os.replace(tmp, self.path)


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


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p><em>no rows</em></p>"
    columns = columns or list(rows[0])

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{fmt(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_rows() -> list[dict[str, Any]]:
    """Key figures of every notebook that has recorded results, one row per figure."""
    rows = []
    for path in sorted(paths.reports_dir("results").glob("[0-9][0-9]-*.json")):
        values = json.loads(path.read_text())
        for key in values.get("summary_keys", []):
            rows.append({"notebook": path.stem, "figure": key, "value": values.get(key)})
    return rows


def build_index(notebooks: list[str] | None = None) -> Path:
    """Write ``reports/index.html``: key figures, tables, plots and links to executed notebooks."""
    root = paths.reports_dir()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Edge-cloud workbench report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
        "img{max-width:100%;border:1px solid #eee;margin:.5em 0}</style></head><body>",
        "<h1>Edge-cloud workbench: report of the whole flow</h1>",
    ]
    results = {
        p.stem: json.loads(p.read_text())
        for p in sorted((root / "results").glob("[0-9][0-9]-*.json"))
    }
    hw = next((v.get("hardware") for v in results.values() if v.get("hardware")), None)
    if hw:
        parts.append(f"<p><strong>Hardware:</strong> {html.escape(str(hw))}</p>")
    runs_file = root / "results" / "runs.json"
    if runs_file.exists():
        runs = json.loads(runs_file.read_text())
        parts.append("<h2>Notebook runs</h2>")
        parts.append(
            _table(
                [{"notebook": k, **v} for k, v in sorted(runs.items())],
                [
                    "notebook",
                    "profile",
                    "seconds",
                    "peak_memory_mib",
                    "peak_private_mib",
                    "memory_cap_mib",
                    "cgroup_peak_mib",
                ],
            )
        )
        parts.append(
            "<p>peak_memory_mib: the kernel and the processes it starts, proportional set sizes "
            "summed; peak_private_mib: their heap; memory_cap_mib / cgroup_peak_mib: the cgroup "
            "cap it ran under, if any, and what was charged to it (page cache included).</p>"
        )
    parts.append("<h2>Key figures</h2>")
    parts.append(
        _table(
            [{**r, "value": short(r["value"])} for r in summary_rows()],
            ["notebook", "figure", "value"],
        )
    )
    for name, values in results.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        executed = root / "html" / f"{name}.html"
        if executed.exists():
            parts.append(
                f"<p><a href='html/{name}.html'>Executed notebook (HTML)</a> · "
                f"<a href='executed/{name}.ipynb'>.ipynb</a></p>"
            )
        for key in values.get("report_tables", []):
            rows = values.get(key)
            if isinstance(rows, list) and rows and isinstance(rows[0], dict):
                parts.append(f"<h3>{html.escape(key)}</h3>" + _table(rows))
        for fig in values.get("figures", []):
            parts.append(f"<img src='figures/{html.escape(fig)}.png' alt='{html.escape(fig)}'>")
    parts.append("</body></html>")
    index = root / "index.html"
    index.write_text("\n".join(parts))
    return index


def short(value: Any) -> str:
    """A compact text form of a recorded value for the terminal summary."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        keys = [k for k in ("p50_ms", "p95_ms", "accuracy") if k in value]
        if keys:
            return ", ".join(f"{k} {value[k]:.4g}" for k in keys)
        return ", ".join(f"{k} {short(v)}" for k, v in list(value.items())[:8])
    if isinstance(value, list):
        return f"[{len(value)} rows]" if value and isinstance(value[0], dict) else str(value)[:80]
    return str(value)[:80]
