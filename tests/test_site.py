"""The course as a static site, built from the smoke run of every notebook in this session
(the notebooks run once; this file sorts after ``test_notebooks.py``, so it reuses their runs)
and the report of that run: every notebook has its page, with Binder and Colab links, and
every local link in the site resolves."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from notebook_runs import NOTEBOOKS, run_once

from workbench.report import page
from workbench.run import site

pytestmark = pytest.mark.notebooks


def broken_links(root: Path) -> list[str]:
    """``page -> target`` for every local link in the site's pages that names no file."""
    broken = []
    for html in sorted(root.rglob("*.html")):
        for link in site.local_links(html.read_text(errors="replace")):
            target = unquote(urlsplit(link).path)
            if not target:
                continue
            resolved = (html.parent / target).resolve()
            if not resolved.exists() or not resolved.is_relative_to(root.resolve()):
                broken.append(f"{html.relative_to(root)} -> {link}")
    return broken


def test_site_of_the_smoke_run(workdirs, cifar10_path, tmp_path):
    for name in NOTEBOOKS:
        run_once(name)
    page.build_index()  # the report, as `make run` leaves it
    index = site.build_site(tmp_path / "site")
    root = index.parent
    text = index.read_text()
    assert "report.html" in text and (root / "report.html").exists()
    for name in NOTEBOOKS:
        notebook_page = root / "html" / f"{name}.html"
        assert notebook_page.exists(), f"no page for {name}"
        assert (root / "executed" / f"{name}.ipynb").exists()
        assert f"html/{name}.html" in text
        body = notebook_page.read_text()
        for url in (site.binder_url(name), site.colab_url(name)):
            assert url.replace("&", "&amp;") in body or url in body, (name, url)
        assert 'class="jp-Notebook' in body and "jp-OutputArea" in body  # with its outputs
    assert not broken_links(root), "\n".join(broken_links(root))
    # the report's own figures came along
    for figure in re.findall(r'src="(figures/[^"]+)"', (root / "report.html").read_text()):
        assert (root / figure).exists(), figure
