"""Experiments run against a real server: when does server-side batching pay?

:func:`batching_comparison` starts the server twice, without and with
``--enable-batching``, and load-tests each with 1, 8, 32 ... concurrent clients sending
single-image requests: throughput, p50/p95 latency, failures, and the mean batch the
server actually formed (from its metrics).
"""

from __future__ import annotations

import numpy as np

from workbench.cloud.client import encode_images, load_test, read_metrics
from workbench.cloud.serving.launcher import serving


def batching_comparison(
    model_base,
    model_name: str,
    images: np.ndarray,
    *,
    clients: tuple[int, ...] = (1, 8, 32),
    requests: int = 400,
    max_batch_size: int = 32,
    batch_timeout_micros: int = 0,
    num_batch_threads: int = 1,
    encoding: str = "json",
    warmup: int = 20,
) -> list[dict]:
    """Throughput and latency with and without server-side batching, per client count.

    Args:
        model_base: the model base to serve (folder or ``s3://`` URL).
        model_name: the model to load-test.
        images: uint8 images; every request sends the first one (single-image requests are
            the case batching is for).
        clients: concurrent client counts to try.
        requests: requests per (batching, clients) point.
        max_batch_size, batch_timeout_micros, num_batch_threads: the batching parameters.
        encoding: a REST encoding of :data:`~workbench.cloud.client.ENCODINGS`.
        warmup: untimed requests before the first point of each server.

    Returns:
        one row per (batching, clients): throughput_rps, p50_ms, p95_ms, failures,
        mean_batch (instances per model call), cpu_utilisation.
    """
    body = encode_images(np.asarray(images)[:1], encoding)
    rows = []
    for batching in (False, True):
        with serving(
            model_base,
            enable_batching=batching,
            max_batch_size=max_batch_size,
            batch_timeout_micros=batch_timeout_micros,
            num_batch_threads=num_batch_threads,
            max_concurrent_requests=max(64, 2 * max(clients)),
            poll_seconds=0,
        ) as server:
            load_test(server.url, model_name, body, clients=1, requests=warmup)
            for n in clients:
                before = _compute_calls(server.url, model_name)
                result = load_test(
                    server.url,
                    model_name,
                    body,
                    clients=n,
                    requests=requests,
                    server_pid=server.process.pid,
                )
                calls = _compute_calls(server.url, model_name) - before
                done = requests - result["failures"]
                latency = result["latency"] or {}
                rows.append(
                    {
                        "batching": batching,
                        "clients": n,
                        "throughput_rps": result["throughput_rps"],
                        "p50_ms": latency.get("p50_ms", float("nan")),
                        "p95_ms": latency.get("p95_ms", float("nan")),
                        "failures": result["failures"],
                        "mean_batch": done / calls if calls else float("nan"),
                        "cpu_utilisation": result["cpu_utilisation"],
                    }
                )
    return rows


def _compute_calls(url: str, model_name: str) -> float:
    """Model calls so far (batched or not), from the compute-time histogram's count."""
    samples = read_metrics(url).get("workbench_model_compute_seconds_count", [])
    return sum(v for labels, v in samples if labels.get("model") == model_name)
