"""Time real HTTP transfers over a rate-limited link, each next to its base time.

The link is :func:`workbench.network.emulation.shaped_link`: a TBF-shaped veth pair into a fresh
network namespace, plus an unshaped reference pair into the same namespace. In the
namespace runs a small HTTP server (uvicorn, the server the model server runs on, with a
bare ASGI app: ``POST /`` swallows a body, ``GET /bytes/<n>`` sends ``n`` bytes); here,
the standard library's HTTP client times requests to it.

Every timed request over the shaped link is followed by the very same request over the
reference link: its *base time* (round trip and server time, no rate limit), measured
alternately so that both see the same load on the machine. Before each shaped request
both token buckets are drained (see :mod:`workbench.network.emulation`), so that every frame
waits for its own ``bytes * 8 / rate``, as on a link. Between requests the link rests
until the buckets are full again, so every request starts from the same state.

What each side wrote to its socket is recorded (the client's writes; the server writes
its header block and its body separately), because every write becomes its own TCP
segments and every segment carries 66 bytes of headers on the wire. The shapers' own
byte counters say what actually crossed the link (ACKs and connection set-up included).

``python -m workbench.network.linkbench --pad-ip ADDRESS`` runs the server (in the namespace).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.network.emulation import LinkEmulationError, ShapedLink, send_padding, shaped_link

SINK_PORT = 8080  # the namespace is new and empty: any port is free there
CONNECTIONS = ("keep-alive", "new")
DIRECTIONS = ("up", "down")


# ================================================================== the server


class Sink:
    """A bare ASGI app: ``POST /`` swallows the body, ``GET /bytes/<n>`` sends ``n`` bytes.

    A ``POST`` is answered with the number of bytes received. A request carrying
    ``x-pad-bytes: N`` makes it send ``N`` bytes of padding frames to ``pad_ip`` just
    before answering, to drain the downlink's token bucket.
    """

    def __init__(self, pad_ip: str) -> None:
        self.pad_ip = pad_ip
        self.sock = socket.socket(type=socket.SOCK_DGRAM)
        self.blobs: dict[int, bytes] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        received, more = 0, True
        while more:
            message = await receive()
            received += len(message.get("body", b""))
            more = message.get("more_body", False)
        status, body = self._answer(scope["method"], scope["path"], received)
        pad = dict(scope["headers"]).get(b"x-pad-bytes", b"0")
        if pad.isdigit() and int(pad):
            send_padding(self.sock, self.pad_ip, int(pad))
        length = str(len(body)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", length)],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _answer(self, method: str, path: str, received: int) -> tuple[int, bytes]:
        if method == "POST" and path == "/":
            return 200, str(received).encode()
        match = re.fullmatch(r"/bytes/(\d{1,8})", path)
        if method == "GET" and match:
            n = int(match[1])
            return 200, self.blobs.setdefault(n, bytes(n))
        return 404, b"POST / or GET /bytes/<n> (n < 10**8)"


def run_sink(port: int, pad_ip: str) -> None:
    """Serve :class:`Sink` with uvicorn on every address of this namespace (blocks)."""
    import uvicorn

    uvicorn.run(
        Sink(pad_ip),
        host="0.0.0.0",
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
        lifespan="off",
        timeout_keep_alive=3600,  # a reference connection idles while a slow transfer runs
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphan if we are killed


@contextlib.contextmanager
def sink(link: ShapedLink, *, startup_timeout_s: float = 30.0) -> Iterator[subprocess.Popen]:
    """Run the server in ``link``'s namespace until the block ends."""
    cmd = ["ip", "netns", "exec", link.netns, sys.executable, "-m", "workbench.network.linkbench"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(SINK_PORT), "--pad-ip", link.ns_pad_ip],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        preexec_fn=_die_with_parent,
    )
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not _ready(link.reference.ns_ip):
            if proc.poll() is not None:
                raise LinkEmulationError(f"The HTTP sink exited:\n{proc.stdout.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise LinkEmulationError(
                    f"The HTTP sink was not ready within {startup_timeout_s:.0f} s."
                )
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _ready(host: str) -> bool:
    try:  # a short timeout per probe, so that the start-up deadline holds
        exchange(Connection(host, timeout_s=5.0), "down", 0, new=True)
    except OSError:
        return False
    return True


