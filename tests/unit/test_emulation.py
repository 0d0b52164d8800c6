"""The parts of the link checks that need no root: names, addresses, padding, the model."""

import asyncio
import ipaddress
import random

import pytest

from workbench.network import emulation, latency, linkbench, validation


def test_run_names_are_unique_short_and_name_their_owner():
    names = {emulation.run_names() for _ in range(50)}
    assert len(names) == 50
    for pid in (1, 4_194_304):  # the largest pid Linux hands out
        netns, prefix = emulation.run_names(pid)
        assert emulation._NETNS.match(netns)["pid"] == str(pid)
        assert len(prefix) + 1 <= 15  # one character for the interface's role
        assert int(emulation._IFNAME.match(prefix + "s")["pid"], 16) == pid


def test_free_subnet_avoids_used_addresses_and_metadata_range():
    used = [ipaddress.IPv4Interface(f"169.254.{n}.1/24") for n in range(0, 250)]
    net = emulation.free_subnet(used, random.Random(0))
    assert net.prefixlen == 29 and net.subnet_of(ipaddress.IPv4Network("169.254.0.0/16"))
    assert net.network_address.packed[2] in (250, 251, 252, 253, 254)
    for seed in range(200):
        assert emulation.free_subnet([], random.Random(seed)).network_address.packed[2] != 169


def test_free_subnet_says_when_everything_is_taken():
    taken = [ipaddress.IPv4Interface(f"169.254.{n}.1/24") for n in range(256)]
    with pytest.raises(emulation.LinkEmulationError, match="no free /29"):
        emulation.free_subnet(taken, random.Random(0))


def test_a_hung_ip_or_tc_command_fails_naming_it_and_clean_up_passes_over_it(monkeypatch):
    monkeypatch.setattr(emulation, "COMMAND_TIMEOUT_S", 0.2)
    with pytest.raises(
        emulation.LinkEmulationError, match="`sleep 30` did not finish within 0.2 s"
    ):
        emulation._run(["sleep", "30"])
    emulation._quiet(["sleep", "30"])  # best effort: a hang in clean-up is passed over


@pytest.mark.parametrize("n", [3027, 3028, 6250, 1514, 100])
def test_padding_frames_add_up_and_fit_a_frame(n):
    frames = emulation.padding_frames(n)
    assert sum(frames) == n
    assert all(emulation.UDP_FRAME_OVERHEAD <= f <= emulation.MTU_FRAME for f in frames)
    assert emulation.padding_frames(0) == []


def test_default_burst_holds_two_frames_or_a_millisecond():
    assert emulation.default_burst(1) == 2 * emulation.MTU_FRAME
    assert emulation.default_burst(50) == 6250  # 50 Mbit/s for 1 ms


def test_wire_bytes_counts_headers_per_segment_of_each_write():
    assert latency.wire_bytes(1000) == 1066
    assert latency.wire_bytes(113, 1000) == 1245  # header block and body written apart
    assert latency.wire_bytes(1_000_000) == 1_000_000 + 691 * 66  # 691 segments of 1448
    assert latency.wire_bytes() == 0


def test_slow_start_stalls_by_hand():
    # 100 segments, 1 ms each on the wire, 50 ms RTT, initial window 10:
    # windows of 10, 20, 40 stall 41, 31 and 11 ms; the window of 80 holds the rest.
    mbps = latency.TCP_MSS * 8 / 1e3  # one segment per millisecond
    stall = latency.tcp_slow_start_ms(100 * latency.TCP_MSS, 50.0, mbps)
    assert stall == pytest.approx(41 + 31 + 11)
    assert latency.tcp_slow_start_ms(5 * latency.TCP_MSS, 50.0, mbps) == 0  # one window
    assert latency.tcp_slow_start_ms(1e6, 0.05, 50) == 0  # the window covers a short RTT


