"""Execute the numbered notebooks with papermill: used by ``make run`` and by the tests.

Profiles: ``full`` runs each notebook with the defaults in its ``parameters``
cell; ``smoke`` injects the values in ``notebooks/params/smoke.yaml`` (one
section per notebook) so the whole flow runs in minutes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from workbench import paths


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the message holds the cell's source and the error."""


@dataclass(frozen=True)
class Execution:
    name: str
    output: Path
    seconds: float
    peak_memory_bytes: int  # peak RSS of the kernel and its children (e.g. the model server)


class MemorySampler:
    """Samples the summed RSS of this process's kernel children (and their children) in a thread.

    Papermill starts the kernel as a child of this process; the notebook may start more
    processes (the model server). Their RSS is summed every ``interval_s`` and the peak kept,
    which is what counts against a memory limit such as mybinder.org's 2 GB.
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        import threading

        import psutil

        self._me = psutil.Process()
        self._known = {c.pid for c in self._me.children(recursive=True)}
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _sample(self) -> int:
        import psutil

        total = 0
        for child in self._me.children(recursive=True):
            if child.pid in self._known:
                continue
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.peak = max(self.peak, self._sample())

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def notebook_names() -> list[str]:
    """Stems of ``notebooks/NN-*.ipynb`` in flow order."""
    return sorted(p.stem for p in paths.notebooks_dir().glob("[0-9][0-9]-*.ipynb"))


def profile_parameters(name: str, profile: str) -> dict:
    """Parameters injected into notebook ``name`` for ``profile`` (``full`` injects none)."""
    if profile == "full":
        return {}
    file = paths.notebooks_dir() / "params" / f"{profile}.yaml"
    if not file.exists():
        raise FileNotFoundError(
            f"No profile file {file}; profiles are 'full' or a YAML in notebooks/params/."
        )
    sections = yaml.safe_load(file.read_text()) or {}
    return dict(sections.get(name) or {})


def kernel_name() -> str:
    """The project's own kernel (installed by ``make setup``) when present, else ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    return "workbench" if "workbench" in specs else "python3"


def execute(
    name: str,
    *,
    profile: str = "full",
    out_dir: Path | None = None,
    extra_parameters: dict | None = None,
    progress: bool = True,
) -> Execution:
    """Run one notebook top to bottom; write the executed copy to ``out_dir``.

    Raises:
        NotebookFailed: naming the notebook, the failing cell's source and the error.
    """
    import papermill as pm

    src = paths.notebooks_dir() / f"{name}.ipynb"
    out_dir = out_dir or paths.reports_dir("executed")
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{name}.ipynb"
    parameters = profile_parameters(name, profile) | (extra_parameters or {})
    start = time.perf_counter()
    try:
        with MemorySampler() as memory:
            pm.execute_notebook(
                str(src),
                str(output),
                parameters=parameters,
                kernel_name=kernel_name(),
                cwd=str(paths.notebooks_dir()),
                progress_bar=progress,
                log_output=False,
            )
    except pm.PapermillExecutionError as err:
        cell_source = _failing_cell_source(output, err.exec_count)
        raise NotebookFailed(
            f"Notebook {name} failed in cell [{err.exec_count}] ({err.ename}: {err.evalue}).\n"
            f"--- cell source ---\n{cell_source}\n--- traceback ---\n"
            + "\n".join(err.traceback)
            + f"\nExecuted copy: {output}"
        ) from None
    execution = Execution(name, output, time.perf_counter() - start, memory.peak)
    _record_run(execution, profile)
    return execution


def _record_run(execution: Execution, profile: str) -> None:
    """Add the run time and peak memory to ``reports/results/runs.json`` for the index."""
    import json
    import os

    path = paths.reports_dir("results") / "runs.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[execution.name] = {
        "profile": profile,
        "seconds": round(execution.seconds, 1),
        "peak_memory_mib": round(execution.peak_memory_bytes / 2**20, 1),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(runs, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _failing_cell_source(output: Path, exec_count: int | None) -> str:
    import nbformat

    try:
        nb = nbformat.read(output, as_version=4)
    except Exception:  # noqa: BLE001
        return "(executed notebook unreadable)"
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("execution_count") == exec_count:
            return cell.source
    for cell in nb.cells:  # papermill marks the failing cell with an error output
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return cell.source
    return "(cell not found)"


def to_html(executed: Path, out_dir: Path | None = None) -> Path:
    """Render an executed notebook as standalone HTML."""
    from nbconvert import HTMLExporter

    out_dir = out_dir or paths.reports_dir("html")
    body, _ = HTMLExporter().from_filename(str(executed))
    target = out_dir / f"{executed.stem}.html"
    target.write_text(body, encoding="utf-8")
    return target


def run_all(profile: str = "full", names: list[str] | None = None) -> list[Execution]:
    """Execute every notebook in order, render HTML, build the index and print a summary."""
    from workbench import report

    done = []
    for name in names or notebook_names():
        print(f"==> {name} ({profile} profile)", flush=True)
        execution = execute(name, profile=profile)
        to_html(execution.output)
        print(
            f"    done in {execution.seconds:.0f} s, peak kernel memory "
            f"{execution.peak_memory_bytes / 2**20:,.0f} MiB -> {execution.output}",
            flush=True,
        )
        done.append(execution)
    index = report.build_index()
    print("\nKey figures:")
    for row in report.summary_rows():
        print(f"  {row['notebook']:<28} {row['figure']:<32} {report.short(row['value'])}")
    print(f"\nReport: {index}")
    return done
