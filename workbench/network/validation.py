"""The link model checked on real links: transfers timed over veth pairs shaped with a
token bucket between network namespaces, against what the model predicts.
"""

from __future__ import annotations

from collections.abc import Sequence

from workbench.network import latency

# A cell is judged only where the transfer takes this many times the base time and its
# measured spread: below that the round trip and the machine's scheduling decide the time,
# not the link, and the cell is reported ("base-dominated"), not judged.
DOMINANCE = 4.0

# The columns of validate_bandwidth's rows worth a first look, in order.
BANDWIDTH_COLUMNS = [
    "rate_mbps",
    "connection",
    "size_bytes",
    "measured_ms",
    "model_ms",
    "error",
    "verdict",
    "noise_ms",
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
    (:func:`workbench.network.emulation.shaped_link`), runs a small HTTP server there and times
    real HTTP requests of each size at each rate, over a kept-alive connection and over a
    new connection per request (:func:`workbench.network.linkbench.measure_transfers`). Each
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
            (:mod:`workbench.network.emulation`); ``False`` shows the bare token bucket, which
            lets a message smaller than its bucket through at once.

    Returns:
        one row per cell, from :func:`bandwidth_check`.

    Raises:
        LinkEmulationError: not root, no iproute2, or no TBF in the kernel
            (:func:`shaping_available` says which, without raising).
    """
    from workbench.network import linkbench

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
    link = latency.Link("tbf", f"TBF {rate:g} Mbit/s", rtt, rate, rate, 0.0, "this machine")
    server_ms = row["base_ms"] - rtt
    up, down = (
        latency.wire_bytes(*row["request_writes"]),
        latency.wire_bytes(*row["response_writes"]),
    )
    if new:
        up, down = up + latency.SYN_FRAME + latency.FRAME_OVERHEAD, down + latency.SYN_FRAME
    data = sum(row["request_writes"] if row["direction"] == "up" else row["response_writes"])
    slow_ms = latency.tcp_slow_start_ms(data, rtt, rate) if new else 0.0
    model = latency.cloud_latency_ms(server_ms, link, up, down) + slow_ms
    http_up, http_down = sum(row["request_writes"]), sum(row["response_writes"])
    payload = latency.cloud_latency_ms(server_ms, link, http_up, http_down)
    measured = row["measured_ms"]
    transfer = latency.transfer_ms(up, rate) + latency.transfer_ms(down, rate)
    # the spread this machine added to the cell: the median over the fastest, on both links
    noise = max(0.0, row.get("measured_p50_ms", measured) - measured) + max(
        0.0, row.get("base_p50_ms", row["base_ms"]) - row["base_ms"]
    )
    first = {
        "rate_mbps": rate,
        "connection": row["connection"],
        "size_bytes": row["size_bytes"],
        "measured_ms": measured,
        "model_ms": model,
        "error": measured / model - 1,
        "base_ms": row["base_ms"],
        "transfer_ms": transfer,
        "noise_ms": noise,
        "slow_start_ms": slow_ms,
        "payload_model_ms": payload,
        "payload_error": measured / payload - 1,
        "verdict": bandwidth_verdict(
            measured, model, row["base_ms"], transfer_ms=transfer, noise_ms=noise
        ),
        "frame_bytes": up + down,
        "http_bytes": http_up + http_down,
    }
    return {**first, **{k: v for k, v in row.items() if k not in first}}


def bandwidth_verdict(
    measured_ms: float,
    model_ms: float,
    base_ms: float,
    *,
    transfer_ms: float | None = None,
    noise_ms: float = 0.0,
    tolerance: float = 0.15,
) -> str:
    """How a measured time compares with the model's.

    Args:
        transfer_ms: the model's bandwidth term for the cell (None: judge every cell).
        noise_ms: the spread this machine added to the cell's samples (median minus fastest,
            on the shaped and on the bare link): it widens the tolerance, since a busy
            machine delays some requests by that much whatever the link does.

    Returns:
        ``"base-dominated"``: the transfer is shorter than :data:`DOMINANCE` times the base
        time and its spread: the round trip and the machine's scheduling decide the time,
        so the cell says nothing about the link's bandwidth (reported, not judged).
        ``"within"``: within ``tolerance`` of the model, plus the measured noise.
        ``"overlap"``: faster than that, but by no more than the base time. The model adds
        the server's time to the transfer; a real server starts on a request (reads its
        headers, sets up a new connection) while the body is still arriving, so up to its
        whole time can hide behind the transfer.
        ``"outside"``: slower than the model by more than the tolerance and the noise, or
        faster by more than the base time: something the model does not describe.
    """
    if transfer_ms is not None and transfer_ms < DOMINANCE * (base_ms + noise_ms):
        return "base-dominated"
    if abs(measured_ms - model_ms) <= tolerance * model_ms + noise_ms:
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
    links: dict[str, latency.Link] | None = None,
) -> list[dict]:
    """Edge against cloud on every link: measured edge, measured loopback + modelled link.

    The cloud's p50 is the loopback p50 plus the link at its median; its p95 is the
    loopback p95 plus the link at its 95th percentile (RTT + 1.645 jitter).
    """
    rows = []
    for link in (links or latency.LINKS).values():
        link_p50 = latency.link_ms(link, request_bytes, response_bytes)
        link_p95 = latency.link_ms(link, request_bytes, response_bytes, quantile=0.95)
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