def _row(**kw):
    row = {
        "rate_mbps": 1.0,
        "direction": "up",
        "connection": "keep-alive",
        "size_bytes": 1000,
        "measured_ms": 12.0,
        "base_ms": 0.5,
        "rtt_ms": 0.05,
        "request_writes": [113, 1000],
        "response_writes": [38, 4],
    }
    return {**row, **kw}


def test_bandwidth_check_adds_frames_and_handshake():
    kept = validation.bandwidth_check(_row())
    # 0.5 ms base + (1245 up + 174 down bytes) * 8 / 1 Mbit/s
    assert kept["model_ms"] == pytest.approx(0.5 + (1245 + 174) * 8 / 1e3)
    assert kept["payload_model_ms"] == pytest.approx(0.5 + (1113 + 42) * 8 / 1e3)
    assert kept["verdict"] == "within"
    new = validation.bandwidth_check(_row(connection="new"))
    extra = (latency.SYN_FRAME + latency.FRAME_OVERHEAD + latency.SYN_FRAME) * 8 / 1e3
    assert new["model_ms"] == pytest.approx(kept["model_ms"] + extra)
    assert new["request_writes"] == [113, 1000]  # the measurements follow


def test_verdicts():
    assert validation.bandwidth_verdict(10.0, 11.0, 0.5) == "within"
    assert validation.bandwidth_verdict(0.6, 1.0, 0.5) == "overlap"  # 40% faster, < base
    assert validation.bandwidth_verdict(0.4, 1.0, 0.5) == "outside"  # faster by more than base
    assert validation.bandwidth_verdict(1.2, 1.0, 0.5) == "outside"  # slower than the model
    # the measured spread widens the tolerance: 1.2 against 1.0 with 0.1 ms of noise
    assert validation.bandwidth_verdict(1.2, 1.0, 0.5, noise_ms=0.1) == "within"
    # a transfer shorter than 4x the base and its spread says nothing about the bandwidth
    assert (
        validation.bandwidth_verdict(0.71, 0.48, 0.3, transfer_ms=0.2, noise_ms=0.05)
        == "base-dominated"
    )
    assert validation.bandwidth_verdict(9.0, 8.5, 0.3, transfer_ms=8.0) == "within"


def test_a_noisy_cell_is_judged_with_its_spread():
    """The CI failure of issue 19: 50 Mbit/s, 1 kB, kept alive, on a busy machine."""
    row = validation.bandwidth_check(
        _row(rate_mbps=50.0, measured_ms=0.71, measured_p50_ms=0.9, base_ms=0.3, base_p50_ms=0.35)
    )
    assert row["noise_ms"] == pytest.approx(0.19 + 0.05)
    assert row["verdict"] == "base-dominated"


def test_short_cells_get_more_repeats():
    assert linkbench.cell_repeats(1.0, 3) == 3
    assert linkbench.cell_repeats(0.0002, 3) == 15
    assert 3 <= linkbench.cell_repeats(0.02, 3) <= 15


def _call(app, method, path, body=b"", headers=()):
    sent, chunks = [], [body[i : i + 4096] for i in range(0, len(body), 4096)] or [b""]

    async def receive():
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


def test_sink_counts_uploads_and_sends_downloads():
    app = linkbench.Sink("127.0.0.1")
    assert _call(app, "POST", "/", bytes(10_000)) == (200, b"10000")
    assert _call(app, "GET", "/bytes/1234") == (200, bytes(1234))
    status, _ = _call(app, "GET", "/etc/passwd")
    assert status == 404


def test_measure_transfers_rejects_bad_arguments_before_touching_the_machine():
    with pytest.raises(ValueError, match="direction"):
        linkbench.measure_transfers([1000], [1], direction="sideways")
    with pytest.raises(ValueError, match="connections"):
        linkbench.measure_transfers([1000], [1], connections=["pooled"])
    with pytest.raises(ValueError, match="repeats"):
        linkbench.measure_transfers([1000], [1], repeats=0)
