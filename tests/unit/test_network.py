"""The link latency model, checked against hand-computed values."""

import numpy as np
import pytest

from workbench import network


def test_transfer_time():
    assert network.transfer_ms(125_000, 1.0) == pytest.approx(1000.0)  # 1 Mbit over 1 Mbit/s


def test_cloud_latency_adds_every_term():
    link = network.LinkProfile(
        "t", "test", rtt_ms=40, uplink_mbps=8, downlink_mbps=16, jitter_ms=10, source=""
    )
    # 2 ms server + 40 ms RTT + 10 kB up at 8 Mbit/s (10 ms) + 2 kB down at 16 Mbit/s (1 ms)
    assert network.cloud_latency_ms(2.0, link, 10_000, 2_000) == pytest.approx(53.0)
    p95 = network.cloud_latency_ms(2.0, link, 10_000, 2_000, quantile=0.95)
    assert p95 == pytest.approx(53.0 + 1.6449 * 10, abs=0.01)


def test_profiles_are_complete_and_ordered_by_rtt():
    names = ["lan", "wifi", "5g", "4g", "3g", "satellite"]
    assert list(network.PROFILES) == names
    rtts = [network.PROFILES[n].rtt_ms for n in names]
    assert rtts == sorted(rtts)
    assert all(
        p.source and p.uplink_mbps > 0 and p.downlink_mbps > 0 for p in network.PROFILES.values()
    )


def test_crossover_is_where_latencies_meet():
    link = network.PROFILES["4g"]
    rtt = network.crossover_rtt_ms(120.0, 5.0, link, 12_000, 300)
    moved = network.LinkProfile(**{**link.as_dict(), "rtt_ms": rtt})
    assert network.cloud_latency_ms(5.0, moved, 12_000, 300) == pytest.approx(120.0)


def test_latency_grid_matches_scalar_model():
    grid = network.latency_grid(
        3.0,
        10_000,
        1_000,
        rtts_ms=np.array([10.0, 100.0]),
        uplinks_mbps=np.array([1.0, 10.0]),
        downlink_ratio=2.0,
    )
    link = network.LinkProfile("x", "x", 100.0, 10.0, 20.0, 0.0, "")
    assert grid[1, 1] == pytest.approx(network.cloud_latency_ms(3.0, link, 10_000, 1_000))


def test_netem_probe_answers_with_a_reason():
    ok, why = network.netem_available()
    assert isinstance(ok, bool) and why
