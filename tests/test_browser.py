"""JupyterLab in a real browser: notebooks run from the UI, their widgets moved.

Starts JupyterLab on 127.0.0.1 with a token, drives Debian's Chromium through
Playwright (``executable_path`` pointed at it, headless, background networking
off), runs all cells of a notebook and moves its widget: the k slider of 01 must
redraw the decision regions, the sparsity slider of 03 must change the reported
point, the RTT slider of 04 must redraw the crossover plot. 03 and 04 run in the
smoke profile (papermill injects its parameters without executing) after 02 has
run headless, since they read its model. Screenshots go to ``reports/browser/``.
Skips with the reason where Chromium or Playwright is missing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time

import pytest

from workbench.core import paths

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

    from workbench.cloud import serving

    if CHROMIUM is None:
        pytest.skip("Chromium not found: install Debian's 'chromium' package (.ci/run does)")
    if sync_playwright is None:
        pytest.skip("the playwright package is not installed (pip install -r requirements.txt)")
    token = secrets.token_hex(16)
    port = serving.free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={_lab_root()}",  # copies, not the repository's notebooks
        "--ServerApp.open_browser=False",
        "--allow-root",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = open(workdirs["reports"] / "jupyterlab.log", "w")  # noqa: SIM115 - closed below
    env = dict(os.environ)  # the kernels inherit it: the workdirs and, where known, CIFAR-10
    from conftest import cifar10_source

    if "WORKBENCH_CIFAR10" not in env and cifar10_source() is not None:
        env["WORKBENCH_CIFAR10"] = str(cifar10_source())
    shutil.copy(paths.notebooks_dir() / "01-edge-iris-knn.ipynb", _lab_root())
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    )
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


def _lab_root():
    """JupyterLab's root: copies of the notebooks in the reports folder, not the repository."""
    return paths.reports_dir("browser", "lab")


def _prepare_smoke_copy(name: str, **overrides):
    """A copy of notebook ``name`` with its smoke parameters (and ``overrides``) injected,
    not executed."""
    import papermill as pm

    from workbench.report import recorder
    from workbench.run import params

    recorder.results_path(name).unlink(missing_ok=True)  # "finished" is read from a fresh file
    target = _lab_root() / f"{name}.ipynb"
    pm.execute_notebook(
        str(paths.notebooks_dir() / f"{name}.ipynb"),
        str(target),
        parameters={**params.profile_parameters(name, "smoke"), **overrides},
        prepare_only=True,
        progress_bar=False,
    )
    return target


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


