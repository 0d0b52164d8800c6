"""The course as a static site, readable without running anything (``make docs``).

:func:`build_site` renders what a run left in the reports folder: every executed notebook
(``executed/NN-*.ipynb``) as an HTML page with its outputs, under a bar linking the course
index and the notebook on mybinder.org and in Google Colab; the report of the run
(``index.html`` and its figures) as ``report.html``; and an index page in the report's style
(:func:`workbench.report.page.render_page`) listing the notebooks, with each one's title,
summary, run time and links. The site's folder mirrors the reports folder (``html/``,
``executed/``, ``figures/``), so the report's own links resolve unchanged.

The Binder and Colab links point at the repository named in the README's Binder badge
(:data:`REPOSITORY`, branch :data:`BRANCH`), where the notebooks are committed without
outputs.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
from pathlib import Path
from urllib.parse import quote

from workbench.core import atomic, paths
from workbench.report import page

REPOSITORY = "edge-cloud-workbench/workbench"  # GitHub owner/name of the repository
BRANCH = "main"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
TITLE = "Edge-cloud workbench: the course, executed"


class SiteError(ValueError):
    """There is nothing to build the site from; the message says what to run first."""


def binder_url(name: str) -> str:
    """mybinder.org, JupyterLab opened on notebook ``name`` of the repository."""
    return (
        f"https://mybinder.org/v2/gh/{REPOSITORY}/{BRANCH}"
        f"?urlpath={quote(f'lab/tree/notebooks/{name}.ipynb', safe='')}"
    )


def colab_url(name: str) -> str:
    """Google Colab, opening notebook ``name`` straight from the repository on GitHub."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/notebooks/{name}.ipynb"


