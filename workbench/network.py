"""Network links between the edge and the cloud, a latency model, and real emulated links.

The latency model for one request to the cloud::

    latency = server time + RTT + request bytes * 8 / uplink + response bytes * 8 / downlink

where *server time* is measured (loopback end-to-end, or the server's own
compute time) and the link terms come from a :class:`LinkProfile`.
:func:`emulated_link` builds a real link on this machine to check the model:
the server runs in its own network namespace behind a veth pair shaped with
``tc netem`` (delay and rate), so real TCP traffic crosses a real slow link.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LinkProfile:
    """A network link from an edge device to the cloud.

    Attributes:
        name: short key.
        rtt_ms: round-trip time to the cloud region.
        uplink_mbps: device -> cloud bandwidth, Mbit/s.
        downlink_mbps: cloud -> device bandwidth, Mbit/s.
        jitter_ms: standard deviation of the round-trip time.
        source: where the figures come from.
    """

    name: str
    label: str
    rtt_ms: float
    uplink_mbps: float
    downlink_mbps: float
    jitter_ms: float
    source: str

    def as_dict(self) -> dict:
        return asdict(self)


# Typical figures, not measurements of any one network. Medians move every year; change them
# here (or build your own LinkProfile) to match the link you care about.
PROFILES: dict[str, LinkProfile] = {
    p.name: p
    for p in [
        # Switched gigabit Ethernet to a server in the same building (an on-premises "cloud").
        LinkProfile(
            "lan",
            "Wired LAN",
            0.5,
            1000,
            1000,
            0.1,
            "switched 1 GbE, same site: sub-millisecond RTT is typical",
        ),
        # Home/office Wi-Fi on fixed broadband to a regional cloud data centre.
        LinkProfile(
            "wifi",
            "Wi-Fi + broadband",
            20,
            50,
            150,
            5,
            "fixed-broadband medians in speed-test reports (~20 ms, ~50/150 Mbit/s)",
        ),
        # Public 5G (non-standalone), to a regional cloud.
        LinkProfile(
            "5g",
            "5G",
            30,
            40,
            200,
            8,
            "mobile-network reports of 5G: ~25-35 ms latency, 100-300 Mbit/s down, 30-60 up",
        ),
        # 4G LTE.
        LinkProfile(
            "4g",
            "4G LTE",
            50,
            8,
            25,
            15,
            "mobile-network reports of 4G: ~40-60 ms latency, 20-30 Mbit/s down, 5-10 up",
        ),
        # 3G, as the browser throttling presets model it.
        LinkProfile(
            "3g",
            "3G",
            300,
            0.75,
            1.6,
            50,
            "Chrome DevTools / Lighthouse 'Fast 3G' preset: ~300 ms RTT, 1.6 Mbit/s down, 750 kbit/s up",
        ),
        # Geostationary satellite: 2 x 35,786 km up and down is ~480 ms of light travel alone.
        LinkProfile(
            "satellite",
            "GEO satellite",
            600,
            3,
            25,
            30,
            "geostationary broadband: physics gives ~480 ms, measured RTTs 550-700 ms",
        ),
    ]
}


def transfer_ms(n_bytes: float, mbps: float) -> float:
    """Time to push ``n_bytes`` through ``mbps`` Mbit/s, in milliseconds."""
    return n_bytes * 8 / (mbps * 1e6) * 1e3


def link_ms(
    link: LinkProfile, request_bytes: float, response_bytes: float, *, quantile: float = 0.5
) -> float:
    """The network part of one request: RTT (plus jitter at a quantile) and both transfers.

    Jitter is modelled as normal around the RTT; ``quantile=0.95`` adds 1.645 sigma.
    """
    from statistics import NormalDist

    z = NormalDist().inv_cdf(quantile) if quantile != 0.5 else 0.0
    rtt = max(0.0, link.rtt_ms + z * link.jitter_ms)
    return (
        rtt
        + transfer_ms(request_bytes, link.uplink_mbps)
        + transfer_ms(response_bytes, link.downlink_mbps)
    )


def cloud_latency_ms(
    server_ms: float,
    link: LinkProfile,
    request_bytes: float,
    response_bytes: float,
    *,
    quantile: float = 0.5,
) -> float:
    """Modelled end-to-end latency of a cloud request: server time plus :func:`link_ms`."""
    return server_ms + link_ms(link, request_bytes, response_bytes, quantile=quantile)


def crossover_rtt_ms(
    edge_ms: float, server_ms: float, link: LinkProfile, request_bytes: float, response_bytes: float
) -> float:
    """The RTT below which the cloud beats the edge on ``link``'s bandwidths (negative: never)."""
    transfers = transfer_ms(request_bytes, link.uplink_mbps) + transfer_ms(
        response_bytes, link.downlink_mbps
    )
    return edge_ms - server_ms - transfers


