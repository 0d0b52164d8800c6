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
    peak_memory_bytes: int  # peak memory of the kernel and its children (see MemorySampler)
    peak_private_bytes: int = 0  # of which anonymous (heap) memory: what cannot be paged out
    limit_bytes: int = 0  # the cgroup memory cap it ran under (0: none)
    limit_peak_bytes: int = 0  # the most memory charged to that cgroup


def process_memory(pid: int) -> tuple[int, int]:
    """(proportional set size, anonymous part) of one process, in bytes.

    PSS splits pages shared between processes (TensorFlow's libraries, mapped by the
    kernel and by a model server it starts) among them, so the PSS of a group of processes
    adds up to the memory the group really occupies, which is what a container's memory
    limit charges; summed RSS would count a shared library once per process. The anonymous
    part is the heap: unlike file-backed pages, it cannot be dropped under memory pressure.
    Reads ``/proc/<pid>/smaps_rollup`` (Linux); elsewhere falls back to RSS for both.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if line.rstrip().endswith(" kB"))
        pss = int(fields["Pss"].split()[0]) * 1024
        anon = int(fields.get("Pss_Anon", fields.get("Anonymous", "0 kB")).split()[0]) * 1024
        return pss, anon
    except (OSError, KeyError, ValueError):
        import psutil

        rss = psutil.Process(pid).memory_info().rss
        return rss, rss


class MemorySampler:
    """Samples the memory of this process's kernel children (and their children) in a thread.

    Papermill starts the kernel as a child of this process; the notebook may start more
    processes (the model server). Their proportional set sizes (:func:`process_memory`)
    are summed every ``interval_s`` and the peak kept, which is what counts against a
    memory limit such as mybinder.org's 2 GB; the peak of the anonymous part is kept too.
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        import threading

        import psutil

        self._me = psutil.Process()
        self._known = {c.pid for c in self._me.children(recursive=True)}
        self.peak = 0
        self.peak_private = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _sample(self) -> tuple[int, int]:
        import psutil

        total = private = 0
        for child in self._me.children(recursive=True):
            if child.pid in self._known:
                continue
            try:
                pss, anon = process_memory(child.pid)
            except psutil.Error:
                continue
            total, private = total + pss, private + anon
        return total, private

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            total, private = self._sample()
            self.peak = max(self.peak, total)
            self.peak_private = max(self.peak_private, private)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


class MemoryLimit:
    """Run this process, and the kernels it starts, in a memory cgroup capped at ``limit_bytes``.

    This is how mybinder.org caps a session (a container's memory limit, 2 GB): the
    kernel is killed if the memory charged to the group cannot be brought under the cap,
    while clean file-backed pages (TensorFlow's libraries) are evicted instead. Running a
    notebook under the same cap therefore tests whether it *fits*, which sampling memory
    cannot. Linux only, as root, with the cgroup v1 ``memory`` controller or cgroup v2;
    :meth:`unavailable` says why not otherwise. The runner itself (papermill, like the
    Jupyter server on Binder) is in the group too.

    ``drop_page_cache`` empties the page cache first, so that the libraries the kernel
    loads are charged to the group as in a fresh container, not to whoever read them first.
    """

    V1_ROOT = Path("/sys/fs/cgroup/memory")  # cgroup v1's memory hierarchy
    V2_ROOT = Path("/sys/fs/cgroup")

    def __init__(self, limit_bytes: int, *, drop_page_cache: bool = True) -> None:
        import os

        self.limit_bytes = int(limit_bytes)
        self.drop_page_cache = drop_page_cache
        self._is_v1 = (self.V1_ROOT / "cgroup.procs").exists()
        self._root = self.V1_ROOT if self._is_v1 else self.V2_ROOT
        self._dir = self._root / f"workbench-{os.getpid()}"
        self._home: Path | None = None

    @classmethod
    def unavailable(cls) -> str | None:
        """None when a memory cgroup can be made here, else the reason."""
        import os
        import sys

        if not sys.platform.startswith("linux"):
            return "memory cgroups are Linux-only"
        if os.geteuid() != 0:
            return "creating a memory cgroup needs root"
        v1, v2 = cls.V1_ROOT, cls.V2_ROOT / "cgroup.subtree_control"
        if (v1 / "cgroup.procs").exists():
            return None if os.access(v1, os.W_OK) else f"{v1} is read-only"
        if v2.exists() and "memory" in v2.read_text().split():
            return None
        return "no writable cgroup memory controller (v1 'memory' or v2 with +memory)"

    def _file(self, v1_name: str, v2_name: str) -> Path:
        return self._dir / (v1_name if self._is_v1 else v2_name)

    def __enter__(self) -> MemoryLimit:
        import os

        reason = self.unavailable()
        if reason:
            raise RuntimeError(f"Cannot cap memory with a cgroup: {reason}.")
        self._dir.mkdir(exist_ok=True)
        self._file("memory.limit_in_bytes", "memory.max").write_text(str(self.limit_bytes))
        if self._is_v1 and (self._dir / "memory.memsw.limit_in_bytes").exists():
            self._dir.joinpath("memory.memsw.limit_in_bytes").write_text(str(self.limit_bytes))
        elif not self._is_v1 and (self._dir / "memory.swap.max").exists():
            self._dir.joinpath("memory.swap.max").write_text("0")
        self._home = self._current_group()
        if self.drop_page_cache:
            os.sync()
            try:
                Path("/proc/sys/vm/drop_caches").write_text("1")
            except OSError as err:  # e.g. a container with a read-only /proc/sys
                import warnings

                warnings.warn(
                    f"could not drop the page cache ({err}): libraries already cached are "
                    "not charged to the cap, so it is looser than a fresh container's",
                    stacklevel=2,
                )
        (self._dir / "cgroup.procs").write_text(str(os.getpid()))
        return self

    def _current_group(self) -> Path:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, rel = line.split(":", 2)
            if (self._is_v1 and "memory" in controllers.split(",")) or (
                not self._is_v1 and controllers == ""
            ):
                return self._root / rel.lstrip("/")
        return self._root

    def reset_peak(self) -> None:
        """Start a new peak (cgroup v1; v2 kernels before 6.12 cannot reset ``memory.peak``)."""
        if self._is_v1:
            self._dir.joinpath("memory.max_usage_in_bytes").write_text("0")

    def peak_bytes(self) -> int:
        """The most memory charged to the group (libraries' pages included) since the reset."""
        f = self._file("memory.max_usage_in_bytes", "memory.peak")
        return int(f.read_text()) if f.exists() else 0

    def oom_kills(self) -> int:
        """How many processes of the group the kernel killed for lack of memory."""
        f = self._file("memory.oom_control", "memory.events")
        for line in f.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def __exit__(self, *exc) -> None:
        import os
        import warnings

        if self._home is not None:
            (self._home / "cgroup.procs").write_text(str(os.getpid()))
        try:
            self._dir.rmdir()
        except OSError as err:  # a process is still in it (a kernel that outlived its run)
            warnings.warn(
                f"could not remove the cgroup {self._dir} ({err}); rmdir it once its "
                "processes have exited",
                stacklevel=2,
            )


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
    memory_limit: MemoryLimit | None = None,
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
    from nbclient.exceptions import DeadKernelError

    if memory_limit is not None:
        memory_limit.reset_peak()
        kills_before = memory_limit.oom_kills()
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
        "peak_private_mib": round(execution.peak_private_bytes / 2**20, 1),
    }
    if execution.limit_bytes:
        runs[execution.name]["memory_cap_mib"] = round(execution.limit_bytes / 2**20, 1)
        runs[execution.name]["cgroup_peak_mib"] = round(execution.limit_peak_bytes / 2**20, 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(runs, indent=2, sort_keys=True))
    os.replace(tmp, path)


