"""HTML pages: the report of a whole run, and any page in the same style.

:func:`build_index` renders ``reports/index.html`` from what the notebooks recorded
(:mod:`workbench.report.recorder`): the notebook runs, the key
figures, and each notebook's tables and plots.

Pages are rendered from one Jinja template shipped with the package
(``workbench/report/templates/page.html.j2``). :func:`render_page` writes any page in the same
style from :class:`Section` objects holding paragraphs, links, tables (lists of dicts or
DataFrames, :class:`Table`) and figures (:class:`Figure`). Every value is escaped. Wide
tables scroll inside their own box with the row name (the first column) kept in view, and
numbers are right-aligned and formatted (:func:`format_value`).
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core import atomic, paths

TITLE = "Edge-cloud workbench: report of the whole flow"


RUN_COLUMNS = [
    "notebook",
    "profile",
    "seconds",
    "peak_memory_mib",
    "peak_private_mib",
    "memory_cap_mib",
    "cgroup_peak_mib",
]


RUN_NOTE = (
    "peak_memory_mib: the kernel and the processes it starts, proportional set sizes summed; "
    "peak_private_mib: their heap; memory_cap_mib / cgroup_peak_mib: the cgroup cap it ran "
    "under, if any, and what was charged to it (page cache included)."
)


# ===================================================================== pages


@dataclass
class Table:
    """A table for a page; the first column names the row and stays in view when it scrolls.

    Attributes:
        rows: a list of dicts (columns in order of first appearance), a pandas DataFrame
            (a named or non-default index becomes the first column), or a dict of dicts
            (its keys become the first column, ``name``).
        title: shown above the table.
        columns: which columns to show, in order (default: all).
        row_name: the column naming each row, moved first (default: the first column).
        caption: a note shown below the table.
    """

    rows: Any
    title: str = ""
    columns: Sequence[str] | None = None
    row_name: str | None = None
    caption: str = ""


@dataclass
class Figure:
    """An image for a page.

    Attributes:
        source: a matplotlib Figure (embedded as PNG), or the path or URL of an image,
            written as is (relative to the page) unless ``embed`` is set.
        alt: the text read out, and shown when the image is missing.
        caption: shown below the image.
        embed: put the image file inside the page, so the page stands alone.
    """

    source: Any
    alt: str = ""
    caption: str = ""
    embed: bool = False


@dataclass
class Section:
    """A part of a page: a heading, paragraphs, links ``(label, href)``, tables, figures.

    Tables may be given as :class:`Table` or directly as rows (list of dicts, DataFrame);
    figures as :class:`Figure`, a path, or a matplotlib Figure. Paragraphs are text
    (escaped) unless marked as HTML with :class:`markupsafe.Markup`.
    """

    title: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Any] = ()
    figures: Sequence[Any] = ()
    links: Sequence[tuple[str, str]] = ()
    anchor: str = ""  # the section's id in the page (default: from the title)


@dataclass(frozen=True)
class _Cell:
    text: str
    css: str = ""


@dataclass(frozen=True)
class _Column:
    name: str
    numeric: bool


@dataclass
class _TableView:
    title: str
    columns: list[_Column]
    rows: list[list[_Cell]]
    caption: str
    empty: str


@dataclass
class _FigureView:
    src: str
    alt: str
    caption: str
    missing: str


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)


def format_value(value: Any) -> str:
    """The text of a table cell.

    Integers get thousands separators; other numbers four significant digits, or whole
    with separators from 1,000 up; ``None`` (a NaN in recorded results) is a dash;
    booleans are yes/no; dicts and lists are summarised (:func:`short`).

    Example:
        >>> [format_value(v) for v in (1234567, 0.123456, 98765.4, None, True)]
        ['1,234,567', '0.1235', '98,765', '—', 'yes']
    """
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e3 else f"{value:.4g}"
    if isinstance(value, dict | list | tuple):
        return short(value)
    return str(value)


def _records(rows: Any) -> list[dict[str, Any]]:
    """Rows of a table as dicts, from a list of dicts, a DataFrame or a dict of dicts."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        index = rows.index
        named = any(n is not None for n in index.names)
        default = index.__class__.__name__ == "RangeIndex" and index.start == 0
        return (rows.reset_index() if named or not default else rows).to_dict(orient="records")
    if isinstance(rows, Mapping) and all(isinstance(v, Mapping) for v in rows.values()):
        return [{"name": k, **v} for k, v in rows.items()]
    if isinstance(rows, Sequence) and all(isinstance(r, Mapping) for r in rows):
        return [dict(r) for r in rows]
    raise TypeError(
        f"Table rows: expected a list of dicts, a pandas DataFrame or a dict of dicts, "
        f"got {type(rows).__name__}."
    )


