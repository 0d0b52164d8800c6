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
    "host": "bind address (default 127.0.0.1)",
    "port": "REST port (TF Serving's REST default: 8501)",
    "grpc_port": "gRPC port, 0 = no gRPC (TF Serving's default gRPC port: 8500)",
    "version_policy": "versions served: latest (default), latest:N, all, or specific:V1,V2",
    "poll_seconds": "re-scan the model base this often for new, changed or removed versions (0 = never)",
    "enable_batching": "merge concurrent requests into one model call (TF Serving's --enable_batching)",
    "max_batch_size": "most instances per request and per batched model call (more gets 400)",
    "batch_timeout_micros": "longest a request waits for a batch to fill (with --enable-batching; "
    "default 0: take what is queued when the model is free, never wait)",
    "num_batch_threads": "batched model calls that may run at once",
    "max_enqueued_batches": "batching queue capacity in batches; beyond it requests get 503",
    "max_body_bytes": "reject larger request bodies with 413 (default: the largest legitimate "
    "request for the model, from --max-batch-size and its signatures)",
    "max_concurrent_requests": "predict requests in progress at once; more get 503 + Retry-After",
    "max_inflight_bytes": "request body bytes in progress at once; more get 503 + Retry-After",
    "log_level": "uvicorn and server log level (default warning)",
    "exit_with_stdin": "exit when standard input closes (used by serving(): the server stops "
    "when the process that started it dies)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option as a flag to a ``serve`` sub-command parser."""
    for f in dataclasses.fields(ServerOptions):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=HELP[f.name])
        else:
            kind = {"float": float, "int": int}.get(str(f.type).replace(" | None", "").strip(), str)
            parser.add_argument(flag, type=kind, default=default, help=HELP[f.name])


def from_args(args: argparse.Namespace) -> ServerOptions:
    """The options parsed by a parser that :func:`add_arguments` set up."""
    return ServerOptions(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(ServerOptions)}
    )
