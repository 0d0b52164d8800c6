"""Timing that can be trusted: warm-up apart, many repeats, percentiles, and the hardware named.

Used by every notebook that reports a latency or a throughput, so all numbers
in the workbench are measured the same way.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Latency summary in milliseconds. ``first_ms`` is the cold first call, timed apart."""

    first_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"first {self.first_ms:.3f} ms, p50 {self.p50_ms:.3f} ms, p95 {self.p95_ms:.3f} ms, "
            f"p99 {self.p99_ms:.3f} ms (n={self.n})"
        )


def summarize_ms(
    samples_ms: np.ndarray | list[float], first_ms: float = float("nan")
) -> LatencyStats:
    """Percentiles of a list of latencies in milliseconds."""
    a = np.asarray(samples_ms, dtype=float)
    if a.size == 0:
        raise ValueError("no latency samples to summarize")
    return LatencyStats(
        first_ms=float(first_ms),
        p50_ms=float(np.percentile(a, 50)),
        p95_ms=float(np.percentile(a, 95)),
        p99_ms=float(np.percentile(a, 99)),
        mean_ms=float(a.mean()),
        min_ms=float(a.min()),
        n=int(a.size),
    )


def measure_latency(
    fn: Callable[[], object],
    *,
    warmup: int = 10,
    repeats: int = 100,
    max_seconds: float | None = None,
) -> LatencyStats:
    """Time ``fn()``: the first call apart, then ``warmup`` untimed calls, then ``repeats`` timed.

    Args:
        fn: the call to time (close over its inputs).
        warmup: untimed calls after the first, so caches and thread pools settle.
        repeats: timed calls; percentiles are taken over these.
        max_seconds: stop the timed loop early once this much time has passed
            (at least 5 samples are always taken).
    """
    t0 = time.perf_counter()
    fn()
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    for i in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
        if max_seconds is not None and i >= 4 and time.perf_counter() - start > max_seconds:
            break
    return summarize_ms(samples, first_ms)


def measure_throughput(
    fn: Callable[[], object], *, items_per_call: int, min_seconds: float = 1.0
) -> float:
    """Items per second of ``fn()`` (throughput = workload / time), after one warm-up call."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return calls * items_per_call / elapsed


def hardware() -> dict[str, object]:
    """What ran the benchmark: CPU model, cores, RAM, OS, Python, and GPUs if TensorFlow sees any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, object] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    try:
        import psutil

        info["ram_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["cpu_affinity"] = len(psutil.Process().cpu_affinity())
    except Exception:  # noqa: BLE001 - psutil is optional here
        pass
    import sys

    if "tensorflow" in sys.modules:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info


INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def int8_dot_product_flags() -> list[str]:
    """CPU flags for 8-bit dot-product instructions (x86 VNNI/AMX, Arm dotprod/i8mm) this CPU has.

    Without them, int8 kernels gain little over well-vectorised float32 (FMA) kernels.
    """
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return []
    return [flag for flag in INT8_DOT_FLAGS if flag in words]


def describe_hardware() -> str:
    """A one-line hardware disclaimer for benchmark output."""
    h = hardware()
    gpus = h.get("gpus") or []
    return (
        f"Measured on {h['cpu']} ({h['cores']} cores"
        + (f", {h['ram_gib']} GiB RAM" if "ram_gib" in h else "")
        + f"), {h['os']}, Python {h['python']}"
        + (f", GPU: {', '.join(gpus)}" if gpus else ", no GPU")
        + ". Your numbers will differ on other hardware and under other load."
    )