def latency_grid(
    server_ms: float,
    request_bytes: float,
    response_bytes: float,
    *,
    rtts_ms: np.ndarray,
    uplinks_mbps: np.ndarray,
    downlink_ratio: float = 3.0,
) -> np.ndarray:
    """Modelled cloud latency over a grid of RTT (rows) and uplink bandwidth (columns)."""
    rtt = np.asarray(rtts_ms)[:, None]
    up = np.asarray(uplinks_mbps)[None, :]
    return (
        server_ms
        + rtt
        + request_bytes * 8 / (up * 1e6) * 1e3
        + response_bytes * 8 / (up * downlink_ratio * 1e6) * 1e3
    )


# ===================================================================== real emulated links

NETNS = "wb-cloud"
HOST_IF, NS_IF = "wb-edge0", "wb-cloud0"
# Link-local addresses: they exist only on this veth pair, inside this machine.
HOST_IP, NS_IP = "169.254.213.1", "169.254.213.2"


def netem_available() -> tuple[bool, str]:
    """Whether this machine can emulate links with ``ip netns`` + ``tc netem``, and why not."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return False, "network namespaces need Linux"
    if os.geteuid() != 0:
        return False, "creating network namespaces and qdiscs needs root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"the '{tool}' command (iproute2) is not installed"
    probe = f"wb-probe-{os.getpid()}"
    try:
        _run(["ip", "netns", "add", probe])
    except subprocess.CalledProcessError as err:
        return False, f"cannot create a network namespace: {err.stderr.strip()}"
    try:
        _run(["ip", "netns", "exec", probe, "ip", "link", "set", "lo", "up"])
        _run(
            [
                "ip",
                "netns",
                "exec",
                probe,
                "tc",
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "netem",
                "delay",
                "1ms",
            ]
        )
    except subprocess.CalledProcessError as err:
        return False, f"tc netem is not available in this kernel ({err.stderr.strip() or err})"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return True, "ip netns and tc netem work"


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def emulated_link(link: LinkProfile, *, jitter: bool = False) -> Iterator[str]:
    """A namespace ``wb-cloud`` reachable from here over a veth pair shaped like ``link``.

    Delay is split in half per direction (so the RTT is ``link.rtt_ms``); the host side's
    egress is limited to the uplink, the namespace side's to the downlink. Yields the
    namespace's address; start the server there with ``serve.serving(netns=NETNS, host=...)``.
    Everything is removed on exit, even after an error.
    """
    ok, why = netem_available()
    if not ok:
        raise RuntimeError(f"Cannot emulate a link here: {why}.")
    teardown()
    try:
        _run(["ip", "netns", "add", NETNS])
        _run(["ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF])
        _run(["ip", "link", "set", NS_IF, "netns", NETNS])
        _run(["ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_IF])
        _run(["ip", "link", "set", HOST_IF, "up"])
        ns = ["ip", "netns", "exec", NETNS]
        _run([*ns, "ip", "addr", "add", f"{NS_IP}/30", "dev", NS_IF])
        _run([*ns, "ip", "link", "set", NS_IF, "up"])
        _run([*ns, "ip", "link", "set", "lo", "up"])
        half = f"{link.rtt_ms / 2:.3f}ms"
        spread = (
            [f"{link.jitter_ms / 2:.3f}ms", "distribution", "normal"]
            if jitter and link.jitter_ms
            else []
        )
        _run(
            [
                "tc",
                "qdisc",
                "add",
                "dev",
                HOST_IF,
                "root",
                "netem",
                "delay",
                half,
                *spread,
                "rate",
                f"{link.uplink_mbps}mbit",
            ]
        )
        _run(
            [
                *ns,
                "tc",
                "qdisc",
                "add",
                "dev",
                NS_IF,
                "root",
                "netem",
                "delay",
                half,
                *spread,
                "rate",
                f"{link.downlink_mbps}mbit",
            ]
        )
        yield NS_IP
    finally:
        teardown()


def teardown() -> None:
    """Remove the emulated link if a previous run left it behind."""
    subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def validate_model(
    link: LinkProfile,
    *,
    model_base,
    model_name: str,
    body: bytes,
    loopback_p50_ms: float,
    response_bytes: int,
    requests: int = 20,
    warmup: int = 3,
) -> dict:
    """Measure real round trips over an emulated ``link`` and compare with the latency model.

    Returns:
        measured p50, predicted, and the relative error ``|predicted - measured| / measured``.
    """
    from workbench import bench, serve

    with emulated_link(link) as ip, serve.serving(model_base, host=ip, netns=NETNS) as server:
        with serve.ServingClient(server.url, model_name, timeout_s=60) as client:
            for _ in range(warmup):
                client.predict_body(body)
            samples = [client.predict_body(body).elapsed_ms for _ in range(requests)]
    measured = bench.summarize_ms(samples)
    # Wire bytes: the body plus the HTTP headers either way (~200 bytes each, counted roughly).
    predicted = cloud_latency_ms(loopback_p50_ms, link, len(body) + 200, response_bytes + 200)
    return {
        "link": link.name,
        "measured_p50_ms": measured.p50_ms,
        "measured_p95_ms": measured.p95_ms,
        "predicted_ms": predicted,
        "error": abs(predicted - measured.p50_ms) / measured.p50_ms,
        "requests": requests,
    }


def compare_links(
    *,
    edge_p50_ms: float,
    edge_p95_ms: float,
    loopback_p50_ms: float,
    loopback_p95_ms: float,
    request_bytes: int,
    response_bytes: int,
    edge_accuracy: float,
    cloud_accuracy: float,
    profiles: dict[str, LinkProfile] | None = None,
) -> list[dict]:
    """Edge against cloud on every link: measured edge, measured loopback + modelled link.

    The cloud's p50 is the loopback p50 plus the link at its median; its p95 is the
    loopback p95 plus the link at its 95th percentile (RTT + 1.645 jitter).
    """
    rows = []
    for link in (profiles or PROFILES).values():
        link_p50 = link_ms(link, request_bytes, response_bytes)
        link_p95 = link_ms(link, request_bytes, response_bytes, quantile=0.95)
        cloud_p50 = loopback_p50_ms + link_p50
        cloud_p95 = loopback_p95_ms + link_p95
        rows.append(
            {
                "link": link.label,
                "rtt_ms": link.rtt_ms,
                "uplink_mbps": link.uplink_mbps,
                "edge_p50_ms": edge_p50_ms,
                "edge_p95_ms": edge_p95_ms,
                "cloud_measured_p50_ms": loopback_p50_ms,
                "cloud_modelled_link_p50_ms": link_p50,
                "cloud_p50_ms": cloud_p50,
                "cloud_p95_ms": cloud_p95,
                "edge_accuracy": edge_accuracy,
                "cloud_accuracy": cloud_accuracy,
                "faster": "edge" if edge_p50_ms < cloud_p50 else "cloud",
                "speed_ratio": cloud_p50 / edge_p50_ms,
            }
        )
    return rows
