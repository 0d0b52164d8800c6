"""The server process: REST and gRPC over one registry, the poller, and a clean exit.

:func:`run_server` is what ``python -m workbench serve`` runs. It loads the models (nothing
is served before the first load is complete), starts gRPC if asked, polls the model base,
and serves REST with uvicorn until interrupted, its connections under deadlines and caps
(:mod:`~workbench.cloud.serving.connections`) and its requests behind the access checks
(:mod:`~workbench.cloud.serving.security`); listening beyond loopback without a token or
without TLS prints a warning. With ``--exit-with-stdin`` (which
:func:`~workbench.cloud.serving.serving` passes) it also exits when its standard input closes,
which happens when the process that started it dies for any reason, even ``SIGKILL``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from workbench.cloud.serving import security
from workbench.cloud.serving.options import ServerOptions
from workbench.cloud.serving.registry import VersionPolicy
from workbench.cloud.serving.service import Service

log = logging.getLogger("workbench.cloud.serving")
EXIT_GRACE_S = 3.0
FD_RESERVE = 64  # descriptors kept from REST connections: model files, the poller, gRPC, logs


def create_app(model_base=None, **options):
    """A FastAPI app serving ``model_base`` in this process (models loaded, no polling).

    Keyword arguments are :class:`ServerOptions` fields. ``app.state.service`` is the
    :class:`~workbench.cloud.serving.service.Service` behind it.
    """
    from workbench.cloud.serving.rest import build_app

    opts = ServerOptions(model_base=None if model_base is None else str(model_base), **options)
    return build_app(Service(_checked(opts)))


def _checked(options: ServerOptions) -> ServerOptions:
    from pathlib import Path

    VersionPolicy.parse(options.version_policy)
    for name in (
        "max_batch_size",
        "max_concurrent_requests",
        "max_inflight_bytes",
        "max_connections",
        "max_header_bytes",
    ):
        if getattr(options, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if options.poll_seconds < 0 or options.batch_timeout_micros < 0:
        raise ValueError("--poll-seconds and --batch-timeout-micros cannot be negative")
    for name in ("keep_alive_timeout_s", "header_timeout_s", "body_timeout_s"):
        if not getattr(options, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be more than 0")
    if bool(options.ssl_certfile) != bool(options.ssl_keyfile):
        raise ValueError("--ssl-certfile and --ssl-keyfile go together: give both, or neither")
    if options.ssl_ca_certs and not options.ssl_certfile:
        raise ValueError("--ssl-ca-certs (mutual TLS) needs --ssl-certfile and --ssl-keyfile")
    for name in ("ssl_certfile", "ssl_keyfile", "ssl_ca_certs", "auth_token_file"):
        value = getattr(options, name)
        if value and not Path(value).is_file():
            raise FileNotFoundError(f"--{name.replace('_', '-')} {value}: no such file")
    return options


def run_server(options: ServerOptions | None = None, **kwargs) -> None:
    """Serve until interrupted (``python -m workbench serve``).

    Args:
        options: the server's options; or give :class:`ServerOptions` fields as keywords.
    """
    from workbench.cloud.serving.rest import build_app

    options = _checked(options or ServerOptions(**kwargs))
    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if options.log_level.lower() == "warning":
        log.setLevel(logging.INFO)  # model loads and unloads are worth seeing by default
    exit_hooks: list = []
    if options.exit_with_stdin:
        _exit_when_stdin_closes(exit_hooks)
    for warning in security.exposure_warnings(options):
        log.warning("Warning: %s", warning)
    if options.trust_model:
        log.warning(
            "Warning: --trust-model: model files are code, and their graphs may now read and "
            "write files, reach the network or other processes with this server's rights"
        )
    service = Service(options)
    grpc_server = None
    try:
        if options.grpc_port:
            from workbench.cloud.serving.grpc_api import start_grpc_server

            grpc_server, _ = start_grpc_server(service, options.host, options.grpc_port)
        server = _rest_server(options, service, build_app(service))
        exit_hooks.append(lambda: setattr(server, "should_exit", True))
        tls = "s" if options.ssl_certfile else ""
        grpc_text = f" and grpc{tls}://{options.host}:{service.grpc_port}" if grpc_server else ""
        print(
            f"Serving {service.registry.served()} from {service.registry.base.url} "
            f"(policy {service.registry.policy}) on http{tls}://{options.host}:{options.port}"
            f"{grpc_text}",
            flush=True,
        )
        service.registry.start_polling(options.poll_seconds)
        server.run()
        if not server.started:
            raise SystemExit(1)  # uvicorn could not bind the port (it logged why)
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=1).wait(5)
        service.close()


def _rest_server(options: ServerOptions, service: Service, app):
    """uvicorn with the guarded protocol, the connection cap the descriptors allow, and TLS."""
    import ssl

    import uvicorn

    from workbench.cloud.serving import connections

    cap, note = connections.descriptor_budget(options.max_connections, FD_RESERVE)
    if note:
        log.warning("%s", note)
    refused = service.metrics.rejected.labels
    limits = connections.ConnectionLimits(
        keep_alive_timeout_s=options.keep_alive_timeout_s,
        header_timeout_s=options.header_timeout_s,
        body_timeout_s=options.body_timeout_s,
        max_header_bytes=options.max_header_bytes,
        max_connections=cap,
        on_refusal=lambda reason: refused(reason).inc(),
    )
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        http=connections.protocol_class(limits),
        log_level=options.log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=options.keep_alive_timeout_s,
        ssl_certfile=options.ssl_certfile,
        ssl_keyfile=options.ssl_keyfile,
        ssl_ca_certs=options.ssl_ca_certs,
        ssl_cert_reqs=ssl.CERT_REQUIRED if options.ssl_ca_certs else ssl.CERT_NONE,
    )
    return connections.GuardedServer(config, handshake_timeout_s=options.header_timeout_s)


def _exit_when_stdin_closes(exit_hooks: list) -> None:
    """Watch standard input; at end-of-file (our parent died) shut down, hard after a grace."""

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        log.warning("Standard input closed (the starting process is gone): shutting down")
        hard_exit = threading.Timer(EXIT_GRACE_S, os._exit, args=(0,))
        hard_exit.daemon = True
        hard_exit.start()
        if not exit_hooks:
            os._exit(0)  # still loading: nothing to shut down gracefully
        for hook in exit_hooks:
            hook()

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()
