"""The client side of the cloud tier: TensorFlow Serving's REST and gRPC APIs from the edge.

- :class:`ServingClient` talks to :mod:`workbench.cloud.serving` or to a real TensorFlow Serving,
  over REST (``http://host:8501`` or ``https://``, one kept-alive HTTP connection) or gRPC
  (``grpc://host:8500``, or ``grpcs://`` over TLS, the official ``tensorflow-serving-api``
  stubs), with a bearer token, a CA bundle to check the server and a client certificate
  for mutual TLS when the server asks for them.
- :func:`encode_images` builds predict requests in several encodings (:data:`ENCODINGS`):
  JSON bodies for REST, serialized ``PredictRequest`` messages (TensorProto payloads) for
  gRPC, because on a slow uplink the bytes decide. :func:`measure_encodings` measures them.
- :func:`load_test` measures throughput and server utilisation with concurrent clients;
  :func:`read_metrics` and :func:`histogram_buckets` read the server's Prometheus metrics.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SERVER_TIMING = "Server-Timing"
GRPC_DEFAULT_PORT = 8500
# gRPC status code -> the HTTP status TF Serving's REST API gives for it
GRPC_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class ServingError(RuntimeError):
    """The server answered with an error.

    ``status`` is the HTTP status (for gRPC: the one TF Serving's REST API gives for the
    code); ``code`` is the gRPC status code name for gRPC calls, else None.
    """

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ServerUnreachableError(ServingError):
    """No server answered at the URL (not started, wrong port, or network down)."""


@dataclass
class Prediction:
    """A prediction and what it cost on the wire."""

    outputs: Any  # an array (one output) or {name: array}
    elapsed_ms: float  # client-side wall time of the request
    server_compute_ms: float | None  # from Server-Timing (None against a real TF Serving)
    request_bytes: int  # the body (REST) or the serialized PredictRequest (gRPC)
    response_bytes: int


class ServingClient:
    """A client for TensorFlow Serving (this workbench's server or a real TF Serving).

    Args:
        url: ``http://host:8501`` or ``https://...`` for REST (one kept-alive HTTP/1.1
            connection, reconnected once if the server closed it) or ``grpc://host:8500``
            (``grpcs://`` over TLS) for gRPC.
        model: the model name.
        version: a version number, or ``None`` for the latest.
        timeout_s: per-request timeout.
        token: a bearer token, sent as ``Authorization: Bearer <token>`` (gRPC: metadata).
        ca_bundle: PEM file of the CA(s) that signed the server's certificate (default: the
            system's); giving one also turns TLS on for a ``grpc://`` URL.
        client_cert: for mutual TLS, ``(certificate file, key file)`` or one PEM file with both.
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        version: int | None = None,
        timeout_s: float = 30.0,
        token: str | None = None,
        ca_bundle: str | os.PathLike | None = None,
        client_cert: tuple[str | os.PathLike, str | os.PathLike] | str | os.PathLike | None = None,
    ) -> None:
        from urllib.parse import urlsplit

        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https", "grpc", "grpcs") or not parts.hostname:
            raise ValueError(f"Not an http(s):// or grpc(s):// URL: {url!r}")
        self.protocol = "grpc" if parts.scheme.startswith("grpc") else "rest"
        self._scheme, self._host = parts.scheme, parts.hostname
        default_port = {"https": 443, "http": 80}.get(parts.scheme, GRPC_DEFAULT_PORT)
        self._port = parts.port or default_port
        self.model = model
        self.version = version
        self.timeout_s = timeout_s
        self._token = token
        self._ca_bundle = ca_bundle
        self._client_cert = (
            (client_cert, None) if isinstance(client_cert, str | os.PathLike) else client_cert
        )
        self._tls = parts.scheme in ("https", "grpcs") or (
            self.protocol == "grpc" and ca_bundle is not None
        )
        self._conn = None
        self._channel = None
        self._stubs: dict[str, Any] = {}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._channel is not None:
            self._channel.close()
            self._channel, self._stubs = None, {}

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def model_path(self) -> str:
        v = f"/versions/{self.version}" if self.version is not None else ""
        return f"/v1/models/{self.model}{v}"

    # ------------------------------------------------------------ the API

    def status(self) -> dict:
        """The model's version status, as TF Serving's REST API writes it (also over gRPC)."""
        if self.protocol == "grpc":
            from tensorflow_serving.apis import get_model_status_pb2

            request = get_model_status_pb2.GetModelStatusRequest()
            self._set_spec(request.model_spec)
            response, _ = self._grpc_call("model", "GetModelStatus", request)
            return _to_dict(response)
        return json.loads(self._request("GET", self.model_path)[2])

    def metadata(self) -> dict:
        """The model's signatures, as TF Serving's REST API writes them (also over gRPC)."""
        if self.protocol == "grpc":
            from tensorflow_serving.apis import get_model_metadata_pb2

            request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"]
            )
            self._set_spec(request.model_spec)
            response, _ = self._grpc_call("predict", "GetModelMetadata", request)
            defs = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(defs)
            return {
                "model_spec": {
                    "name": response.model_spec.name,
                    "signature_name": "",
                    "version": str(response.model_spec.version.value),
                },
                "metadata": {"signature_def": _to_dict(defs)},
            }
        return json.loads(self._request("GET", f"{self.model_path}/metadata")[2])

    def predict_body(self, body: bytes) -> Prediction:
        """Send a ready-made request from :func:`encode_images`; return outputs and costs.

        REST: ``body`` is a JSON predict body. gRPC: a serialized ``PredictRequest`` (the
        client fills in the model name and version).
        """
        if self.protocol == "grpc":
            return self._predict_grpc(body)
        import orjson

        t0 = time.perf_counter()
        _, headers, data = self._request("POST", f"{self.model_path}:predict", content=body)
        elapsed = (time.perf_counter() - t0) * 1e3
        doc = orjson.loads(data)
        result = doc["predictions"] if "predictions" in doc else doc["outputs"]
        return Prediction(
            outputs=result if isinstance(result, dict) else np.asarray(result, dtype=np.float32),
            elapsed_ms=elapsed,
            server_compute_ms=parse_server_timing(headers.get("server-timing", "")).get("compute"),
            request_bytes=len(body),
            response_bytes=len(data),
        )

    def predict(self, images: np.ndarray, *, encoding: str | None = None) -> Prediction:
        """Predict uint8 images (N, H, W, C) with one of :data:`ENCODINGS`.

        The default encoding is ``json`` over REST and ``tensor_proto`` over gRPC.
        """
        encoding = encoding or ("tensor_proto" if self.protocol == "grpc" else "json")
        if encoding_protocol(encoding) != self.protocol:
            raise ValueError(
                f"Encoding {encoding!r} is sent over {encoding_protocol(encoding)}, but this "
                f"client talks {self.protocol} ({self.url}); use a "
                f"{'grpc://' if self.protocol == 'rest' else 'http://'} URL for it"
            )
        return self.predict_body(encode_images(images, encoding))

    # ------------------------------------------------------------ REST

    def _connection(self):
        # http.client, not httpx (the package's HTTP client elsewhere): this connection times
        # every predict (Prediction.elapsed_ms, loopback overhead in notebook 04), and httpx's
        # per-request cost is of the order of the server overhead being measured.
        import http.client

        if self._conn is None:
            if self._scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    self._host,
                    self._port,
                    timeout=self.timeout_s,
                    context=ssl_context(self._ca_bundle, self._client_cert),
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.timeout_s
                )
        return self._conn

    def _request(
        self, method: str, path: str, content: bytes | None = None
    ) -> tuple[int, dict, bytes]:
        import http.client

        headers = {"Content-Type": "application/json"} if content is not None else {}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=content, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (ConnectionRefusedError, socket.gaierror, OSError) as err:
                self.close()
                stale = isinstance(
                    err, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                )
                if stale and attempt == 1:
                    continue  # the server closed a kept-alive connection: reconnect once
                if isinstance(err, TimeoutError | socket.timeout):
                    raise ServingError(
                        f"The model server at {self.url} did not answer within "
                        f"{self.timeout_s:g} s ({method} {path})."
                    ) from err
                raise ServerUnreachableError(_unreachable(self.url, err)) from err
        if response.status >= 400:
            try:
                message = json.loads(data).get("error", data.decode(errors="replace"))
            except (ValueError, AttributeError):
                message = data.decode(errors="replace")
            raise ServingError(
                f"{method} {self.url}{path} -> {response.status}: {message}", response.status
            )
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    # ------------------------------------------------------------ gRPC

    def _set_spec(self, spec) -> None:
        spec.name = self.model
        if self.version is not None:
            spec.version.value = self.version

    def _grpc_stub(self, which: str):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        if self._channel is None:
            options = [
                ("grpc.max_receive_message_length", -1),
                ("grpc.max_send_message_length", -1),
            ]
            target = f"{self._host}:{self._port}"
            if self._tls:
                channel = grpc.secure_channel(target, self._grpc_credentials(), options=options)
            else:
                channel = grpc.insecure_channel(target, options=options)
            try:
                grpc.channel_ready_future(channel).result(timeout=min(self.timeout_s, 10.0))
            except grpc.FutureTimeoutError as err:
                channel.close()
                hint = " (over TLS: check ca_bundle and client_cert too)" if self._tls else ""
                raise ServerUnreachableError(_unreachable(self.url, err) + hint) from err
            self._channel = channel
            self._stubs = {
                "predict": prediction_service_pb2_grpc.PredictionServiceStub(channel),
                "model": model_service_pb2_grpc.ModelServiceStub(channel),
            }
        return self._stubs[which]

    def _grpc_credentials(self):
        from pathlib import Path

        import grpc

        ca = Path(self._ca_bundle).read_bytes() if self._ca_bundle is not None else None
        key = chain = None
        if self._client_cert is not None:
            cert, key_file = self._client_cert
            chain = Path(cert).read_bytes()
            key = Path(key_file).read_bytes() if key_file is not None else chain
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=chain
        )

    def _grpc_call(self, stub: str, method: str, request) -> tuple[Any, Any]:
        import grpc

        call = getattr(self._grpc_stub(stub), method)
        metadata = (("authorization", f"Bearer {self._token}"),) if self._token else None
        try:
            return call.with_call(request, timeout=self.timeout_s, metadata=metadata)
        except grpc.RpcError as err:
            code = err.code().name
            message = f"{method} {self.url} -> {code}: {err.details()}"
            if code == "UNAVAILABLE" and "connect" in (err.details() or "").lower():
                raise ServerUnreachableError(_unreachable(self.url, err), 503, code) from None
            raise ServingError(message, GRPC_HTTP_STATUS.get(code, 500), code) from None

    def _predict_grpc(self, body: bytes) -> Prediction:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest.FromString(body)
        self._set_spec(request.model_spec)
        t0 = time.perf_counter()
        response, call = self._grpc_call("predict", "Predict", request)
        elapsed = (time.perf_counter() - t0) * 1e3
        outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
        timing = dict(call.trailing_metadata() or ()).get("server-timing", "")
        return Prediction(
            outputs=next(iter(outputs.values())) if len(outputs) == 1 else outputs,
            elapsed_ms=elapsed,
            server_compute_ms=parse_server_timing(timing).get("compute"),
            request_bytes=request.ByteSize(),
            response_bytes=response.ByteSize(),
        )


