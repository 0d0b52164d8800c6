"""The static site on a small executed notebook: a page per notebook with its outputs and the
links bar, links retargeted so none is broken, the report and its figures beside them, the
Binder and Colab links pointing at the repository of the README's Binder badge, and a clear
refusal when there is nothing to show."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from workbench.run import site

ROOT = Path(__file__).resolve().parents[2]


def _executed(folder: Path, name: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            f"# {name}: a title\n\nWhat you will learn, in one paragraph.\n\n"
            "See [the next notebook](02-next.ipynb), [the README](../README.md) and "
            "![a figure](figure.png)."
        ),
        nbformat.v4.new_code_cell("print('hello')"),
    ]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    path = folder / "executed" / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def reports(tmp_path) -> Path:
    reports = tmp_path / "reports"
    _executed(reports, "01-first")
    _executed(reports, "02-next")
    (reports / "figures").mkdir()
    (reports / "figures" / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (reports / "index.html").write_text(
        '<html><body><img src="figures/plot.png"><a href="html/01-first.html">01</a>'
        '<a href="executed/02-next.ipynb">02</a></body></html>'
    )
    (reports / "results").mkdir()
    (reports / "results" / "runs.json").write_text(
        json.dumps({"01-first": {"seconds": 12.3, "profile": "smoke"}})
    )
    return reports


def test_site_pages_links_and_report(reports, tmp_path):
    index = site.build_site(tmp_path / "site", reports=reports)
    root = index.parent
    text = index.read_text()
    assert "01-first: a title" in text and "What you will learn" in text
    assert "Executed in 12 s with the smoke profile" in text
    for name in ("01-first", "02-next"):
        body = (root / "html" / f"{name}.html").read_text()
        assert "hello" in body  # the output
        assert site.colab_url(name) in body and "mybinder.org/v2/gh/" in body
        assert (root / "executed" / f"{name}.ipynb").exists()
    first = (root / "html" / "01-first.html").read_text()
    assert 'href="02-next.html"' in first  # a notebook link goes to its page
    assert f"github.com/{site.REPOSITORY}/blob/{site.BRANCH}/README.md" in first
    assert f"github.com/{site.REPOSITORY}/blob/{site.BRANCH}/notebooks/figure.png" in first
    assert (root / "report.html").exists() and (root / "figures" / "plot.png").exists()
    for html in root.rglob("*.html"):
        for link in site.local_links(html.read_text()):
            assert (html.parent / link.split("?")[0]).exists(), f"{html.name}: {link}"


def test_site_is_replaced_whole(reports, tmp_path):
    out = tmp_path / "site"
    out.mkdir()
    (out / "stale.html").write_text("old")
    site.build_site(out, reports=reports)
    assert not (out / "stale.html").exists() and (out / "index.html").exists()


def test_no_run_no_site(tmp_path):
    with pytest.raises(site.SiteError, match="make run"):
        site.build_site(tmp_path / "site", reports=tmp_path / "reports")
    assert not (tmp_path / "site").exists()


def test_links_point_at_the_readme_binder_repository():
    badge = re.search(
        r"mybinder\.org/v2/gh/([^/]+/[^/]+)/([^?)]+)", (ROOT / "README.md").read_text()
    )
    assert badge, "the README's Binder badge is missing"
    assert (site.REPOSITORY, site.BRANCH) == (badge[1], badge[2])
    assert site.binder_url("01-x").startswith(f"https://mybinder.org/v2/gh/{badge[1]}/{badge[2]}?")
    assert "lab%2Ftree%2Fnotebooks%2F01-x.ipynb" in site.binder_url("01-x")


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("02-a.ipynb", "02-a.html"),
        ("./03-b.ipynb#part", "03-b.html#part"),
        ("#section", "#section"),
        ("https://example.org/x", "https://example.org/x"),
        ("data:image/png;base64,AA", "data:image/png;base64,AA"),
        (
            "../docs/tests.md",
            f"https://github.com/{site.REPOSITORY}/blob/{site.BRANCH}/docs/tests.md",
        ),
    ],
)
def test_retarget(link, expected):
    assert site.retarget(link) == expected


def test_summaries_are_plain_text():
    notebook = {
        "cells": [
            {"cell_type": "code", "source": ["x = 1"]},
            {
                "cell_type": "markdown",
                "source": [
                    "# 03 · Compress\n\nTrain with `tf.distribute`, "
                    "**measure**, see [notebook 02](02-a.ipynb)."
                ],
            },
        ]
    }
    assert site.notebook_intro(notebook) == (
        "03 · Compress",
        "Train with tf.distribute, measure, see notebook 02.",
    )
