"""The server's options: one dataclass, its command-line flags, and back to flags.

``python -m workbench serve`` parses the flags into :class:`ServerOptions`;
:func:`workbench.cloud.serving.serving` turns keyword arguments into the same flags, so the two
never drift. Flag names follow TensorFlow Serving's where it has one (``--enable-batching``
for ``--enable_batching``, ``--grpc-port`` for ``--port``, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass


@dataclass
class ServerOptions:
    """Everything ``workbench serve`` can be told (see ``--help`` for each)."""

    model_base: str | None = None
    host: str = "127.0.0.1"
    port: int = 8501
    grpc_port: int = 0
    version_policy: str = "latest"
    poll_seconds: float = 1.0
    enable_batching: bool = False
    max_batch_size: int = 128
    batch_timeout_micros: int = 0
    num_batch_threads: int = 1
    max_enqueued_batches: int = 16
    max_body_bytes: int | None = None
    max_concurrent_requests: int = 32
    max_inflight_bytes: int = 64 * 2**20
    log_level: str = "warning"
    exit_with_stdin: bool = False
    # models: trust and runtime
    trust_model: bool = False
    prefer_tflite_model: bool = False
    # connections: deadlines and caps (connections.py)
    keep_alive_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 64 * 2**10
    max_connections: int = 256
    # access and transport (security.py)
    auth_token_file: str | None = None
    open_health_metrics: bool = False
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_ca_certs: str | None = None
    allowed_hosts: str = ""
    allowed_origins: str = ""

    def to_args(self) -> list[str]:
        """The ``workbench serve`` flags that reproduce these options."""
        args = []
        defaults = ServerOptions()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == getattr(defaults, f.name) and f.name not in ("port", "host"):
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                if value:
                    args.append(flag)
            elif value is not None:
                args += [flag, str(value)]
        return args


HELP = {
    "model_base": "model base: a folder or an s3:// (fsspec) URL laid out as <base>/<name>/<version>/",
    "host": "bind address",
    "port": "REST port (the same as TF Serving's)",
    "grpc_port": "gRPC port, 0 = no gRPC (TF Serving's gRPC port is 8500)",
    "version_policy": "versions served: latest (the newest), latest:N (the N newest), all, or "
    "specific:V1,V2",
    "poll_seconds": "re-scan the model base this often for new, changed or removed versions (0 = never)",
    "enable_batching": "merge concurrent requests into one model call (TF Serving's --enable_batching)",
    "max_batch_size": "most instances per request and per batched model call (more gets 400)",
    "batch_timeout_micros": "longest a request waits for a batch to fill, with --enable-batching "
    "(0: take what is queued when the model is free, never wait)",
    "num_batch_threads": "batched model calls that may run at once",
    "max_enqueued_batches": "batching queue capacity in batches; beyond it requests get 503",
    "max_body_bytes": "reject larger request bodies with 413 (default: the largest legitimate "
    "request for the model, from --max-batch-size and its signatures)",
    "max_concurrent_requests": "predict requests in progress at once; more get 503 + Retry-After",
    "max_inflight_bytes": "request body bytes in progress at once; more get 503 + Retry-After",
    "log_level": "log level of the server and uvicorn",
    "exit_with_stdin": "exit when standard input closes (used by serving(): the server stops "
    "when the process that started it dies)",
    "trust_model": "serve SavedModels whose graphs read or write files, reach the network or "
    "other processes (refused otherwise, with the list of ops): a model file is code, so only "
    "models you trust as you would trust their author's programs",
    "prefer_tflite_model": "serve a version's model.tflite (next to its saved_model.pb) with "
    "LiteRT instead of TensorFlow, when there is one (TF Serving's --prefer_tflite_model)",
    "keep_alive_timeout_s": "close a connection idle this long, before or between requests",
    "header_timeout_s": "the request line and headers (and a TLS handshake) must arrive within "
    "this many seconds, else 408",
    "body_timeout_s": "a request body must arrive within this many seconds after its headers, "
    "else 408 (no predict slot is held while it arrives)",
    "max_header_bytes": "largest request line plus headers; more gets 431",
    "max_connections": "open REST connections; beyond it the one waiting longest without a "
    "request in progress is closed (also kept below the open-file limit)",
    "auth_token_file": "require 'Authorization: Bearer <token>' (gRPC: that metadata), the "
    "tokens one per line in this file (401 / UNAUTHENTICATED otherwise)",
    "open_health_metrics": "serve /healthz and /metrics without the token (for probes and "
    "scrapers that cannot send one)",
    "ssl_certfile": "serve REST and gRPC over TLS with this certificate (chain), PEM",
    "ssl_keyfile": "the certificate's private key, PEM",
    "ssl_ca_certs": "require client certificates signed by this CA bundle (mutual TLS)",
    "allowed_hosts": "comma-separated Host names answered (400 otherwise); default: loopback "
    "names when bound to a loopback address, any otherwise; * for any",
    "allowed_origins": "comma-separated browser origins allowed cross-origin requests "
    "(e.g. http://localhost:8888); others get 403",
}


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")  # Python logging's, lower case


def version_policy(text: str) -> str:
    """An argparse ``type`` for ``--version-policy``: refuse a policy the server cannot parse."""
    from workbench.cloud.serving.registry import VersionPolicy

    try:
        VersionPolicy.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


# Flags that take names or a small grammar: what argparse checks before the server starts.
CHOICES = {"log_level": LOG_LEVELS}
TYPES = {"version_policy": version_policy}
METAVARS = {"version_policy": "{latest,latest:N,all,specific:V1,V2}"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option as a flag to a ``serve`` sub-command parser."""
    for f in dataclasses.fields(ServerOptions):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=HELP[f.name])
        else:
            kind = {"float": float, "int": int}.get(str(f.type).replace(" | None", "").strip(), str)
            parser.add_argument(
                flag,
                type=TYPES.get(f.name, kind),
                default=default,
                choices=CHOICES.get(f.name),
                metavar=METAVARS.get(f.name),
                help=HELP[f.name],
            )


def from_args(args: argparse.Namespace) -> ServerOptions:
    """The options parsed by a parser that :func:`add_arguments` set up."""
    return ServerOptions(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(ServerOptions)}
    )