def ssl_context(
    ca_bundle: str | os.PathLike | None = None,
    client_cert: tuple[str | os.PathLike, str | os.PathLike | None] | None = None,
):
    """An ``ssl.SSLContext`` that checks the server against ``ca_bundle`` (default: the system's
    CAs) and presents ``client_cert`` = ``(certificate, key)`` for mutual TLS if given."""
    import ssl

    context = ssl.create_default_context(cafile=None if ca_bundle is None else str(ca_bundle))
    if client_cert is not None:
        cert, key = client_cert
        context.load_cert_chain(str(cert), None if key is None else str(key))
    return context


def _unreachable(url: str, err: Exception) -> str:
    return (
        f"Cannot reach the model server at {url} ({type(err).__name__}: {err}). Is it running? "
        "Start it with `python -m workbench serve` or `workbench.cloud.serving.serving()`, and check "
        "host and port."
    )


def _to_dict(message) -> dict:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def parse_server_timing(header: str) -> dict[str, float]:
    """``"parse;dur=0.1, compute;dur=1.2"`` -> ``{"parse": 0.1, "compute": 1.2}`` (milliseconds)."""
    out = {}
    for part in header.split(","):
        name, *params = [p.strip() for p in part.split(";")]
        for p in params:
            if p.startswith("dur="):
                with contextlib.suppress(ValueError):
                    out[name] = float(p[4:])
    return out