def _table_view(table: Table) -> _TableView:
    rows = _records(table.rows)
    columns = list(table.columns or dict.fromkeys(k for r in rows for k in r))
    if table.row_name in columns:
        columns.remove(table.row_name)
        columns.insert(0, table.row_name)
    heads = [_Column(str(c), _numeric_column(rows, c)) for c in columns]
    cells = [[_cell(r, c) for c in columns] for r in rows]
    empty = f"{table.title or 'This table'}: no rows recorded."
    return _TableView(table.title, heads, cells, table.caption, empty)


def _cell(row: dict[str, Any], column: str) -> _Cell:
    if column not in row:
        return _Cell("")
    value = row[column]
    return _Cell(format_value(value), "num" if _is_number(value) else "")


def _numeric_column(rows: list[dict[str, Any]], column: str) -> bool:
    values = [r.get(column) for r in rows if r.get(column) is not None]
    return bool(values) and all(_is_number(v) for v in values)


def _figure_view(figure: Figure, base: Path | None) -> _FigureView:
    source, alt = figure.source, figure.alt
    if hasattr(source, "savefig"):  # a matplotlib Figure
        buffer = io.BytesIO()
        source.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        return _FigureView(_data_uri(buffer.getvalue(), "png"), alt or "figure", figure.caption, "")
    text = str(source)
    alt = alt or Path(text).stem
    if re.match(r"^(https?:|data:)", text):
        return _FigureView(text, alt, figure.caption, "")
    path = Path(text) if Path(text).is_absolute() or base is None else base / text
    if not path.exists():
        return _FigureView("", alt, "", f"Figure {alt!r} is missing (no file at {path}).")
    if figure.embed:
        return _FigureView(_data_uri(path.read_bytes(), path.suffix), alt, figure.caption, "")
    return _FigureView(text, alt, figure.caption, "")


