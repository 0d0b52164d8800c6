"""Start the model server from Python: :func:`serving`, a context manager.

``with serving(model_base) as server:`` starts ``python -m workbench serve`` as a
subprocess on a free port, waits until it is ready, yields its URL(s), and always stops it.

- **Ours, not a stranger**: each start gets a random nonce (in the child's environment);
  the server is ready only when ``/healthz`` answers with that nonce. A different process
  that grabbed the port first is never taken for ours: on a port we picked we retry on a
  fresh one, on a port you chose we raise.
- **Dies with its parent**: the server's standard input is a pipe from this process and it
  exits when the pipe closes, i.e. when this process ends for any reason, even ``SIGKILL``
  (a killed notebook kernel). ``PR_SET_PDEATHSIG`` is not used: it fires when the *thread*
  that started the child exits, which would stop a server started from a worker thread.
- **Locked, if asked**: with ``auth_token_file`` and the ``ssl_*`` options the server wants a
  token and speaks TLS; :meth:`RunningServer.client` hands out clients that bring both.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import functools
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from workbench.cloud.client import ServingClient, ServingError, ssl_context
from workbench.cloud.serving.options import ServerOptions
from workbench.cloud.serving.security import read_tokens
from workbench.cloud.serving.service import NONCE_ENV

PORT_ATTEMPTS = 3
BIND_FAILURES = ("address already in use", "cannot bind the grpc port", "errno 98")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    """A server started by :func:`serving`."""

    url: str
    process: subprocess.Popen
    port: int
    grpc_port: int | None = None
    nonce: str = ""
    host: str = "127.0.0.1"
    token: str | None = field(default=None, repr=False)  # the first of --auth-token-file's
    ca_bundle: str | None = None  # what checks the server's certificate (TLS)
    client_cert: tuple[str, str] | None = None  # what this side presents (mutual TLS)
    _output: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=400), repr=False
    )

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")

    @property
    def grpc_url(self) -> str | None:
        """``grpc://host:port`` (``grpcs://`` over TLS) for
        :class:`~workbench.cloud.client.ServingClient`, or None."""
        scheme = "grpcs" if self.tls else "grpc"
        return f"{scheme}://{self.host}:{self.grpc_port}" if self.grpc_port else None

    @property
    def client_options(self) -> dict:
        """:class:`~workbench.cloud.client.ServingClient` keywords for this server (token, TLS)."""
        return {"token": self.token, "ca_bundle": self.ca_bundle, "client_cert": self.client_cert}

    def client(self, model: str, *, grpc: bool = False, **kwargs) -> ServingClient:
        """A client of ``model`` on this server (REST, or gRPC), with its token and certificates."""
        url = self.grpc_url if grpc else self.url
        if url is None:
            raise ValueError("This server has no gRPC port: start it with grpc=True")
        return ServingClient(url, model, **{**self.client_options, **kwargs})

    @property
    def grpc_target(self) -> str | None:
        """``host:port`` for ``grpc.insecure_channel`` (the official stubs), or None."""
        return f"{self.host}:{self.grpc_port}" if self.grpc_port else None

    def output(self) -> str:
        """The last lines the server printed (its log)."""
        return "".join(self._output)


class _PortTaken(Exception):
    pass


@contextlib.contextmanager
def serving(
    model_base: Path | str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    grpc: bool = False,
    grpc_port: int | None = None,
    startup_timeout_s: float = 120.0,
    netns: str | None = None,
    ca_bundle: str | Path | None = None,
    client_cert: tuple[str | Path, str | Path] | None = None,
    **options,
) -> Iterator[RunningServer]:
    """Start the server as a subprocess, wait until it is ready, always stop it.

    Args:
        model_base: folder or ``s3://`` URL (default: ``paths.serving_base()``).
        host: bind address.
        port: REST port (default: a free one).
        grpc: also serve gRPC (on ``grpc_port``, default a free one).
        startup_timeout_s: how long loading the models may take.
        netns: run the server inside this network namespace (``ip netns exec``), for
            link-emulation experiments; ``host`` must then be an address in it.
        ca_bundle: with TLS (``ssl_certfile``), the CA that signed the server's certificate
            (default: that certificate itself, right for a self-signed one).
        client_cert: with mutual TLS (``ssl_ca_certs``), ``(certificate, key)`` this side
            presents.
        **options: any other :class:`~workbench.cloud.serving.options.ServerOptions` field, e.g.
            ``version_policy="all"``, ``enable_batching=True``, ``max_batch_size=32``,
            ``poll_seconds=0``, ``prefer_tflite_model=True`` (serve ``model.tflite`` with
            LiteRT), ``trust_model=True``, ``auth_token_file=...``, ``ssl_certfile=...``.
    """
    from workbench.core import paths

    base = str(model_base) if model_base is not None else str(paths.serving_base())
    bind_host = "127.0.0.1" if netns is None else "0.0.0.0"
    attempts = PORT_ATTEMPTS if port is None and (grpc_port is None or not grpc) else 1
    for attempt in range(attempts):
        opts = ServerOptions(
            model_base=base,
            host=host,
            port=port or free_port(bind_host),
            grpc_port=(grpc_port or free_port(bind_host)) if grpc else 0,
            exit_with_stdin=True,
            **options,
        )
        server = _start(opts, netns)
        if opts.auth_token_file:
            server.token = read_tokens(opts.auth_token_file)[0].decode()
        if opts.ssl_certfile:
            server.ca_bundle = str(ca_bundle or opts.ssl_certfile)
            server.client_cert = tuple(str(p) for p in client_cert) if client_cert else None
        stopper = functools.partial(_stop, server.process)
        atexit.register(stopper)  # also stops it if the interpreter exits inside the block
        try:
            try:
                _wait_ready(server, time.monotonic() + startup_timeout_s, startup_timeout_s)
            except _PortTaken as err:
                if attempt + 1 < attempts:
                    continue
                raise ServingError(str(err)) from None
            yield server
            return
        finally:
            stopper()
            atexit.unregister(stopper)


def _start(opts: ServerOptions, netns: str | None) -> RunningServer:
    import os

    nonce = secrets.token_hex(16)
    cmd = [sys.executable, "-m", "workbench", "serve", *opts.to_args()]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, NONCE_ENV: nonce},
    )
    server = RunningServer(
        url=f"{'https' if opts.ssl_certfile else 'http'}://{opts.host}:{opts.port}",
        process=proc,
        port=opts.port,
        grpc_port=opts.grpc_port or None,
        nonce=nonce,
        host=opts.host,
    )
    threading.Thread(
        target=lambda: server._output.extend(proc.stdout), name="server-output", daemon=True
    ).start()
    return server


def _wait_ready(server: RunningServer, deadline: float, timeout_s: float) -> None:
    """Return once ``/healthz`` answers with our nonce; raise if the process dies or times out."""
    import httpx

    while True:
        if server.process.poll() is not None:
            time.sleep(0.2)  # let the reader thread collect the last lines
            log = server.output()
            if any(s in log.lower() for s in BIND_FAILURES):
                raise _PortTaken(
                    f"Port {server.port} is in use by another process. Log:\n{log[-1500:]}"
                )
            raise ServingError(
                f"The model server exited with code {server.process.returncode} before it was "
                f"ready. Its output:\n{log[-3000:]}"
            )
        try:
            r = httpx.get(
                f"{server.url}/healthz",
                timeout=1.0,
                trust_env=False,
                headers={"Authorization": f"Bearer {server.token}"} if server.token else None,
                verify=ssl_context(server.ca_bundle, server.client_cert) if server.tls else True,
            )
        except httpx.HTTPError as err:
            if server.tls and "certificate" in str(err).lower():
                raise ServingError(
                    f"The model server at {server.url} is up, but its TLS certificate was not "
                    f"accepted ({err}): pass ca_bundle=<the CA that signed it> (and "
                    "client_cert=(cert, key) for mutual TLS)."
                ) from None
            r = None
        if r is not None:
            try:
                nonce = r.json().get("nonce")
            except (ValueError, AttributeError):
                nonce = None
            if nonce == server.nonce and r.status_code == 200:
                return
            raise _PortTaken(
                f"Another process answers on {server.url} (HTTP {r.status_code}, not our nonce): "
                "the port is taken. Choose another port, or leave port=None."
            )
        if time.monotonic() > deadline:
            raise ServingError(
                f"The model server at {server.url} was not ready within {timeout_s:.0f} s. "
                f"Its output:\n{server.output()[-3000:]}"
            )
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    """Close its stdin (it shuts down cleanly), then terminate, then kill."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(OSError, ValueError):
        proc.stdin.close()
    for action in (None, proc.terminate, proc.kill):
        if action is not None:
            action()
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue
