"""HTTP connections with deadlines and caps, so a few slow or idle clients cannot lock others out.

uvicorn's HTTP protocol (httptools) waits for request headers and bodies without a deadline,
accepts headers of any size and keeps every connection it accepts. :class:`GuardedProtocol`
adds, per connection:

- an **idle** deadline (``--keep-alive-timeout-s``): a connection that sends nothing, before
  its first request or between two, is closed;
- a **header** deadline (``--header-timeout-s``): the request line and headers must arrive
  within it from their first byte (408 otherwise), and a **header size** cap
  (``--max-header-bytes``: 431 beyond it, after at most one more read of the socket);
- a **body** deadline (``--body-timeout-s``): the whole body must arrive within it after the
  headers (408 otherwise). The predict slot (``--max-concurrent-requests``) is taken only
  once the body is complete (:mod:`~workbench.cloud.serving.rest`), so a slow body holds a
  connection, never a slot;
- a cap on **open connections** (``--max-connections``, also kept below the process's
  file-descriptor limit so the model poller and loader always have descriptors left): a new
  connection beyond it closes the connection that has waited longest without a request in
  progress (idle first, then slow headers, then slow bodies); if every connection is
  being served, the new one gets 503.

:class:`GuardedServer` also puts the header deadline on the TLS handshake (asyncio's default
is 60 s), since a connection is counted only once its handshake is done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("workbench.cloud.serving")
IDLE, HEADERS, BODY, APP = "idle", "headers", "body", "app"
EVICTION_ORDER = {IDLE: 0, HEADERS: 1, BODY: 2}  # who goes first when the cap is reached


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines and caps of the REST server's connections (see the module docstring)."""

    keep_alive_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 64 * 2**10
    max_connections: int = 256
    on_refusal: Callable[[str], None] | None = None  # metrics: called with the reason