def plain_text(markdown: str) -> str:
    """A markdown paragraph as one line of text: links to their text, no code or bold marks."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = text.replace("`", "").replace("**", "")
    return " ".join(text.split())


def notebook_intro(notebook: dict) -> tuple[str, str]:
    """The title (the first ``#`` heading) and the first paragraph of a notebook's markdown."""
    title, summary = "", ""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        text = "".join(cell.get("source", []))
        for block in re.split(r"\n\s*\n", text):
            block = block.strip()
            if not title and block.startswith("# "):
                title = block.splitlines()[0][2:].strip()
                rest = "\n".join(block.splitlines()[1:]).strip()
                block = rest
            if title and block and not block.startswith(("#", "!", "<", "|", "```")):
                return title, plain_text(block)
    return title, summary


def _bar(name: str) -> str:
    """The links shown above a notebook page (HTML; every value is ours)."""
    return (
        '<nav style="font-family: system-ui, sans-serif; padding: .6rem 1rem; '
        "border-bottom: 1px solid #d0d7de; display: flex; gap: 1rem; align-items: center; "
        'flex-wrap: wrap">'
        '<a href="../index.html">&larr; The course</a>'
        f'<a href="../executed/{name}.ipynb" download>Executed notebook (.ipynb)</a>'
        f'<a href="{binder_url(name)}"><img src="{BINDER_BADGE}" alt="Launch on Binder"></a>'
        f'<a href="{colab_url(name)}"><img src="{COLAB_BADGE}" alt="Open in Colab"></a>'
        "</nav>"
    )


def retarget(link: str) -> str:
    """Where a link written in a notebook points once the notebook is a page of the site.

    A link to another numbered notebook goes to its page; any other relative link (a file of
    the repository, such as ``../README.md``) goes to that file on GitHub; links with a
    scheme, fragments and protocol-relative links are left as they are.
    """
    if link.startswith(("#", "//")) or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", link):
        return link
    sibling = re.fullmatch(r"(?:\./)?(\d\d-[^/#?]+)\.ipynb(#.*)?", link)
    if sibling:
        return f"{sibling[1]}.html{sibling[2] or ''}"
    path = posixpath.normpath(posixpath.join("notebooks", link))
    return f"https://github.com/{REPOSITORY}/blob/{BRANCH}/{path.lstrip('./')}"


def render_notebook(executed: Path, target: Path) -> Path:
    """One executed notebook as an HTML page with its outputs and the bar of links on top;
    its own links retargeted (:func:`retarget`) so that none is broken in the site."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    body = re.sub(
        r"""((?:href|src)\s*=\s*)(["'])([^"']*)\2""",
        lambda m: f"{m[1]}{m[2]}{retarget(m[3])}{m[2]}",
        body,
    )
    opening = re.search(r"<body[^>]*>", body)
    if opening is None:  # nbconvert's templates always have one; say so if that changes
        raise SiteError(f"nbconvert wrote no <body> for {executed}: cannot add the links bar.")
    body = body[: opening.end()] + _bar(executed.stem) + body[opening.end() :]
    return atomic.write_text(target, body)


def _runs(reports: Path) -> dict:
    path = reports / "results" / "runs.json"
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def build_site(out: Path | str | None = None, *, reports: Path | str | None = None) -> Path:
    """Build the static site from the reports folder of a run; return its ``index.html``.

    Args:
        out: the site's folder (default ``<reports>/site``), replaced whole once the new
            site is complete.
        reports: where the run wrote (default :func:`workbench.core.paths.reports_dir`).

    Raises:
        SiteError: no executed notebooks there (no run yet).
    """
    reports = Path(reports) if reports is not None else paths.reports_dir()
    executed = sorted((reports / "executed").glob(paths.NOTEBOOK_PATTERN))
    if not executed:
        raise SiteError(
            f"No executed notebooks in {reports / 'executed'}: the site shows what a run "
            "computed, so run the notebooks first (`make run`, or `workbench run`), then "
            "`make docs` again."
        )
    out = Path(out) if out is not None else reports / "site"
    runs = _runs(reports)
    with atomic.temp_dir(out) as tmp:
        sections = []
        for notebook in executed:
            name = notebook.stem
            render_notebook(notebook, tmp / "html" / f"{name}.html")
            (tmp / "executed").mkdir(exist_ok=True)
            shutil.copyfile(notebook, tmp / "executed" / notebook.name)
            title, summary = notebook_intro(json.loads(notebook.read_text()))
            run = runs.get(name, {})
            facts = (
                [f"Executed in {run['seconds']:,.0f} s with the {run.get('profile', '?')} profile."]
                if "seconds" in run
                else []
            )
            sections.append(
                page.Section(
                    title or name,
                    paragraphs=[p for p in (summary, *facts) if p],
                    links=[
                        ("Read it, with its outputs", f"html/{name}.html"),
                        ("Executed .ipynb", f"executed/{name}.ipynb"),
                        ("Launch on Binder", binder_url(name)),
                        ("Open in Colab", colab_url(name)),
                    ],
                    anchor=name,
                )
            )
        report = reports / "index.html"
        if report.exists():
            shutil.copyfile(report, tmp / "report.html")
            if (reports / "figures").is_dir():
                shutil.copytree(reports / "figures", tmp / "figures")
            sections.insert(
                0,
                page.Section(
                    "The report of this run",
                    paragraphs=["Every notebook's recorded figures, tables and plots on one page."],
                    links=[("Open the report", "report.html")],
                ),
            )
        page.render_page(
            tmp / "index.html",
            title=TITLE,
            intro=[
                "The workbench's notebooks as one run executed them, with every output. "
                "Each figure was computed in that run, on the machine named in the report; "
                "run them yourself on Binder or Colab, or with `make run` on your own machine."
            ],
            sections=sections,
        )
    return out / "index.html"


def local_links(html: str) -> list[str]:
    """The local targets (``href``/``src`` without a scheme, ``#`` or ``data:``) in a page,
    for checking that a site is whole."""
    found = re.findall(r"""(?:href|src)\s*=\s*["']([^"'#]+)""", html)
    return [
        link
        for link in found
        if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", link) and not link.startswith("//")
    ]
