"""Abuse: decompression bombs, oversized batches, floods of concurrent requests, a killed
parent. The server answers 4xx/503 instead of spending memory, stays alive, and never
outlives the process that started it."""

from __future__ import annotations

import base64
import json
import select
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psutil
import pytest
from serving_helpers import PeakRss, export_tiny, wait_until, zero_png

from workbench.cloud import serving

pytestmark = pytest.mark.slow
MAX_BATCH = 32
MAX_GROWTH_MIB = 100


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("serving")
    export_tiny(path, 1)
    return path


@pytest.fixture(scope="module")
def server(base):
    with serving.serving(
        base, max_batch_size=MAX_BATCH, max_concurrent_requests=8, poll_seconds=0
    ) as running:
        with serving.ServingClient(running.url, "tiny") as client:  # warm, so idle is idle
            client.predict(np.zeros((MAX_BATCH, 32, 32, 3), np.uint8))
        yield running


def post(server, body: bytes) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/tiny:predict", content=body, timeout=60)


def test_png_bomb_is_refused_from_its_header(server):
    bomb = zero_png(12000, 12000)  # ~0.4 MB, 432 MB decoded
    body = json.dumps(
        {"signature_name": "predict_png", "instances": [{"b64": base64.b64encode(bomb).decode()}]}
    ).encode()
    with PeakRss(server.process.pid) as rss:
        r = post(server, body)
    print(f"PNG bomb: {len(bomb):,} bytes -> {r.status_code}; RSS growth {rss.growth_mib:.1f} MiB")
    assert r.status_code == 400 and "12000x12000" in r.json()["error"]
    assert rss.growth_mib < MAX_GROWTH_MIB


@pytest.mark.parametrize("instances", [MAX_BATCH + 1, 1000, 2700])
def test_oversized_batch_is_refused(server, instances):
    body = json.dumps({"instances": np.zeros((instances, 32, 32, 3), np.uint8).tolist()}).encode()
    with PeakRss(server.process.pid) as rss:
        r = post(server, body)
    print(
        f"{instances} zero images, {len(body):,} bytes -> {r.status_code}; "
        f"RSS growth {rss.growth_mib:.1f} MiB"
    )
    assert (
        400 <= r.status_code < 500 and "max-batch-size" in r.json()["error"] or r.status_code == 413
    )
    assert rss.growth_mib < MAX_GROWTH_MIB


def test_sixteen_mib_of_zeros_is_refused_unread(server):
    body = b'{"instances": [' + b"0," * (8 * 2**20) + b"0]}"
    with PeakRss(server.process.pid) as rss:
        r = post(server, body)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert rss.growth_mib < MAX_GROWTH_MIB


def test_a_flood_of_heavy_requests_gets_only_200_or_503(server):
    heavy = json.dumps(
        {"instances": np.random.default_rng(0).integers(0, 256, (MAX_BATCH, 32, 32, 3)).tolist()}
    ).encode()

    def send(_: int) -> tuple[int, str | None]:
        r = post(server, heavy)
        return r.status_code, r.headers.get("retry-after")

    with PeakRss(server.process.pid) as rss, ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(send, range(64)))
    codes = [c for c, _ in answers]
    print(
        f"64 heavy requests ({len(heavy):,} bytes each): {codes.count(200)} x 200, "
        f"{codes.count(503)} x 503; RSS growth {rss.growth_mib:.1f} MiB"
    )
    assert set(codes) <= {200, 503} and 200 in codes
    assert all(retry == "1" for code, retry in answers if code == 503)
    assert server.process.poll() is None
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    assert rss.growth_mib < 3 * MAX_GROWTH_MIB


CHILD = """
import sys, time
from workbench.cloud import serving
with serving.serving(sys.argv[1], poll_seconds=0) as server:
    print(server.process.pid, flush=True)
    time.sleep(600)
"""


def test_server_dies_with_the_process_that_started_it(base):
    kernel = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(base)], stdout=subprocess.PIPE, text=True
    )
    pid = None
    try:
        # the server's pid, once it is ready (serving() waits up to 120 s for that)
        ready, _, _ = select.select([kernel.stdout], [], [], 180)
        line = kernel.stdout.readline() if ready else ""
        if not line.strip():
            pytest.fail(
                "the child process printed no server pid within 180 s "
                f"(exit code {kernel.poll()}; its errors are in the captured stderr)"
            )
        pid = int(line)
        server = psutil.Process(pid)
        assert server.is_running()
        kernel.send_signal(signal.SIGKILL)  # as the OOM killer would kill a notebook kernel
        kernel.wait(timeout=10)

        def gone() -> bool:
            try:
                return server.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        # generous for a busy machine: without the stdin pipe it would never exit
        took = wait_until(gone, 30, "the orphaned server exits")
        print(f"server gone {took:.2f} s after its parent was killed")
    finally:
        kernel.kill()
        kernel.wait(timeout=10)
        if pid is not None:
            with __import__("contextlib").suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
