"""Execute the numbered notebooks with papermill: used by ``make run`` and by the tests.

Profiles: ``full`` runs each notebook with the defaults in its ``parameters``
cell; ``smoke`` injects the values in ``notebooks/params/smoke.yaml`` (one
section per notebook) so the whole flow runs in minutes. The parameters come from
:mod:`workbench.run.params`.

Before any notebook starts, :func:`run_all` checks that the data the notebooks read
is there (:func:`workbench.run.params.check_data`), so a missing dataset is one message saying what to do.
Memory is measured and capped by :mod:`workbench.core.memory`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.core import atomic, paths, quiet
from workbench.core.memory import MemoryLimit, MemorySampler
from workbench.run import kernel, params


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the message holds the cell's source and the error."""


@dataclass(frozen=True)
class Execution:
    name: str
    output: Path
    seconds: float
    peak_memory_bytes: int  # peak PSS of the kernel and its children (see memory.MemorySampler)
    peak_private_bytes: int = 0  # peak of their private memory (USS), mostly heap
    limit_bytes: int = 0  # the cgroup memory cap it ran under (0: none)
    limit_peak_bytes: int = 0  # the most memory charged to that cgroup


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
    memory_limit: MemoryLimit | None = None,
    record: dict | None = None,
) -> Execution:
    """Run one notebook top to bottom; write the executed copy to ``out_dir``.

    ``record``: more to keep in ``runs.json`` next to the measured seconds (the plan's
    estimate and the work it priced, :meth:`workbench.run.estimates.Estimate.record`); its
    ``estimate_s`` also sizes the limit for one cell (:func:`workbench.run.kernel.cell_timeout`).

    A watchdog (:mod:`workbench.run.kernel`) fails the run within seconds when the kernel stops
    answering its heartbeat (stopped, frozen) or is idle while a cell's reply never came.

    Raises:
        NotebookFailed: naming the notebook, the failing cell's source and the error
            (only the error's message when the notebook stopped on a dataset problem); or
            the cell (index, first line) that ran out of time or whose kernel stalled.
    """
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    src = paths.notebooks_dir() / f"{name}.ipynb"
    out_dir = out_dir or paths.reports_dir("executed")
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{name}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)  # a solution's: executed/solutions/
    quiet.set_log_environment()  # inherited by the kernel: TensorFlow's C++ INFO lines off
    parameters = params.profile_parameters(name, profile) | (extra_parameters or {})
    if memory_limit is not None:
        memory_limit.reset_peak()
        kills_before = memory_limit.oom_kills()
    start = time.perf_counter()
    try:
        with (
            MemorySampler() as memory,
            tempfile.TemporaryDirectory(prefix="wb-kernel-") as ipc,
        ):
            pm.execute_notebook(
                str(src),
                str(output),
                parameters=parameters,
                engine_name=kernel.engine(),
                kernel_name=kernel_name(),
                cwd=str(paths.notebooks_dir()),
                progress_bar=progress,
                log_output=False,
                execution_timeout=kernel.cell_timeout(profile, (record or {}).get("estimate_s")),
                config=kernel.kernel_config(ipc),
            )
    except pm.PapermillExecutionError as err:
        raise NotebookFailed(_failure_message(name, err, output)) from None
    except kernel.KernelStalled as err:
        raise NotebookFailed(f"Notebook {name}: {err}. Executed copy so far: {output}") from None
    except DeadKernelError as err:
        hint = ""
        if memory_limit is not None and memory_limit.oom_kills() > kills_before:
            hint = (
                f" The kernel was killed for lack of memory: it needed more than the "
                f"{memory_limit.limit_bytes / 2**20:,.0f} MiB cap."
            )
        raise NotebookFailed(
            f"Notebook {name}: the kernel died ({err}).{hint} Executed copy so far: {output}"
        ) from None
    execution = Execution(
        name,
        output,
        time.perf_counter() - start,
        memory.peak,
        memory.peak_private,
        memory_limit.limit_bytes if memory_limit else 0,
        memory_limit.peak_bytes() if memory_limit else 0,
    )
    record_run(execution, profile, record)
    return execution


# Errors a notebook raises for a user's set-up, with a message that says what to do:
# the traceback would only bury it.
_SETUP_ERRORS = ("DatasetError",)


