"""The cloud tier: a model server that behaves like TensorFlow Serving.

Serves SavedModels in TF Serving's layout (``<base>/<name>/<version>/``, a folder or an
``s3://`` URL) over TF Serving's REST API and, optionally, its gRPC API, with its version
policies, live polling of the model base and dynamic batching, and with limits that keep a
2 GB machine safe from abusive requests. ``from workbench import serving`` and:

- :func:`serving` starts it as a subprocess (``python -m workbench serve``) and stops it;
- :class:`ServingClient` talks to it (or to a real TF Serving) over REST or gRPC;
- :func:`encode_images`, :data:`ENCODINGS`, :func:`measure_encodings` compare payloads;
- :func:`load_test`, :func:`batching_comparison`, :func:`read_metrics` measure it.

Modules, one per part: ``options`` (flags), ``storage`` (folder or object store),
``servable`` (one version loaded: TensorFlow after a safety scan, or LiteRT), ``registry``
(version policy, polling), ``decode`` (requests to checked arrays, limits), ``batching``,
``service`` (what both APIs share), ``security`` (tokens, hosts, origins, exposure),
``connections`` (deadlines and caps per connection), ``rest``, ``grpc_api``, ``server`` (the
process), ``launcher`` (:func:`serving`), ``experiments``.
"""

from __future__ import annotations

from workbench.cloud.client import (
    ENCODINGS,
    GRPC_ENCODINGS,
    SERVER_TIMING,
    Prediction,
    ServerUnreachableError,
    ServingClient,
    ServingError,
    encode_images,
    encoding_protocol,
    histogram_buckets,
    load_test,
    measure_encodings,
    parse_server_timing,
    png_bytes,
    read_metrics,
)
from workbench.cloud.serving.errors import RequestError
from workbench.cloud.serving.experiments import batching_comparison
from workbench.cloud.serving.launcher import RunningServer, free_port, serving
from workbench.cloud.serving.options import ServerOptions
from workbench.cloud.serving.registry import VersionPolicy
from workbench.cloud.serving.server import create_app, run_server
from workbench.cloud.serving.storage import download_saved_model, upload_saved_model

__all__ = [
    "ENCODINGS",
    "GRPC_ENCODINGS",
    "SERVER_TIMING",
    "Prediction",
    "RequestError",
    "RunningServer",
    "ServerOptions",
    "ServerUnreachableError",
    "ServingClient",
    "ServingError",
    "VersionPolicy",
    "batching_comparison",
    "create_app",
    "download_saved_model",
    "encode_images",
    "encoding_protocol",
    "free_port",
    "histogram_buckets",
    "load_test",
    "measure_encodings",
    "parse_server_timing",
    "png_bytes",
    "read_metrics",
    "run_server",
    "serving",
    "upload_saved_model",
]
