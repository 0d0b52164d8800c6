"""The server process: REST and gRPC over one registry, the poller, and a clean exit.

:func:`run_server` is what ``python -m workbench serve`` runs. It loads the models (nothing
is served before the first load is complete), starts gRPC if asked, polls the model base,
and serves REST with uvicorn until interrupted. With ``--exit-with-stdin`` (which
:func:`~workbench.cloud.serving.serving` passes) it also exits when its standard input closes,
which happens when the process that started it dies for any reason, even ``SIGKILL``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from workbench.cloud.serving.options import ServerOptions
from workbench.cloud.serving.registry import VersionPolicy
from workbench.cloud.serving.service import Service

log = logging.getLogger("workbench.cloud.serving")
EXIT_GRACE_S = 3.0


def create_app(model_base=None, **options):
    """A FastAPI app serving ``model_base`` in this process (models loaded, no polling).

    Keyword arguments are :class:`ServerOptions` fields. ``app.state.service`` is the
    :class:`~workbench.cloud.serving.service.Service` behind it.
    """
    from workbench.cloud.serving.rest import build_app

    opts = ServerOptions(model_base=None if model_base is None else str(model_base), **options)
    return build_app(Service(_checked(opts)))


def _checked(options: ServerOptions) -> ServerOptions:
    VersionPolicy.parse(options.version_policy)
    for name in ("max_batch_size", "max_concurrent_requests", "max_inflight_bytes"):
        if getattr(options, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if options.poll_seconds < 0 or options.batch_timeout_micros < 0:
        raise ValueError("--poll-seconds and --batch-timeout-micros cannot be negative")
    return options


def run_server(options: ServerOptions | None = None, **kwargs) -> None:
    """Serve until interrupted (``python -m workbench serve``).

    Args:
        options: the server's options; or give :class:`ServerOptions` fields as keywords.
    """
    import uvicorn

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
    service = Service(options)
    grpc_server = None
    try:
        if options.grpc_port:
            from workbench.cloud.serving.grpc_api import start_grpc_server

            grpc_server, _ = start_grpc_server(service, options.host, options.grpc_port)
        config = uvicorn.Config(
            build_app(service),
            host=options.host,
            port=options.port,
            log_level=options.log_level,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        exit_hooks.append(lambda: setattr(server, "should_exit", True))
        grpc_text = f" and grpc://{options.host}:{service.grpc_port}" if grpc_server else ""
        print(
            f"Serving {service.registry.served()} from {service.registry.base.url} "
            f"(policy {service.registry.policy}) on http://{options.host}:{options.port}"
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
