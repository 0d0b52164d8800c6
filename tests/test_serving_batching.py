"""Server-side dynamic batching: concurrent single-image requests merged into model calls,
each answered with its own rows, over REST and gRPC; and the batching comparison."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serving_helpers import expected, export_tiny

from workbench.cloud import serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving")
    return base, export_tiny(base, 1)


def test_concurrent_requests_are_merged_and_answered_correctly(exported):
    base, model = exported
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    want = expected(model, images)
    with serving.serving(
        base, grpc=True, enable_batching=True, max_batch_size=8, batch_timeout_micros=20_000
    ) as server:

        def worker(i: int) -> int:
            url = server.grpc_url if i % 4 == 0 else server.url
            wrong = 0
            with serving.ServingClient(url, "tiny") as client:
                for j in range(5):
                    k = (i + j) % len(images)
                    got = client.predict(images[k : k + 1]).outputs
                    wrong += not np.allclose(got, want[k : k + 1], atol=1e-5)
            return wrong

        with ThreadPoolExecutor(16) as pool:
            assert sum(pool.map(worker, range(16))) == 0
        metrics = serving.read_metrics(server.url)
    count = sum(v for _, v in metrics["workbench_batch_size_count"])
    items = sum(v for _, v in metrics["workbench_batch_size_sum"])
    print(f"80 requests in {count:.0f} model calls (mean batch {items / count:.1f})")
    assert items == 80 and count < 80  # some requests shared a model call


def test_batching_comparison_reports_both_modes(exported):
    base, _ = exported
    images = np.zeros((1, 32, 32, 3), np.uint8)
    rows = serving.batching_comparison(
        base, "tiny", images, clients=(1, 4), requests=24, max_batch_size=8, warmup=2
    )
    assert [(r["batching"], r["clients"]) for r in rows] == [
        (False, 1),
        (False, 4),
        (True, 1),
        (True, 4),
    ]
    for r in rows:
        assert r["failures"] == 0 and r["throughput_rps"] > 0 and r["p95_ms"] >= r["p50_ms"]
    assert all(r["mean_batch"] == 1 for r in rows if not r["batching"])
    assert rows[2]["mean_batch"] == 1  # one client never has company
