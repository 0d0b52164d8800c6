"""JupyterLab in a real browser: notebook 01 run from the UI, its k widget moved.

Starts JupyterLab on 127.0.0.1 with a token, drives Debian's Chromium through
Playwright (``executable_path`` pointed at it, headless, background networking
off), runs all cells of notebook 01, checks that the k slider renders and that
moving it redraws the decision regions. Screenshots go to ``reports/browser/``.
Skips with the reason where Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time

import pytest

from workbench import paths

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
        if p and os.path.exists(p)
    ),
    None,
)
try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - playwright is in requirements.txt
    sync_playwright = None

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def lab(workdirs):
    import httpx

    from workbench import serve

    if CHROMIUM is None:
        pytest.skip("Chromium not found: install Debian's 'chromium' package (.ci/run does)")
    if sync_playwright is None:
        pytest.skip("the playwright package is not installed (pip install -r requirements.txt)")
    token = secrets.token_hex(16)
    port = serve.free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={paths.notebooks_dir()}",
        "--ServerApp.open_browser=False",
        "--allow-root",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = open(workdirs["reports"] / "jupyterlab.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if (
                    httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start; see {log.name}")
            time.sleep(0.5)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        _discard_checkpoints()


def _discard_checkpoints() -> None:
    shutil.rmtree(paths.notebooks_dir() / ".ipynb_checkpoints", ignore_errors=True)


def _accept_dialog(page, timeout_ms: int = 5_000) -> None:
    """Accept a JupyterLab dialog if one opens (e.g. "Select Kernel" where several kernels exist)."""
    try:
        page.locator(".jp-Dialog .jp-mod-accept").first.wait_for(timeout=timeout_ms)
    except PlaywrightTimeoutError:
        return
    page.locator(".jp-Dialog .jp-mod-accept").first.click()


def _plot_src(page) -> str:
    return (
        page.locator(".widget-interact .jp-OutputArea-output img").last.get_attribute("src") or ""
    )


def test_notebook_01_runs_in_jupyterlab_and_the_k_widget_redraws(lab):
    url, token = lab
    shots = paths.reports_dir("browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
        except Exception:
            browser.close()
            raise
        try:
            page.goto(
                f"{url}/lab/tree/01-edge-iris-knn.ipynb?token={token}",
                wait_until="domcontentloaded",
            )
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
            _accept_dialog(page)
            page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000
            )
            # Run all cells; if the kernel was not connected yet the run is dropped, so retry.
            results = page.locator(".jp-RenderedMarkdown table").last
            for attempt in range(3):
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
                try:  # the whole notebook ran when its last code cell has printed the results table
                    results.wait_for(state="attached", timeout=90_000 * (attempt + 1))
                    break
                except PlaywrightTimeoutError:
                    if attempt == 2:
                        raise
            # JupyterLab 4 virtualises cells out of view: scroll the widget in before using it.
            slider = page.locator(".widget-interact .widget-slider").first
            slider.wait_for(state="attached", timeout=60_000)
            slider.scroll_into_view_if_needed()
            slider.wait_for(state="visible", timeout=30_000)
            page.locator(".widget-interact .jp-OutputArea-output img").last.wait_for(timeout=60_000)
            readout = page.locator(".widget-interact .widget-readout").first
            before_k, before_src = readout.inner_text().strip(), _plot_src(page)
            page.screenshot(path=str(shots / "01-widget-before.png"), full_page=False)

            handle = page.locator(".widget-interact .noUi-handle").first
            handle.focus()
            page.keyboard.press("ArrowRight")
            deadline = time.monotonic() + 60
            while _plot_src(page) == before_src and time.monotonic() < deadline:
                page.wait_for_timeout(250)
            after_k, after_src = readout.inner_text().strip(), _plot_src(page)
            page.screenshot(path=str(shots / "01-widget-after.png"), full_page=False)

            assert after_k != before_k, f"the k readout did not change ({before_k} -> {after_k})"
            assert after_src and after_src != before_src, (
                "moving k did not redraw the decision regions"
            )
            tracebacks = page.locator(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                has_text="Traceback",
            ).count()
            assert tracebacks == 0, "a cell raised in the browser run"
        except Exception:
            page.screenshot(path=str(shots / "01-failure.png"), full_page=False)
            raise
        finally:
            browser.close()
    assert (shots / "01-widget-before.png").stat().st_size > 0