# ===================================================================== encodings

ENCODINGS = {
    "json": "REST, row format, pixel values as JSON integers (0-255)",
    "json_columnar": "REST, columnar format ('inputs'), JSON integers",
    "json_float": "REST, row format, pixels as JSON floats scaled to [0, 1] and back (what a naive client sends)",
    "png_b64": "REST, row format, each image a base64 PNG for the predict_png signature",
    "tensor_proto": "gRPC, a float32 TensorProto (raw bytes), as TF Serving's Python client sends",
    "tensor_proto_png": "gRPC, PNG bytes in a string TensorProto for predict_png (no base64)",
}
GRPC_ENCODINGS = frozenset({"tensor_proto", "tensor_proto_png"})


def encoding_protocol(encoding: str) -> str:
    """``"grpc"`` or ``"rest"``: how a body in this encoding is sent."""
    if encoding not in ENCODINGS:
        raise ValueError(f"Unknown encoding {encoding!r}; choose from {sorted(ENCODINGS)}")
    return "grpc" if encoding in GRPC_ENCODINGS else "rest"


def encode_images(images: np.ndarray, encoding: str) -> bytes:
    """A predict request for uint8 images in one of :data:`ENCODINGS`.

    REST encodings give a JSON body; gRPC ones a serialized ``PredictRequest`` whose inputs
    are named as the workbench's exports name them (``images``, ``image_bytes``).
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if encoding_protocol(encoding) == "grpc":
        return _predict_request(images, encoding)
    if encoding == "json":
        doc = {"instances": images.astype(int).tolist()}
    elif encoding == "json_columnar":
        doc = {"inputs": images.astype(int).tolist()}
    elif encoding == "json_float":
        doc = {"instances": ((images.astype(np.float64) / 255.0).round(8) * 255.0).tolist()}
    else:  # png_b64
        doc = {
            "signature_name": "predict_png",
            "instances": [{"b64": base64.b64encode(png_bytes(img)).decode()} for img in images],
        }
    return json.dumps(doc, separators=(",", ":")).encode()


def _predict_request(images: np.ndarray, encoding: str) -> bytes:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    if encoding == "tensor_proto":
        request.model_spec.signature_name = "serving_default"
        tensor = tf.make_tensor_proto(images.astype(np.float32))
        request.inputs["images"].CopyFrom(tensor)
    else:
        request.model_spec.signature_name = "predict_png"
        pngs = np.array([png_bytes(img) for img in images], dtype=object)
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(pngs))
    return request.SerializeToString()


def png_bytes(image: np.ndarray) -> bytes:
    """Lossless PNG of one uint8 HWC image (HW1 is written as grayscale)."""
    import io

    from PIL import Image

    image = np.asarray(image, dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def measure_encodings(
    url: str,
    model: str,
    images: np.ndarray,
    *,
    grpc_url: str | None = None,
    encodings: dict[str, str] | None = None,
    body: Callable[[np.ndarray, str], bytes] | None = None,
    repeats: int = 200,
    warmup: int = 10,
    client_options: dict | None = None,
) -> list[dict]:
    """Bytes and loopback latency of one request in each encoding.

    REST encodings go to ``url``, gRPC ones (``tensor_proto*``) to ``grpc_url`` (skipped when
    None). Server overhead = loopback p50 - the server's compute p50 (from ``Server-Timing``,
    or gRPC's trailing metadata).

    Args:
        encodings: ``{name: what it is}`` (default: every one of :data:`ENCODINGS`).
        body: makes a request body from ``images`` in an encoding (default
            :func:`encode_images`; :func:`workbench.collab.compare.request_body` also sends
            float images).
        client_options: :class:`ServingClient` keywords (``token``, ``ca_bundle``, ...).

    Returns:
        one row per encoding: protocol, request/response bytes, loopback p50/p95, compute
        p50, overhead p50 (all ms), and what the encoding is.
    """
    from workbench.core.timing import measure_latency

    rows = []
    for encoding, description in (encodings or ENCODINGS).items():
        protocol = "grpc" if encoding in GRPC_ENCODINGS else "rest"
        target = grpc_url if protocol == "grpc" else url
        if target is None:
            continue
        payload = (body or encode_images)(images, encoding)
        compute: list[float] = []
        with ServingClient(target, model, timeout_s=60, **(client_options or {})) as client:
            first = client.predict_body(payload)

            def call(client=client, payload=payload, compute=compute) -> None:
                compute.append(client.predict_body(payload).server_compute_ms or float("nan"))

            stats = measure_latency(call, warmup=warmup, repeats=repeats)
        compute_p50 = float(np.nanmedian(compute[-stats.n :])) if compute else float("nan")
        rows.append(
            {
                "encoding": encoding,
                "protocol": protocol,
                "request_bytes": first.request_bytes,
                "response_bytes": first.response_bytes,
                "loopback_p50_ms": stats.p50_ms,
                "loopback_p95_ms": stats.p95_ms,
                "compute_p50_ms": compute_p50,
                "overhead_p50_ms": stats.p50_ms - compute_p50,
                "what": description,
            }
        )
    return rows


# ===================================================================== load and monitoring


def load_test(
    url: str,
    model: str,
    body: bytes,
    *,
    clients: int = 8,
    requests: int = 400,
    server_pid: int | None = None,
    timeout_s: float = 60.0,
    client_options: dict | None = None,
) -> dict:
    """Send ``requests`` predict calls from ``clients`` concurrent clients; measure the server.

    ``url`` may be REST or gRPC (``body`` then from a gRPC encoding). Throughput = completed
    requests / wall time. Utilisation = server CPU time / (wall time x cores), read from the
    server process with psutil. ``client_options`` are :class:`ServingClient` keywords.

    Returns:
        throughput, latency percentiles under load, failures (of which ``overloaded``: 503 /
        UNAVAILABLE answers), CPU utilisation.
    """
    from concurrent.futures import ThreadPoolExecutor

    import psutil

    from workbench.core.timing import summarize_ms

    proc = psutil.Process(server_pid) if server_pid else None
    cpu0 = sum(proc.cpu_times()[:2]) if proc else 0.0
    per_client = [
        requests // clients + (1 if i < requests % clients else 0) for i in range(clients)
    ]

    def worker(n: int) -> tuple[list[float], int, int]:
        lat, failed, overloaded = [], 0, 0
        with ServingClient(url, model, timeout_s=timeout_s, **(client_options or {})) as client:
            for _ in range(n):
                try:
                    lat.append(client.predict_body(body).elapsed_ms)
                except ServingError as err:
                    failed += 1
                    overloaded += err.status == 503
        return lat, failed, overloaded

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(worker, per_client))
    wall = time.perf_counter() - start
    cpu = (sum(proc.cpu_times()[:2]) - cpu0) if proc else float("nan")
    latencies = [x for lat, _, _ in results for x in lat]
    cores = os.cpu_count() or 1
    return {
        "clients": clients,
        "requests": requests,
        "failures": sum(r[1] for r in results),
        "overloaded": sum(r[2] for r in results),
        "wall_s": wall,
        "throughput_rps": len(latencies) / wall,
        "latency": summarize_ms(latencies).as_dict() if latencies else None,
        "server_cpu_s": cpu,
        "cores": cores,
        "cpu_utilisation": cpu / (wall * cores) if proc else float("nan"),
    }


def read_metrics(
    url: str,
    *,
    token: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
    client_cert: tuple[str | os.PathLike, str | os.PathLike] | None = None,
) -> dict:
    """Scrape ``/metrics`` into ``{sample name: [(labels, value), ...]}`` (with a bearer token,
    a CA bundle and a client certificate when the server asks for them)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(
        f"{url.rstrip('/')}/metrics",
        timeout=10,
        trust_env=False,
        headers={"Authorization": f"Bearer {token}"} if token else None,
        verify=ssl_context(ca_bundle, client_cert),
    )
    response.raise_for_status()
    text = response.text
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def histogram_buckets(metrics: dict, name: str, **labels: str) -> list[tuple[float, float]]:
    """Non-cumulative ``(upper bound, count)`` pairs of a scraped histogram with these labels."""
    rows = sorted(
        (float(lab["le"]), value)
        for lab, value in metrics.get(f"{name}_bucket", [])
        if all(lab.get(k) == v for k, v in labels.items())
    )
    counts, previous = [], 0.0
    for bound, cumulative in rows:
        counts.append((bound, cumulative - previous))
        previous = cumulative
    return counts
