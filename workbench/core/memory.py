"""How much memory a notebook needs: measured by sampling, enforced by a cgroup cap.

Two ways to ask "does this fit in mybinder.org's 2 GB?", used by the runner and the tests:

- :class:`MemorySampler` sums the memory of the processes a run starts (the Jupyter
  kernel, a model server it launches) every fraction of a second and keeps the peak;
  :func:`process_memory` is what it reads per process (psutil's proportional and unique
  set sizes).
- :class:`MemoryLimit` runs them inside a memory cgroup capped like a Binder container,
  so a run that does not fit is killed, which sampling alone cannot show.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from pathlib import Path
from typing import NamedTuple

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads

__all__ = ["MemoryLimit", "MemorySampler", "ProcessMemory", "process_memory"]


class ProcessMemory(NamedTuple):
    """One process's memory, in bytes.

    Attributes:
        total: proportional set size (PSS): pages shared with other processes (TensorFlow's
            libraries, mapped by a kernel and by the model server it starts) are split
            among them, so the PSS of a group of processes adds up to the memory the group
            really occupies, which is what a container's limit charges. Summed RSS would
            count every shared library once per process. (RSS where the OS has no PSS.)
        private: unique set size (USS): the pages only this process holds, mostly its heap;
            what would be freed if it exited.
    """

    total: int
    private: int


def process_memory(pid: int) -> ProcessMemory:
    """PSS and USS of process ``pid`` (psutil's ``memory_full_info``).

    On Linux psutil reads ``/proc/<pid>/smaps_rollup`` once for both. Where PSS does not
    exist (macOS, Windows) ``total`` is the RSS; where the full information is not readable
    (another user's process), both fields are the RSS.

    Raises:
        psutil.NoSuchProcess: the process has exited.
    """
    import psutil

    process = psutil.Process(pid)
    try:
        info = process.memory_full_info()
    except psutil.AccessDenied:
        rss = process.memory_info().rss
        return ProcessMemory(rss, rss)
    return ProcessMemory(getattr(info, "pss", info.rss), info.uss)


class MemorySampler:
    """Samples the memory of the processes this process starts (and theirs), in a thread.

    Papermill starts the kernel as a child of this process; the notebook may start more
    (the model server). Their :func:`process_memory` values are summed every
    ``interval_s`` and the peaks kept: :attr:`peak` (PSS, what counts against a memory
    limit such as mybinder.org's 2 GB) and :attr:`peak_private` (USS, their own pages).
    Children that already ran when the sampler was created are not counted.

    Example:
        >>> with MemorySampler() as memory:  # doctest: +SKIP
        ...     subprocess.run([...])
        >>> memory.peak  # doctest: +SKIP
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        import psutil

        self._me = psutil.Process()
        self._known = {c.pid for c in self._me.children(recursive=True)}
        self.peak = 0
        self.peak_private = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def sample(self) -> ProcessMemory:
        """The summed memory of the sampled processes right now."""
        import psutil

        total = private = 0
        for child in self._me.children(recursive=True):
            if child.pid in self._known:
                continue
            try:
                pss, uss = process_memory(child.pid)
            except psutil.Error:  # exited between listing and reading
                continue
            total, private = total + pss, private + uss
        return ProcessMemory(total, private)

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            total, private = self.sample()
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
        self.limit_bytes = int(limit_bytes)
        self.drop_page_cache = drop_page_cache
        self._is_v1 = (self.V1_ROOT / "cgroup.procs").exists()
        self._root = self.V1_ROOT if self._is_v1 else self.V2_ROOT
        self._dir = self._root / f"workbench-{os.getpid()}"
        self._home: Path | None = None

    @classmethod
    def unavailable(cls) -> str | None:
        """None when a memory cgroup can be made here, else the reason."""
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


def free_memory() -> None:
    """Release models the caller has dropped: Python garbage, then Keras' global state.

    Fine-tuning several tfmot variants in one kernel adds up; call this after ``del``-ing
    models that are already converted, to stay inside small machines (Binder: 2 GB).
    Some memory stays with TensorFlow regardless: each fine-tune and each conversion of a
    quantization-aware model keeps part of what it allocated.
    """
    import gc

    import tf_keras as keras

    gc.collect()
    keras.backend.clear_session()
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise); no-op elsewhere."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # musl or another libc: nothing to trim
            pass