# ================================================================== the client


class Connection(http.client.HTTPConnection):
    """The standard library's HTTP connection to the sink, Nagle off, its writes recorded.

    ``http.client``, not httpx (the package's HTTP client elsewhere): the size of each write
    to the socket and the time of one exchange are what is measured, and this class sees
    both without a client library's own work in between.
    """

    def __init__(self, host: str, *, timeout_s: float = 120.0) -> None:
        super().__init__(host, SINK_PORT, timeout=timeout_s)
        self.writes: list[int] = []

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: Any) -> None:
        self.writes.append(len(data))
        super().send(data)


@dataclass(frozen=True)
class Exchange:
    """One timed request: milliseconds, and the sizes of each side's writes to its socket."""

    ms: float
    request_writes: tuple[int, ...]
    response_writes: tuple[int, ...]


def exchange(
    conn: Connection, direction: str, size: int, *, new: bool, pad_bytes: int = 0
) -> Exchange:
    """One request of ``size`` body bytes, up (``POST``) or down (``GET``), timed.

    For a new connection the time includes the TCP handshake; the connection is closed
    after the response, outside the timed span.

    Raises:
        LinkEmulationError: the server answered other than 200, or received other than
            ``size`` bytes.
    """
    headers = {"X-Pad-Bytes": str(pad_bytes)} if pad_bytes else {}
    if new:
        headers["Connection"] = "close"
    body = bytes(size) if direction == "up" else None
    path = "/" if direction == "up" else f"/bytes/{size}"
    conn.writes.clear()
    start = time.perf_counter()
    if new:
        conn.connect()
    conn.request("POST" if direction == "up" else "GET", path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    ms = (time.perf_counter() - start) * 1e3
    if new:
        conn.close()
    if response.status != 200 or (direction == "up" and data != str(size).encode()):
        raise LinkEmulationError(
            f"The HTTP sink answered {response.status} {data[:200]!r} to {size} bytes."
        )
    head = f"HTTP/1.1 {response.status} {response.reason}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in response.msg.items()) + "\r\n"
    return Exchange(ms, tuple(conn.writes), (len(head), len(data)) if data else (len(head),))


def connect_rtt_ms(host: str, samples: int = 15) -> float:
    """Fastest TCP handshake to the sink: the round-trip time of the bare link."""
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        with socket.create_connection((host, SINK_PORT), timeout=10):
            times.append((time.perf_counter() - start) * 1e3)
    return min(times)


# ================================================================== the protocol


def cell_repeats(transfer_s: float, repeats: int) -> int:
    """Timed requests for a cell: ``repeats``, up to five times more for short transfers.

    A transfer of a few milliseconds is as long as the machine's scheduling noise; more
    samples cost little there and make the fastest one a steadier estimate.
    """
    return max(repeats, min(5 * repeats, math.ceil(0.05 / max(transfer_s, 1e-4))))


@dataclass
class _Connections:
    """The connections of one kind of cell: shaped, reference, and a kept-alive reference."""

    link: ShapedLink
    new: bool
    shaped: Connection = field(init=False)
    reference: Connection = field(init=False)
    kept_alive: Connection = field(init=False)

    def __post_init__(self) -> None:
        self.shaped = Connection(self.link.shaped.ns_ip)
        self.reference = Connection(self.link.reference.ns_ip)
        self.kept_alive = self.reference if not self.new else Connection(self.link.reference.ns_ip)

    def close(self) -> None:
        for conn in (self.shaped, self.reference, self.kept_alive):
            conn.close()


def _cell(
    conns: _Connections, direction: str, size: int, repeats: int, drain: bool
) -> dict[str, Any]:
    """``repeats`` shaped requests, each followed by its twins over the reference link."""
    link = conns.link
    shaped, base, kept = [], [], []
    before: dict[str, int] = {}
    for i in range(repeats + 1):  # the first round warms the connections up, uncounted
        time.sleep(link.refill_s())
        if i == 1:
            before = link.counters()
        if drain:
            link.drain_uplink()
        pad = link.down_burst if drain else 0
        timed = exchange(conns.shaped, direction, size, new=conns.new, pad_bytes=pad)
        shaped.append(timed.ms)
        base.append(exchange(conns.reference, direction, size, new=conns.new).ms)
        if conns.new:
            kept.append(exchange(conns.kept_alive, direction, size, new=False).ms)
    time.sleep(link.refill_s())  # the closing handshake of the last request, counted
    after = link.counters()
    pads = (link.up_burst, link.down_burst) if drain else (0, 0)
    shaped, base, kept = shaped[1:], base[1:], kept[1:] or base[1:]
    return {
        "measured_ms": min(shaped),
        "measured_p50_ms": statistics.median(shaped),
        "base_ms": min(base),
        "base_p50_ms": statistics.median(base),
        "base_kept_alive_ms": min(kept),
        "request_writes": list(timed.request_writes),
        "response_writes": list(timed.response_writes),
        "link_up_bytes": (after["up_bytes"] - before["up_bytes"]) / repeats - pads[0],
        "link_down_bytes": (after["down_bytes"] - before["down_bytes"]) / repeats - pads[1],
        "dropped": after["drops"] - before["drops"],
        "samples_ms": [round(t, 3) for t in shaped],
        "base_samples_ms": [round(t, 3) for t in base],
    }


def measure_transfers(
    sizes: Sequence[int],
    rates_mbps: Sequence[float],
    *,
    connections: Sequence[str] = CONNECTIONS,
    direction: str = "up",
    repeats: int = 3,
    max_transfer_s: float = 1.0,
    drain: bool = True,
) -> list[dict[str, Any]]:
    """Time HTTP requests over a TBF-shaped link, each next to its base time.

    Args:
        sizes: body sizes in bytes (uploaded by ``POST`` for ``direction="up"``,
            downloaded by ``GET`` for ``"down"``).
        rates_mbps: link rates, both directions at once.
        connections: ``"keep-alive"`` (one connection reused) and/or ``"new"`` (a TCP
            connection per request, its handshake inside the timed span).
        repeats: timed requests per cell after one warm-up (short cells get more,
            :func:`cell_repeats`).
        max_transfer_s: cells whose body alone takes longer at the rate are skipped.
        drain: drain the token buckets before every request (a link that serialises
            every frame); ``False`` measures the bare token bucket.

    Returns:
        one row per (rate, connection, size): the fastest and the median time over the
        shaped link; the fastest base time of the same request (for a new connection,
        also of a request on a kept-alive connection); each side's writes; the bytes per
        request the shapers counted each way (padding excluded); the link's bare RTT;
        the bucket; drops.

    Raises:
        LinkEmulationError: where TBF shaping is not available here.
        ValueError: on a bad argument.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}: expected one of {DIRECTIONS}")
    if bad := [c for c in connections if c not in CONNECTIONS]:
        raise ValueError(f"connections {bad}: expected some of {CONNECTIONS}")
    if repeats < 1 or not sizes or min(sizes) < 0 or not rates_mbps:
        raise ValueError("expected repeats >= 1 and at least one size (>= 0) and one rate")
    rows = []
    with shaped_link(max(rates_mbps)) as link, sink(link):
        rtt_ms = connect_rtt_ms(link.reference.ns_ip)
        for mbps in rates_mbps:
            link.shape(mbps)
            for connection in connections:
                conns = _Connections(link, new=connection == "new")
                for size in sizes:
                    transfer_s = size * 8 / (mbps * 1e6)
                    if transfer_s > max_transfer_s:
                        continue
                    n = cell_repeats(transfer_s, repeats)
                    rows.append(
                        {
                            "rate_mbps": mbps,
                            "direction": direction,
                            "connection": connection,
                            "size_bytes": size,
                            **_cell(conns, direction, size, n, drain),
                            "rtt_ms": rtt_ms,
                            "burst_bytes": link.up_burst,
                            "drained": drain,
                            "repeats": n,
                        }
                    )
                conns.close()
    return rows


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The HTTP sink of workbench.network.linkbench.")
    parser.add_argument("--port", type=int, default=SINK_PORT)
    parser.add_argument("--pad-ip", required=True, help="where to send padding frames")
    args = parser.parse_args(argv)
    run_sink(args.port, args.pad_ip)


if __name__ == "__main__":
    _main()