def _failure_message(name: str, err, output: Path) -> str:
    """What went wrong in a cell, from papermill's error (its fields, not its str())."""
    from papermill.exceptions import strip_color

    where = f"Notebook {name} failed in cell [{err.exec_count}]"
    if err.ename in _SETUP_ERRORS:
        return f"{where}: {err.evalue}\nExecuted copy: {output}"
    traceback = strip_color("\n".join(err.traceback))
    return (
        f"{where} ({err.ename}: {err.evalue}).\n--- cell source ---\n{err.source}\n"
        f"--- traceback ---\n{traceback}\nExecuted copy: {output}"
    )


def record_run(execution: Execution, profile: str, extra: dict | None = None) -> None:
    """Add the run time and peak memory (and ``extra``: the estimate) to
    ``reports/results/runs.json`` for the index and the next run's plan."""
    import json

    path = paths.reports_dir("results") / "runs.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[execution.name] = {
        "profile": profile,
        "seconds": round(execution.seconds, 1),
        "peak_memory_mib": round(execution.peak_memory_bytes / 2**20, 1),
        "peak_private_mib": round(execution.peak_private_bytes / 2**20, 1),
    }
    if execution.limit_bytes:
        runs[execution.name]["memory_cap_mib"] = round(execution.limit_bytes / 2**20, 1)
        runs[execution.name]["cgroup_peak_mib"] = round(execution.limit_peak_bytes / 2**20, 1)
    runs[execution.name].update(extra or {})
    atomic.write_json(path, runs, indent=2, sort_keys=True)


def to_html(executed: Path, out_dir: Path | None = None) -> Path:
    """Render an executed notebook as standalone HTML."""
    from nbconvert import HTMLExporter

    out_dir = out_dir or paths.reports_dir("html")
    body, _ = HTMLExporter().from_filename(str(executed))
    return atomic.write_text(out_dir / f"{executed.stem}.html", body)


def run_all(
    profile: str = "full",
    names: list[str] | None = None,
    *,
    memory_cap_bytes: int | None = None,
    estimate: bool = True,
) -> list[Execution]:
    """Check the data, plan, execute every notebook in order, render HTML, build the index.

    Before the first notebook it prints the data found (source and image counts) and the
    plan: each notebook's estimated time on this machine and the total
    (:func:`workbench.run.estimates.make_plan`); while they run, one progress line with the run's ETA
    (:class:`workbench.run.progress.Progress`). Each estimate is recorded in ``runs.json`` next to
    the measured time.

    ``memory_cap_bytes``: run each notebook inside a memory cgroup with that cap
    (:class:`workbench.core.memory.MemoryLimit`), as on mybinder.org; a kernel killed for
    memory fails the run.
    ``estimate``: False skips the throughput probe (estimates then come only from runs
    recorded on this machine).

    Raises:
        workbench.data.datasets.DatasetError: a dataset is missing (before any notebook starts).
        ProfileError: the profile does not fit the notebooks (before any starts).
        NotebookFailed: a notebook failed.
    """
    from contextlib import nullcontext

    from workbench.report import page
    from workbench.run import estimates
    from workbench.run.progress import Progress

    names = names or params.notebook_names()
    params.check_data(names, profile)
    the_plan = estimates.make_plan(names, profile, measure=estimate)
    print(the_plan.describe(), flush=True)
    done = []
    with (
        MemoryLimit(memory_cap_bytes) if memory_cap_bytes else nullcontext() as limit,
        Progress(the_plan) as progress,
    ):
        for name in names:
            progress.write(f"==> {name} ({profile} profile)")
            progress.start(name)
            execution = execute(
                name,
                profile=profile,
                memory_limit=limit,
                progress=False,  # the plan's progress line instead of papermill's bar
                record=the_plan.estimates[name].record(),
            )
            finished = progress.finish(name, execution.seconds)
            to_html(execution.output)
            capped = (
                f", {execution.limit_peak_bytes / 2**20:,.0f} MiB charged to its "
                f"{execution.limit_bytes / 2**20:,.0f} MiB cgroup"
                if execution.limit_bytes
                else ""
            )
            progress.write(
                f"    done in {execution.seconds:.0f} s, peak kernel memory "
                f"{execution.peak_memory_bytes / 2**20:,.0f} MiB "
                f"({execution.peak_private_bytes / 2**20:,.0f} MiB private){capped} "
                f"-> {execution.output}\n{finished}"
            )
            done.append(execution)
    index = page.build_index()
    print("\nKey figures:")
    for row in page.summary_rows():
        print(f"  {row['notebook']:<28} {row['figure']:<32} {page.short(row['value'])}")
    print(f"\nReport: {index}")
    return done