def recorded_run(name: str) -> Execution:
    """Read back what :func:`execute` recorded for ``name`` in ``runs.json`` (e.g. from a
    run in another process, such as ``python -m workbench run --memory-cap-mib``)."""
    import json

    runs = json.loads((paths.reports_dir("results") / "runs.json").read_text())
    if name not in runs:
        raise KeyError(f"No recorded run of {name} in {paths.reports_dir('results')}")
    run = runs[name]
    return Execution(
        name,
        paths.reports_dir("executed") / f"{name}.ipynb",
        run["seconds"],
        round(run["peak_memory_mib"] * 2**20),
        round(run.get("peak_private_mib", 0) * 2**20),
        round(run.get("memory_cap_mib", 0) * 2**20),
        round(run.get("cgroup_peak_mib", 0) * 2**20),
    )


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


def run_all(
    profile: str = "full", names: list[str] | None = None, *, memory_cap_bytes: int | None = None
) -> list[Execution]:
    """Execute every notebook in order, render HTML, build the index and print a summary.

    ``memory_cap_bytes``: run each notebook inside a memory cgroup with that cap
    (:class:`MemoryLimit`), as on mybinder.org; a kernel killed for memory fails the run.
    """
    from contextlib import nullcontext

    from workbench import report

    done = []
    with MemoryLimit(memory_cap_bytes) if memory_cap_bytes else nullcontext() as limit:
        for name in names or notebook_names():
            print(f"==> {name} ({profile} profile)", flush=True)
            execution = execute(name, profile=profile, memory_limit=limit)
            to_html(execution.output)
            capped = (
                f", {execution.limit_peak_bytes / 2**20:,.0f} MiB charged to its "
                f"{execution.limit_bytes / 2**20:,.0f} MiB cgroup"
                if execution.limit_bytes
                else ""
            )
            print(
                f"    done in {execution.seconds:.0f} s, peak kernel memory "
                f"{execution.peak_memory_bytes / 2**20:,.0f} MiB "
                f"({execution.peak_private_bytes / 2**20:,.0f} MiB heap){capped} "
                f"-> {execution.output}",
                flush=True,
            )
            done.append(execution)
    index = report.build_index()
    print("\nKey figures:")
    for row in report.summary_rows():
        print(f"  {row['notebook']:<28} {row['figure']:<32} {report.short(row['value'])}")
    print(f"\nReport: {index}")
    return done