def _data_uri(data: bytes, suffix: str) -> str:
    kind = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "svg": "image/svg+xml"}
    mime = kind.get(suffix.lower().lstrip("."), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass
class _SectionView:
    title: str
    anchor: str
    paragraphs: list[str]
    links: list[tuple[str, str]]
    tables: list[_TableView]
    figures: list[_FigureView]


def _section_view(section: Section, base: Path | None) -> _SectionView:
    tables = [t if isinstance(t, Table) else Table(t) for t in section.tables]
    figures = [f if isinstance(f, Figure) else Figure(f) for f in section.figures]
    anchor = section.anchor or re.sub(r"[^a-z0-9]+", "-", section.title.lower()).strip("-")
    return _SectionView(
        section.title,
        anchor or "section",
        list(section.paragraphs),
        list(section.links),
        [_table_view(t) for t in tables],
        [_figure_view(f, base) for f in figures],
    )


def _environment():
    import jinja2
    from markupsafe import Markup, escape

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("workbench.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    # Long column names may wrap after an underscore instead of widening the table.
    env.filters["breakable"] = lambda name: Markup(str(escape(name)).replace("_", "_<wbr>"))
    return env


def render_html(
    title: str,
    sections: Sequence[Section],
    *,
    intro: Sequence[str] = (),
    base: Path | None = None,
) -> str:
    """The HTML of a page (see :func:`render_page`); ``base``: the page's folder, to check
    that figure files exist (a missing one is reported on the page, not left broken)."""
    from workbench import __version__

    seen: dict[str, int] = {}
    views = []
    for section in sections:
        view = _section_view(section, base)
        seen[view.anchor] = seen.get(view.anchor, 0) + 1
        if seen[view.anchor] > 1:
            view.anchor += f"-{seen[view.anchor]}"
        views.append(view)
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        _environment()
        .get_template("page.html.j2")
        .render(
            title=title,
            intro=list(intro),
            sections=views,
            footer=f"Written {now} by the edge-cloud workbench {__version__}.",
        )
    )


def render_page(
    path: Path | str, *, title: str, sections: Sequence[Section], intro: Sequence[str] = ()
) -> Path:
    """Write a standalone HTML page in the report's style and return its path.

    Example:
        >>> render_page(  # doctest: +SKIP
        ...     "reports/assess.html",
        ...     title="Assessment of model.keras",
        ...     intro=["Measured on this machine."],
        ...     sections=[
        ...         Section("Accuracy", paragraphs=["On the test set."], tables=[rows]),
        ...         Section("Latency", figures=[Figure(fig, alt="latency", embed=True)]),
        ...     ],
        ... )

    Args:
        path: the HTML file to write (atomically); its folder is created.
        title: the page's title and heading.
        sections: the page's parts, in order; more than three get a table of contents.
        intro: paragraphs under the title.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = render_html(title, sections, intro=intro, base=path.parent)
    atomic.write_text(path, page)
    return path


# ===================================================================== the index


def summary_rows() -> list[dict[str, Any]]:
    """Key figures of every notebook that has recorded results, one row per figure."""
    rows = []
    for name, values in _recorded(None).items():
        for key in values.get("summary_keys", []):
            rows.append({"notebook": name, "figure": key, "value": values.get(key)})
    return rows


def _recorded(notebooks: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """Each notebook's recorded results (an unreadable file gives ``{"_error": why}``)."""
    results = {}
    for path in sorted(paths.reports_dir("results").glob("[0-9][0-9]-*.json")):
        if notebooks is not None and path.stem not in notebooks:
            continue
        try:
            results[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            results[path.stem] = {"_error": f"could not read {path}: {err}"}
    return results


def _runs_section(root: Path) -> Section | None:
    path = root / "results" / "runs.json"
    if not path.exists():
        return None
    runs = json.loads(path.read_text())
    rows = [{"notebook": name, **run} for name, run in sorted(runs.items())]
    extra = [k for r in rows for k in r if k not in RUN_COLUMNS]
    columns = [c for c in RUN_COLUMNS if any(c in r for r in rows)] + list(dict.fromkeys(extra))
    return Section("Notebook runs", tables=[Table(rows, columns=columns, caption=RUN_NOTE)])


def _key_figures_section(results: dict[str, dict[str, Any]]) -> Section:
    rows = [
        {"notebook": name, "figure": key, "value": v if _is_number(v) else short(v)}
        for name, values in results.items()
        for key in values.get("summary_keys", [])
        for v in [values.get(key)]
    ]
    return Section("Key figures", tables=[Table(rows, columns=["notebook", "figure", "value"])])


def _notebook_section(root: Path, name: str, values: dict[str, Any]) -> Section:
    links = [
        (label, f"{folder}/{name}.{ext}")
        for label, folder, ext in (
            ("Executed notebook (HTML)", "html", "html"),
            (".ipynb", "executed", "ipynb"),
        )
        if (root / folder / f"{name}.{ext}").exists()
    ]
    paragraphs = [values["_error"]] if "_error" in values else []
    tables = []
    for key in values.get("report_tables", []):
        rows = values.get(key)
        if isinstance(rows, list | dict) and rows:
            tables.append(Table(rows, title=key))
        elif skipped := skip_reason(values, key):
            paragraphs.append(f"{key}: not measured in this run. {skipped}")
        elif isinstance(rows, list | dict):
            paragraphs.append(f"Table {key!r} has no rows in this run.")
        else:
            paragraphs.append(f"Table {key!r} was listed but not recorded.")
    figures = [Figure(f"figures/{fig}.png", alt=fig) for fig in values.get("figures", [])]
    return Section(name, paragraphs=paragraphs, tables=tables, figures=figures, links=links)


def skip_reason(values: dict[str, Any], key: str) -> str | None:
    """Why a notebook left table ``key`` empty, if it recorded why: under
    ``<key>_skipped_reason`` or ``<first word>_skipped_reason`` (``netem_validation`` ->
    ``netem_skipped_reason``)."""
    for name in (f"{key}_skipped_reason", f"{key.split('_')[0]}_skipped_reason"):
        if values.get(name):
            return str(values[name])
    return None


def build_index(notebooks: list[str] | None = None) -> Path:
    """Write ``reports/index.html``: notebook runs, key figures, each notebook's tables and plots.

    Args:
        notebooks: only these notebooks' results (default: every one recorded).
    """
    root = paths.reports_dir()
    results = _recorded(notebooks)
    hardware = next((v["hardware"] for v in results.values() if v.get("hardware")), None)
    intro = [f"Hardware: {format_value(hardware)}"] if hardware else []
    if not results:
        intro.append(
            f"No recorded results yet in {root / 'results'}: run `make run` (or any notebook)."
        )
    sections = [_runs_section(root), _key_figures_section(results)]
    sections += [_notebook_section(root, name, values) for name, values in results.items()]
    page = render_html(TITLE, [s for s in sections if s], intro=intro, base=root)
    index = root / "index.html"
    atomic.write_text(index, page)
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
