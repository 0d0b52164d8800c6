"""Timing: latency percentiles after warm-up, throughput, one clock for all of it."""

from __future__ import annotations

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


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