def protocol_class(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """A :class:`GuardedProtocol` bound to ``limits`` (uvicorn's ``http`` setting)."""
    return type("BoundGuardedProtocol", (GuardedProtocol,), {"limits": limits})


def raw_response(status: int, message: str, extra: bytes = b"") -> bytes:
    """A whole HTTP/1.1 response, ``{"error": ...}`` as its body, closing the connection."""
    import http

    body = json.dumps({"error": message}).encode()
    return (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()
        + b"content-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n".encode()
        + extra
        + b"connection: close\r\n\r\n"
        + body
    )


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with idle, header and body deadlines, a header size cap
    and a connection cap (see the module docstring)."""

    limits = ConnectionLimits()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.phase = IDLE
        self.phase_since = time.monotonic()
        self.header_bytes = 0
        self.deadline: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ phases and deadlines

    def _enter(self, phase: str, timeout_s: float | None) -> None:
        self.phase, self.phase_since = phase, time.monotonic()
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if timeout_s is not None:
            self.deadline = self.loop.call_later(timeout_s, self._expired)

    def _expired(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        limits = self.limits
        if self.phase == IDLE:
            self.transport.close()  # nothing asked: a quiet close, as keep-alive expiry
            return
        if self.phase == HEADERS:
            self._refuse(
                408,
                f"The request headers did not arrive within {limits.header_timeout_s:g} s "
                "(--header-timeout-s)",
                "header_timeout",
            )
        elif self.phase == BODY:
            self._refuse(
                408,
                f"The request body did not arrive within {limits.body_timeout_s:g} s after its "
                "headers (--body-timeout-s)",
                "body_timeout",
            )

    def _refuse(self, status: int, message: str, reason: str, extra: bytes = b"") -> None:
        """Answer ``status`` (unless a response has started), close, and wake the app."""
        cycle = self.cycle  # in the header phase: the previous request's, if any
        if self.phase in (IDLE, HEADERS) or cycle is None or not cycle.response_started:
            self.transport.write(raw_response(status, message, extra))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() returns http.disconnect
            cycle.message_event.set()
        self.transport.close()
        if self.limits.on_refusal is not None:
            self.limits.on_refusal(reason)

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter(IDLE, self.limits.keep_alive_timeout_s)
        if len(self.connections) > self.limits.max_connections and not self._evict_one():
            self._refuse(
                503,
                "The server is at its connection limit (--max-connections); retry shortly",
                "connections",
                b"retry-after: 1\r\n",
            )

    def _evict_one(self) -> bool:
        """Close the connection that waited longest without a request in progress."""
        waiting = [
            c
            for c in self.connections
            if c is not self
            and getattr(c, "phase", APP) in EVICTION_ORDER
            and not c.transport.is_closing()
        ]
        if not waiting:
            return False
        victim = min(waiting, key=lambda c: (EVICTION_ORDER[c.phase], c.phase_since))
        if victim.phase == IDLE:
            victim.transport.close()
            if self.limits.on_refusal is not None:
                self.limits.on_refusal("evicted_idle")
        else:
            victim._refuse(
                503,
                "Closed to make room for another connection (--max-connections); retry",
                "evicted",
                b"retry-after: 1\r\n",
            )
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused or evicted: read no more
        if self.phase == IDLE:
            self._enter(HEADERS, self.limits.header_timeout_s)
            self.header_bytes = 0
        if self.phase == HEADERS:
            self.header_bytes += len(data)
        super().data_received(data)
        if self.phase == HEADERS and self.header_bytes > self.limits.max_header_bytes:
            self._header_too_large()

    def _header_too_large(self) -> None:
        if not self.transport.is_closing():
            self._refuse(
                431,
                f"The request line and headers exceed {self.limits.max_header_bytes:,} bytes "
                "(--max-header-bytes)",
                "header_size",
            )

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.phase != HEADERS:  # a pipelined request that began in an earlier read
            self._enter(HEADERS, self.limits.header_timeout_s)
            self.header_bytes = 0

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.limits.max_header_bytes:
            self.phase = HEADERS
            self._header_too_large()
            return
        self._enter(BODY, self.limits.body_timeout_s)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.cycle is not None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.cycle is None:
            return
        if self.cycle.response_complete:
            self._enter(IDLE, self.limits.keep_alive_timeout_s)  # answered before its body
        else:
            self._enter(APP, None)  # the app's work is bounded by admission, not a deadline
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.phase == APP and not self.transport.is_closing():
            self._enter(IDLE, self.limits.keep_alive_timeout_s)


class GuardedServer(uvicorn.Server):
    """uvicorn's server, with the header deadline on the TLS handshake as well.

    Args:
        config: the uvicorn config (its ``http`` a :func:`protocol_class`).
        handshake_timeout_s: the longest a TLS handshake may take.
    """

    def __init__(self, config: uvicorn.Config, *, handshake_timeout_s: float) -> None:
        super().__init__(config)
        self.handshake_timeout_s = handshake_timeout_s

    async def startup(self, sockets=None) -> None:
        config = self.config
        if config.ssl is None or sockets is not None or config.fd is not None or config.uds:
            await super().startup(sockets)
            return
        # As uvicorn's own start-up for host and port, plus ssl_handshake_timeout.
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(3)
        loop = asyncio.get_running_loop()

        def create_protocol(_loop=None):
            return config.http_protocol_class(
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )

        try:
            server = await loop.create_server(
                create_protocol,
                host=config.host,
                port=config.port,
                ssl=config.ssl,
                backlog=config.backlog,
                ssl_handshake_timeout=self.handshake_timeout_s,
            )
        except OSError as exc:
            log.error("%s", exc)
            await self.lifespan.shutdown()
            sys.exit(3)
        self.servers = [server]
        self.started = True


def descriptor_budget(wanted: int, reserve: int) -> tuple[int, str | None]:
    """The connection cap the process's file-descriptor limit allows, and a note if lowered.

    Raises the soft ``RLIMIT_NOFILE`` to the hard limit first (the usual practice of servers),
    then keeps ``reserve`` descriptors for everything that is not a REST connection (the
    model poller, model files, gRPC, logs).
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return wanted, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    allowed = max(soft - reserve, 8)
    if wanted <= allowed:
        return wanted, None
    return allowed, (
        f"--max-connections {wanted} lowered to {allowed}: the process may open {soft} files "
        f"and {reserve} are kept for model loading, polling and gRPC (raise `ulimit -n`)"
    )
