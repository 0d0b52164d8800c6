"""Network links between the edge and the cloud, and the latency model of a request over one.

The latency model for one request to the cloud::

    latency = server time + RTT + request bytes * 8 / uplink + response bytes * 8 / downlink

where *server time* is measured (loopback end-to-end, or the server's own
compute time) and the link terms come from a :class:`Link`.
Bytes are what crosses the link: :func:`wire_bytes` adds TCP/IP framing to a payload, and
a new connection adds a handshake and slow start (:func:`tcp_slow_start_ms`).

The model is checked on real links in :mod:`workbench.network.validation` (bandwidth) and
:func:`workbench.collab.compare.validate_model` (the whole request, through the server).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Link:
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
# here (or build your own Link) to match the link you care about.
LINKS: dict[str, Link] = {
    p.name: p
    for p in [
        # Switched gigabit Ethernet to a server in the same building (an on-premises "cloud").
        Link(
            "lan",
            "Wired LAN",
            0.5,
            1000,
            1000,
            0.1,
            "switched 1 GbE, same site: sub-millisecond RTT is typical",
        ),
        # Home/office Wi-Fi on fixed broadband to a regional cloud data centre.
        Link(
            "wifi",
            "Wi-Fi + broadband",
            20,
            50,
            150,
            5,
            "fixed-broadband medians in speed-test reports (~20 ms, ~50/150 Mbit/s)",
        ),
        # Public 5G (non-standalone), to a regional cloud.
        Link(
            "5g",
            "5G",
            30,
            40,
            200,
            8,
            "mobile-network reports of 5G: ~25-35 ms latency, 100-300 Mbit/s down, 30-60 up",
        ),
        # 4G LTE.
        Link(
            "4g",
            "4G LTE",
            50,
            8,
            25,
            15,
            "mobile-network reports of 4G: ~40-60 ms latency, 20-30 Mbit/s down, 5-10 up",
        ),
        # 3G, as the browser throttling presets model it.
        Link(
            "3g",
            "3G",
            300,
            0.75,
            1.6,
            50,
            "Chrome DevTools / Lighthouse 'Fast 3G' preset: ~300 ms RTT, 1.6 Mbit/s down, 750 kbit/s up",
        ),
        # Geostationary satellite: 2 x 35,786 km up and down is ~480 ms of light travel alone.
        Link(
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
    link: Link, request_bytes: float, response_bytes: float, *, quantile: float = 0.5
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
    link: Link,
    request_bytes: float,
    response_bytes: float,
    *,
    quantile: float = 0.5,
) -> float:
    """Modelled end-to-end latency of a cloud request: server time plus :func:`link_ms`."""
    return server_ms + link_ms(link, request_bytes, response_bytes, quantile=quantile)


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
