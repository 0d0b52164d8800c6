"""Network links between the edge and the cloud, a latency model, and real emulated links.

The latency model for one request to the cloud::

    latency = server time + RTT + request bytes * 8 / uplink + response bytes * 8 / downlink

where *server time* is measured (loopback end-to-end, or the server's own
compute time) and the link terms come from a :class:`LinkProfile`.
Bytes are what crosses the link: :func:`wire_bytes` adds TCP/IP framing to a payload, and
a new connection adds a handshake and slow start (:func:`tcp_slow_start_ms`).

Two checks on real links built on this machine (:mod:`workbench.emulation`): the server
runs in its own network namespace behind a veth pair, so real TCP traffic crosses a real
slow link. :func:`validate_model` shapes it with ``tc netem`` (delay and rate) where the
kernel has netem; :func:`validate_bandwidth` checks the bandwidth term on a link
rate-limited with ``tc tbf``, which more kernels have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# The real links (namespaces, veth pairs, netem and TBF shaping) live in workbench.emulation;
# these names are part of this module's API too.
from workbench.emulation import EmulatedLink as EmulatedLink
from workbench.emulation import LinkEmulationError as LinkEmulationError
from workbench.emulation import emulated_link as emulated_link
from workbench.emulation import netem_available as netem_available
from workbench.emulation import shaping_available as shaping_available
from workbench.emulation import teardown as teardown


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


# ===================================================================== bytes on the wire

TCP_MSS = 1448  # payload bytes per segment: 1500-byte MTU - IPv4 20 - TCP 20 - timestamps 12
FRAME_OVERHEAD = 66  # header bytes per segment: Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12
SYN_FRAME = 74  # a SYN or SYN-ACK: Ethernet 14 + IPv4 20 + TCP 20 + options 20
INITIAL_WINDOW = 10  # segments a new connection may send before its first ACK (RFC 6928)


def wire_bytes(*writes: float, mss: int = TCP_MSS, overhead: int = FRAME_OVERHEAD) -> float:
    """Bytes on the link for what an application writes to a TCP socket, headers included.

    Each write (with Nagle's algorithm off, as HTTP clients and servers set it) leaves as
    its own segments of at most ``mss`` bytes, each with ``overhead`` bytes of headers.
    Feed these, not the payload, to :func:`transfer_ms` when headers matter: about 5% on
    large messages, more on small ones (an HTTP answer written as a 38-byte header block
    and a 4-byte body travels as 174 bytes). The defaults are TCP/IPv4 over Ethernet;
    other links (PPPoE, cellular) frame a little differently.

    Example:
        >>> wire_bytes(1000)  # one write, one segment
        1066
        >>> wire_bytes(113, 1000)  # http.client: the header block, then the body
        1245
    """
    return sum(w + math.ceil(w / mss) * overhead for w in writes)


def tcp_slow_start_ms(
    n_bytes: float,
    rtt_ms: float,
    mbps: float,
    *,
    mss: int = TCP_MSS,
    initial_window: int = INITIAL_WINDOW,
) -> float:
    """Time a new TCP connection's slow start adds to sending ``n_bytes``, in milliseconds.

    The sender starts with ``initial_window`` segments and doubles its window every round
    trip; whenever a window goes out faster than the first acknowledgement can come back
    (``window * mss * 8 / rate < rtt + mss * 8 / rate``), it stalls for the difference.
    The sum of those stalls is the classic slow-start latency model (Kurose & Ross,
    "Computer Networking", TCP latency modelling). It is zero when the initial window
    already fills the link's bandwidth-delay product, and several round trips on a long
    fat link (1 MB over a 50 ms, 50 Mbit/s link: about 140 ms).
    """
    segment_ms = transfer_ms(mss, mbps)
    segments = math.ceil(n_bytes / mss)
    window, sent, stall = initial_window, 0, 0.0
    while sent + window < segments:
        sent += window
        stall += max(0.0, rtt_ms + segment_ms - window * segment_ms)
        window *= 2
    return stall


# ===================================================================== checks on real links


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
    """Measure real round trips over a netem-emulated ``link`` and compare with the model.

    Returns:
        measured p50, predicted, and the relative error ``|predicted - measured| / measured``.
    """
    from workbench import serving

    with (
        emulated_link(link) as net,
        serving.serving(model_base, host=net.ns_ip, netns=net.netns) as server,
    ):
        with serving.ServingClient(server.url, model_name, timeout_s=60) as client:
            samples = _timed(lambda: client.predict_body(body).elapsed_ms, warmup, requests)
    return _model_check(link, samples, loopback_p50_ms, len(body), response_bytes)


def _timed(request, warmup: int, requests: int) -> list[float]:
    for _ in range(warmup):
        request()
    return [request() for _ in range(requests)]


def _model_check(
    link: LinkProfile,
    samples: list[float],
    loopback_p50_ms: float,
    body_bytes: int,
    response_bytes: int,
) -> dict:
    from workbench import bench

    measured = bench.summarize_ms(samples)
    # HTTP headers add ~200 bytes each way (counted roughly), TCP/IP framing the rest.
    predicted = cloud_latency_ms(
        loopback_p50_ms, link, wire_bytes(body_bytes + 200), wire_bytes(response_bytes + 200)
    )
    return {
        "link": link.name,
        "measured_p50_ms": measured.p50_ms,
        "measured_p95_ms": measured.p95_ms,
        "predicted_ms": predicted,
        "error": abs(predicted - measured.p50_ms) / measured.p50_ms,
        "requests": len(samples),
    }


# The columns of validate_bandwidth's rows worth a first look, in order.
BANDWIDTH_COLUMNS = [
    "rate_mbps",
    "connection",
    "size_bytes",
    "measured_ms",
    "model_ms",
    "error",
    "verdict",
    "base_ms",
    "transfer_ms",
    "payload_error",
    "measured_p50_ms",
]


def validate_bandwidth(
    sizes: Sequence[int] = (1_000, 10_000, 100_000, 1_000_000),
    rates_mbps: Sequence[float] = (1, 10, 50),
    *,
    connections: Sequence[str] = ("keep-alive", "new"),
    direction: str = "up",
    repeats: int = 3,
    max_transfer_s: float = 1.0,
    drain: bool = True,
) -> list[dict]:
    """Check the model's bandwidth term, ``bytes * 8 / rate``, on a real rate-limited link.

    Builds a veth link to a fresh network namespace, rate-limited with ``tc tbf``
    (:func:`workbench.emulation.shaped_link`), runs a small HTTP server there and times
    real HTTP requests of each size at each rate, over a kept-alive connection and over a
    new connection per request (:func:`workbench.linkbench.measure_transfers`). Each
    request is timed again over an unshaped link to the same server: its base time, the
    RTT and server time of the model with no delay added. :func:`bandwidth_check` then
    compares every cell with the model and gives a verdict (:func:`bandwidth_verdict`).
    About 25 s with the defaults; cells whose body alone needs more than
    ``max_transfer_s`` are skipped (1 MB at 1 Mbit/s takes 8 s).

    Example:
        >>> pd.DataFrame(network.validate_bandwidth())[network.BANDWIDTH_COLUMNS]  # doctest: +SKIP

    Args:
        sizes: request (``direction="up"``) or response (``"down"``) body sizes, bytes.
        rates_mbps: link rates, the same both ways.
        connections: ``"keep-alive"`` and/or ``"new"``.
        direction: ``"up"`` (``POST`` the body) or ``"down"`` (``GET`` it).
        repeats: timed requests per cell (short cells get more); the fastest counts, as
            the one the machine's other work disturbed least.
        max_transfer_s: skip cells slower than this.
        drain: make the token bucket behave like a link that serialises every frame
            (:mod:`workbench.emulation`); ``False`` shows the bare token bucket, which
            lets a message smaller than its bucket through at once.

    Returns:
        one row per cell, from :func:`bandwidth_check`.

    Raises:
        LinkEmulationError: not root, no iproute2, or no TBF in the kernel
            (:func:`shaping_available` says which, without raising).
    """
    from workbench import linkbench

    measured = linkbench.measure_transfers(
        sizes,
        rates_mbps,
        connections=connections,
        direction=direction,
        repeats=repeats,
        max_transfer_s=max_transfer_s,
        drain=drain,
    )
    return [bandwidth_check(row) for row in measured]


def bandwidth_check(row: dict) -> dict:
    """Compare one measured cell of :func:`validate_bandwidth` with the latency model.

    The model is :func:`cloud_latency_ms` on a link of the cell's rate whose RTT is the
    bare link's measured RTT, with the server time taken from the base time (the same
    request over the unshaped link, minus that RTT). Its bytes are the frames each side's
    writes need (:func:`wire_bytes`); a new connection adds its handshake frames (SYN and
    ACK up, SYN-ACK down) and the stalls of slow start (:func:`tcp_slow_start_ms`); the
    handshake's round trip and the server's set-up of the connection are in the base
    time of a new connection.

    Returns:
        ``measured_ms`` (fastest of the cell's requests) against ``model_ms``, ``error``
        (measured / model - 1), the model's bandwidth term ``transfer_ms``,
        ``slow_start_ms``, the ``base_ms`` it started from, and ``payload_model_ms`` /
        ``payload_error``: the model fed only the HTTP bytes, without TCP/IP framing.
        The cell's other measurements follow.
    """
    rate, new = row["rate_mbps"], row["connection"] == "new"
    rtt = row["rtt_ms"]
    link = LinkProfile("tbf", f"TBF {rate:g} Mbit/s", rtt, rate, rate, 0.0, "this machine")
    server_ms = row["base_ms"] - rtt
    up, down = wire_bytes(*row["request_writes"]), wire_bytes(*row["response_writes"])
    if new:
        up, down = up + SYN_FRAME + FRAME_OVERHEAD, down + SYN_FRAME
    data = sum(row["request_writes"] if row["direction"] == "up" else row["response_writes"])
    slow_ms = tcp_slow_start_ms(data, rtt, rate) if new else 0.0
    model = cloud_latency_ms(server_ms, link, up, down) + slow_ms
    http_up, http_down = sum(row["request_writes"]), sum(row["response_writes"])
    payload = cloud_latency_ms(server_ms, link, http_up, http_down)
    measured = row["measured_ms"]
    first = {
        "rate_mbps": rate,
        "connection": row["connection"],
        "size_bytes": row["size_bytes"],
        "measured_ms": measured,
        "model_ms": model,
        "error": measured / model - 1,
        "base_ms": row["base_ms"],
        "transfer_ms": transfer_ms(up, rate) + transfer_ms(down, rate),
        "slow_start_ms": slow_ms,
        "payload_model_ms": payload,
        "payload_error": measured / payload - 1,
        "verdict": bandwidth_verdict(measured, model, row["base_ms"]),
        "frame_bytes": up + down,
        "http_bytes": http_up + http_down,
    }
    return {**first, **{k: v for k, v in row.items() if k not in first}}


def bandwidth_verdict(
    measured_ms: float, model_ms: float, base_ms: float, *, tolerance: float = 0.15
) -> str:
    """How a measured time compares with the model's.

    Returns:
        ``"within"``: within ``tolerance`` of the model.
        ``"overlap"``: faster than that, but by no more than the base time. The model adds
        the server's time to the transfer; a real server starts on a request (reads its
        headers, sets up a new connection) while the body is still arriving, so up to its
        whole time can hide behind the transfer. Only possible where the transfer is
        short next to the server's time (under ~6x the base time, for 15%).
        ``"outside"``: slower than the model by more than ``tolerance``, or faster by more
        than the base time: something the model does not describe.
    """
    if abs(measured_ms / model_ms - 1) <= tolerance:
        return "within"
    if model_ms - base_ms <= measured_ms < model_ms:
        return "overlap"
    return "outside"


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