@contextlib.contextmanager
def _browser_page(name: str):
    """A Chromium page; a screenshot ``<name>-failure.png`` if the block raises."""
    shots = paths.reports_dir("browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                yield page
            except (Exception, pytest.fail.Exception):
                page.screenshot(path=str(shots / f"{name}-failure.png"), full_page=False)
                raise
        finally:
            browser.close()


def _run_all(page, url: str, token: str, file: str, finished, *, timeout_s: float) -> None:
    """Open ``file`` in JupyterLab and run all cells until ``finished()`` is true."""
    # A workspace of its own, reset: otherwise JupyterLab reopens the previous test's notebook.
    workspace = file.split("-")[0]
    page.goto(
        f"{url}/lab/workspaces/nb{workspace}/tree/{file}?reset&token={token}",
        wait_until="domcontentloaded",
    )
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
    _accept_dialog(page)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    # Run all cells; if the kernel was not connected yet the run is dropped, so retry.
    for attempt in range(3):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
        deadline = time.monotonic() + timeout_s * (attempt + 1)
        while time.monotonic() < deadline:
            if finished():
                return
            if _traceback_count(page):
                pytest.fail(
                    f"{file}: a cell raised in the browser run (see the failure screenshot)"
                )
            page.wait_for_timeout(500)
        if page.locator(".jp-InputArea-prompt", has_text="[*]").count():
            pytest.fail(f"{file} did not finish within {timeout_s * (attempt + 1):.0f} s")
    pytest.fail(f"{file}: Run All did not start the cells")


def _traceback_count(page) -> int:
    return page.locator(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
        has_text="Traceback",
    ).count()


def _no_tracebacks(page) -> None:
    assert _traceback_count(page) == 0, "a cell raised in the browser run"


def _widget_in_view(page, selector: str):
    """JupyterLab 4 virtualises cells out of view: scroll the widget in before using it."""
    widget = page.locator(selector).first
    widget.wait_for(state="attached", timeout=60_000)
    widget.scroll_into_view_if_needed()
    widget.wait_for(state="visible", timeout=30_000)
    return widget


def _press_and_wait(page, handle_selector: str, read, *, key: str = "ArrowRight") -> tuple:
    """Move a slider one step with the keyboard; wait until ``read()`` changes."""
    before = read()
    handle = page.locator(handle_selector).first
    handle.focus()
    page.keyboard.press(key)
    deadline = time.monotonic() + 60
    while read() == before and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    return before, read()


def _slider_redraws_plot(page, stem: str, what: str) -> None:
    """Move the interact widget's first slider one step: its readout and its plot must change."""
    shots = paths.reports_dir("browser")
    _widget_in_view(page, ".widget-interact .widget-slider")
    page.locator(".widget-interact .jp-OutputArea-output img").last.wait_for(timeout=60_000)
    readout = page.locator(".widget-interact .widget-readout").first
    value_before = readout.inner_text().strip()
    page.screenshot(path=str(shots / f"{stem}-widget-before.png"), full_page=False)
    src_before, src_after = _press_and_wait(
        page, ".widget-interact .noUi-handle", lambda: _plot_src(page)
    )
    value_after = readout.inner_text().strip()
    page.screenshot(path=str(shots / f"{stem}-widget-after.png"), full_page=False)
    assert value_after != value_before, f"the {what} readout did not change ({value_before})"
    assert src_after and src_after != src_before, f"moving {what} did not redraw the plot"
    _no_tracebacks(page)


def _results_recorded(notebook: str, key: str):
    """True once the running notebook has recorded ``key``: "hardware" is what 03 and 04
    record last ("figures" is there from the first figure on, while the kernel still has the
    rest of the notebook to run and a widget's callback would wait behind it)."""
    import json

    from workbench.report import recorder

    def done() -> bool:
        try:
            return key in json.loads(recorder.results_path(notebook).read_text())
        except (OSError, ValueError):
            return False

    return done


def test_notebook_01_runs_in_jupyterlab_and_the_k_widget_redraws(lab):
    url, token = lab
    shots = paths.reports_dir("browser")
    with _browser_page("01") as page:
        results = page.locator(".jp-RenderedMarkdown table").last
        _run_all(
            page,
            url,
            token,
            "01-edge-iris-knn.ipynb",
            lambda: results.count() > 0,  # its last cell prints the results table
            timeout_s=90,
        )
        _slider_redraws_plot(page, "01", "k")
    assert (shots / "01-widget-before.png").stat().st_size > 0


@pytest.fixture(scope="module")
def cloud_model(lab, cifar10_path):
    """Notebook 02 run headless (smoke): 03 and 04 read its model. The same run serves the
    notebook tests (``notebook_runs``), so the session trains it once."""
    from notebook_runs import run_once

    run_once("02-cloud-cifar10-cnn")


# 03 in the browser checks its widgets, not its search (test_notebooks runs that in full
# smoke): no clustering and no structured pruning, which cost two thirds of its time.
BROWSER_03 = {"cluster_counts": [], "slim_fractions": []}


def test_notebooks_03_04_and_05_widgets_respond_in_jupyterlab(lab, cloud_model):
    """03's sparsity slider picks another sweep point; 04's RTT slider redraws the crossover;
    05's threshold slider redraws the cascade's latencies."""
    url, token = lab
    shots = paths.reports_dir("browser")

    name = "03-compress-for-the-edge"
    _prepare_smoke_copy(name, **BROWSER_03)
    with _browser_page("03") as page:
        _run_all(
            page, url, token, f"{name}.ipynb", _results_recorded(name, "hardware"), timeout_s=400
        )
        slider = ".widget-interact .widget-hslider, .widget-interact .widget-slider"
        _widget_in_view(page, slider)
        text = page.locator(".widget-interact .jp-OutputArea-output").first

        def point() -> str:
            return text.inner_text().strip() if text.count() else ""

        def press_until(key: str, want: str) -> str:
            """Press ``key`` on the slider (focusing it scrolls it into view, and JupyterLab
            renders what is in view); wait until the printed level starts with ``want``."""
            page.locator(".widget-interact .noUi-handle").first.focus()
            page.keyboard.press(key)
            deadline = time.monotonic() + 60
            while not point().startswith(want) and time.monotonic() < deadline:
                page.wait_for_timeout(250)
            return point()

        sparsities = runner_sparsities(name)
        down, up = (f"target sparsity {s:.0%}" for s in sparsities[:2])  # first, second level
        page.screenshot(path=str(shots / "03-widget-before.png"), full_page=False)
        after = press_until("ArrowRight", up)  # the slider starts at the first level
        page.screenshot(path=str(shots / "03-widget-after.png"), full_page=False)
        back = press_until("ArrowLeft", down)
        assert after.startswith(up), after
        assert back.startswith(down), back
        _no_tracebacks(page)

    # 04's RTT slider redraws the crossover; 05's cascade-threshold slider the latency bars
    for name, what in (("04-edge-vs-cloud", "RTT"), ("05-edge-cloud-collaboration", "threshold")):
        _prepare_smoke_copy(name)
        with _browser_page(name[:2]) as page:
            _run_all(
                page,
                url,
                token,
                f"{name}.ipynb",
                _results_recorded(name, "hardware"),
                timeout_s=400,
            )
            _slider_redraws_plot(page, name[:2], what)


def runner_sparsities(name: str) -> list[float]:
    from workbench.run import params

    return list(params.profile_parameters(name, "smoke")["sparsities"])
