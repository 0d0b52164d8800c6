"""The link latency model, checked against hand-computed values."""

import numpy as np
import pytest

from workbench.network import emulation, latency


def test_transfer_time():
    assert latency.transfer_ms(125_000, 1.0) == pytest.approx(1000.0)  # 1 Mbit over 1 Mbit/s


def test_cloud_latency_adds_every_term():
    link = latency.Link(
        "t", "test", rtt_ms=40, uplink_mbps=8, downlink_mbps=16, jitter_ms=10, source=""
    )
    # 2 ms server + 40 ms RTT + 10 kB up at 8 Mbit/s (10 ms) + 2 kB down at 16 Mbit/s (1 ms)
    assert latency.cloud_latency_ms(2.0, link, 10_000, 2_000) == pytest.approx(53.0)
    p95 = latency.cloud_latency_ms(2.0, link, 10_000, 2_000, quantile=0.95)
    assert p95 == pytest.approx(53.0 + 1.6449 * 10, abs=0.01)


def test_links_are_complete_and_ordered_by_rtt():
    names = ["lan", "wifi", "5g", "4g", "3g", "satellite"]
    assert list(latency.LINKS) == names
    rtts = [latency.LINKS[n].rtt_ms for n in names]
    assert rtts == sorted(rtts)
    assert all(
        p.source and p.uplink_mbps > 0 and p.downlink_mbps > 0 for p in latency.LINKS.values()
    )


def test_latency_grid_matches_scalar_model():
    grid = latency.latency_grid(
        3.0,
        10_000,
        1_000,
        rtts_ms=np.array([10.0, 100.0]),
        uplinks_mbps=np.array([1.0, 10.0]),
        downlink_ratio=2.0,
    )
    link = latency.Link("x", "x", 100.0, 10.0, 20.0, 0.0, "")
    assert grid[1, 1] == pytest.approx(latency.cloud_latency_ms(3.0, link, 10_000, 1_000))


def test_netem_probe_answers_with_a_reason():
    ok, why = emulation.netem_available()
    assert isinstance(ok, bool) and why
