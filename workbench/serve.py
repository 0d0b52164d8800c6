"""The cloud tier: an HTTP model server speaking TensorFlow Serving's REST API.

Serves every SavedModel under a model base path in TensorFlow Serving's layout,
``<base>/<name>/<version>/saved_model.pb``, on FastAPI + uvicorn:

============================================  =========================================
``GET  /v1/models/{name}[/versions/{v}]``      model status (as TF Serving)
``GET  /v1/models/{name}[/versions/{v}]/metadata``  signatures (as TF Serving)
``POST /v1/models/{name}[/versions/{v}]:predict``   ``instances`` (row) or ``inputs`` (columnar)
``GET  /healthz``                              liveness and loaded models
``GET  /metrics``                              Prometheus metrics
============================================  =========================================

Every ``:predict`` response carries a ``Server-Timing`` header with the model
compute time, so clients can split network from compute. Caller mistakes
(malformed JSON, wrong shape or dtype, NaN, empty batch, unknown model or
version, body too large) get a 4xx with ``{"error": "..."}``, never a 500.

The same :class:`workbench.client.ServingClient` (re-exported here) works against
this server and against a real TensorFlow Serving container (see the README).
"""

import atexit
import base64
import binascii
import contextlib
import functools
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
# The client side lives in workbench.client; its API is re-exported here so that
# `serve.ServingClient`, `serve.encode_images` and friends read as one tier.
from workbench.client import (  # noqa: E402, F401
    ENCODINGS,
    SERVER_TIMING,
    Prediction,
    ServerUnreachableError,
    ServingClient,
    ServingError,
    encode_images,
    histogram_buckets,
    load_test,
    parse_server_timing,
    png_bytes,
    read_metrics,
)


class RequestError(Exception):
    """A caller mistake; becomes a 4xx JSON error."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ===================================================================== model registry

_DTYPE_NAMES = {
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "int8": "DT_INT8",
    "uint8": "DT_UINT8",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "string": "DT_STRING",
    "float16": "DT_HALF",
}


@dataclass
class Signature:
    """One callable signature of a SavedModel: input and output specs plus the function."""

    name: str
    fn: Any
    inputs: dict[str, Any]  # name -> tf.TensorSpec
    outputs: dict[str, Any]

    def metadata(self) -> dict:
        def spec(s, key):
            dims = [{"size": str(-1 if d is None else d), "name": ""} for d in s.shape.as_list()]
            return {
                "dtype": _DTYPE_NAMES.get(s.dtype.name, s.dtype.name.upper()),
                "tensor_shape": {"dim": dims, "unknown_rank": False},
                "name": key,
            }

        return {
            "inputs": {k: spec(v, f"{self.name}_{k}:0") for k, v in self.inputs.items()},
            "outputs": {
                k: spec(v, f"StatefulPartitionedCall:{i}")
                for i, (k, v) in enumerate(self.outputs.items())
            },
            "method_name": "tensorflow/serving/predict",
        }


@dataclass
class LoadedModel:
    name: str
    version: int
    path: Path
    signatures: dict[str, Signature] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_saved_model(path: Path, name: str, version: int) -> LoadedModel:
    """Load a SavedModel and describe its signatures."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    model = LoadedModel(name=name, version=version, path=path)
    model._keepalive = loaded  # type: ignore[attr-defined] - the functions need the object alive
    for sig_name, fn in loaded.signatures.items():
        inputs = dict(fn.structured_input_signature[1])
        outputs = dict(fn.structured_outputs)
        model.signatures[sig_name] = Signature(sig_name, fn, inputs, outputs)
    return model


class ModelRegistry:
    """All models under a base path: ``{name: {version: LoadedModel}}``."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.models: dict[str, dict[int, LoadedModel]] = {}
        self.errors: dict[str, str] = {}
        if not self.base.is_dir():
            raise FileNotFoundError(
                f"Model base path {self.base} does not exist. Export a model first (notebook 02) or "
                "pass --model-base pointing at a folder laid out as <base>/<name>/<version>/."
            )
        for model_dir in sorted(
            p for p in self.base.iterdir() if p.is_dir() and not p.name.startswith(".")
        ):
            for version_dir in sorted(
                p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()
            ):
                if not (version_dir / "saved_model.pb").exists():
                    continue
                try:
                    m = load_saved_model(version_dir, model_dir.name, int(version_dir.name))
                except Exception as err:  # noqa: BLE001 - a broken model must not stop the others
                    self.errors[f"{model_dir.name}/{version_dir.name}"] = (
                        f"{type(err).__name__}: {err}"
                    )
                    continue
                self.models.setdefault(model_dir.name, {})[m.version] = m

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        versions = self.models.get(name)
        if not versions:
            raise RequestError(f"Servable not found for request: Latest({name})", 404)
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise RequestError(f"Servable not found for request: Specific({name}, {version})", 404)
        return versions[version]

    def status(self, name: str, version: int | None = None) -> dict:
        if version is None:
            versions = self.models.get(name)
            if not versions:
                raise RequestError(f"Could not find any versions of model {name}", 404)
            chosen = sorted(versions, reverse=True)
        else:
            self.get(name, version)
            chosen = [version]
        return {
            "model_version_status": [
                {
                    "version": str(v),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
                for v in chosen
            ]
        }


# ===================================================================== request decoding


def _parse_version(text: str) -> int:
    if not text.isdigit():
        raise RequestError(f"Invalid version {text!r}: versions are positive integers", 400)
    return int(text)


def _to_array(value: Any, spec, what: str) -> np.ndarray:
    """Convert a JSON value to a numpy array matching ``spec`` (dtype and shape), or raise 400."""
    dtype = spec.dtype
    if dtype.name == "string":
        arr = np.asarray(_decode_strings(value, what), dtype=object)
    else:
        try:
            arr = np.asarray(value)
        except ValueError as err:
            raise RequestError(f"{what}: ragged or malformed tensor ({err})") from None
        if arr.dtype == object:
            raise RequestError(f"{what}: ragged nested lists; every row must have the same length")
        if arr.dtype.kind not in "iuf" or arr.dtype == bool:
            raise RequestError(
                f"{what}: expected numbers for a {_DTYPE_NAMES.get(dtype.name, dtype.name)} tensor, "
                f"got {arr.dtype.kind!r} values (strings or booleans?)"
            )
        target = np.dtype(dtype.as_numpy_dtype)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise RequestError(f"{what}: NaN or Infinity is not allowed")
        if target.kind in "iu":
            if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
                raise RequestError(f"{what}: expected integers for {target.name}")
            info = np.iinfo(target)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise RequestError(
                    f"{what}: values outside the {target.name} range [{info.min}, {info.max}]"
                )
        arr = arr.astype(target)
    if arr.ndim >= 1 and arr.shape[0] == 0:
        raise RequestError(f"{what}: empty batch; send at least one instance")
    expected = spec.shape.as_list()
    if arr.ndim != len(expected) or any(
        e is not None and e != a for e, a in zip(expected, arr.shape, strict=False)
    ):
        shown = "[" + ", ".join("-1" if e is None else str(e) for e in expected) + "]"
        raise RequestError(
            f"{what}: shape {list(arr.shape)} does not match the signature's {shown}"
        )
    return arr


def _decode_strings(value: Any, what: str) -> Any:
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise RequestError(f'{what}: binary values must be {{"b64": "<base64>"}}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as err:
            raise RequestError(f"{what}: invalid base64 ({err})") from None
    if isinstance(value, list):
        return [_decode_strings(v, what) for v in value]
    if isinstance(value, str):
        return value.encode()
    raise RequestError(f'{what}: expected strings or {{"b64": ...}} values')


def parse_body(body: bytes) -> dict:
    """Parse a predict body as a JSON object (NaN and Infinity refused), or raise 400.

    orjson parses strict JSON fast; on failure the standard parser re-reads the body so
    the error message names the problem (NaN, say) and where it is.
    """
    import orjson

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            doc = json.loads(body, parse_constant=_reject_constant)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise RequestError(f"JSON Parse error: {err}") from None
    if not isinstance(doc, dict):
        raise RequestError("The request body must be a JSON object with 'instances' or 'inputs'")
    return doc


def decode_request(doc: dict, signature: Signature) -> tuple[dict[str, np.ndarray], str]:
    """Turn a parsed TF Serving predict body into input arrays; return them and the format used."""
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances == has_inputs:
        raise RequestError("Missing 'instances' or 'inputs' key (exactly one is required)")
    names = list(signature.inputs)
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise RequestError("'instances' must be a list")
        if not instances:
            raise RequestError("'instances' is empty; send at least one instance")
        if len(names) == 1 and not (
            isinstance(instances[0], dict)
            and set(instances[0]) == {names[0]}
            and not _is_b64(instances[0])
        ):
            columns = {names[0]: instances}
        else:
            if not all(isinstance(i, dict) for i in instances):
                raise RequestError(f"Each instance must be an object with the inputs {names}")
            columns = {}
            for n in names:
                if any(n not in i for i in instances):
                    raise RequestError(f"An instance lacks the input {n!r}; expected {names}")
                columns[n] = [i[n] for i in instances]
            extra = {k for i in instances for k in i} - set(names)
            if extra:
                raise RequestError(f"Unknown input(s) {sorted(extra)}; the signature takes {names}")
        fmt = "row"
    else:
        inputs = doc["inputs"]
        if isinstance(inputs, dict) and not _is_b64(inputs):
            extra = set(inputs) - set(names)
            missing = set(names) - set(inputs)
            if extra or missing:
                raise RequestError(
                    f"'inputs' must name exactly {names} (unknown {sorted(extra)}, "
                    f"missing {sorted(missing)})"
                )
            columns = dict(inputs)
        elif len(names) == 1:
            columns = {names[0]: inputs}
        else:
            raise RequestError(f"'inputs' must be an object naming {names}")
        fmt = "columnar"
    arrays = {n: _to_array(v, signature.inputs[n], f"input {n!r}") for n, v in columns.items()}
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) > 1:
        raise RequestError(
            f"Inputs have different batch sizes: { {n: len(a) for n, a in arrays.items()} }"
        )
    return arrays, fmt


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _reject_constant(name: str):
    raise RequestError(f"{name} is not allowed in tensors (JSON has no NaN or Infinity)")


def encode_response(outputs: dict[str, np.ndarray], fmt: str) -> dict:
    """TF Serving's response shape: ``predictions`` for row requests, ``outputs`` for columnar."""
    lists = {k: v.tolist() for k, v in outputs.items()}
    if fmt == "row":
        if len(lists) == 1:
            return {"predictions": next(iter(lists.values()))}
        n = len(next(iter(lists.values())))
        return {"predictions": [{k: v[i] for k, v in lists.items()} for i in range(n)]}
    if len(lists) == 1:
        return {"outputs": next(iter(lists.values()))}
    return {"outputs": lists}


# ===================================================================== the app


def create_app(model_base: Path | str | None = None, *, max_body_bytes: int | None = None):
    """Build the FastAPI application serving every model under ``model_base``."""
    import orjson
    import tensorflow as tf
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
    )
    from starlette.concurrency import run_in_threadpool

    from workbench import paths

    registry = ModelRegistry(Path(model_base) if model_base else paths.serving_base())
    limit = max_body_bytes or DEFAULT_MAX_BODY_BYTES
    metrics = CollectorRegistry()
    requests_total = Counter(
        "workbench_requests_total",
        "HTTP requests by route and status",
        ["route", "status"],
        registry=metrics,
    )
    latency = Histogram(
        "workbench_request_latency_seconds",
        "Request latency inside the server",
        ["route"],
        registry=metrics,
        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
    )
    compute = Histogram(
        "workbench_model_compute_seconds",
        "Model compute time per predict call",
        ["model", "signature"],
        registry=metrics,
        buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1),
    )
    batch_items = Counter(
        "workbench_predicted_items_total", "Instances predicted", ["model"], registry=metrics
    )

    app = FastAPI(
        title="workbench model server",
        description="TensorFlow Serving's REST API for SavedModels, plus health and metrics.",
        version="1",
    )
    app.state.registry = registry

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    class Measure:
        """Pure ASGI middleware: request counts, latency, the body-size limit, a JSON 500 of last resort."""

        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            route = _route_label(scope["path"], scope["method"])
            start = time.perf_counter()
            status = {"code": 500, "sent": False}

            async def send_wrapper(message):
                if message["type"] == "http.response.start":
                    status["code"], status["sent"] = message["status"], True
                await send(message)

            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            try:
                if declared.isdigit() and int(declared) > limit:
                    response = error(
                        f"Request body of {int(declared)} bytes exceeds the limit of {limit} bytes",
                        413,
                    )
                    await response(scope, receive, send_wrapper)
                else:
                    await self.inner(scope, receive, send_wrapper)
            except Exception as err:  # noqa: BLE001 - our own bug: answer JSON, count it as a 500
                if not status["sent"]:
                    await error(f"Internal error: {type(err).__name__}: {err}", 500)(
                        scope, receive, send_wrapper
                    )
            latency.labels(route).observe(time.perf_counter() - start)
            requests_total.labels(route, str(status["code"])).inc()

    app.add_middleware(Measure)

    async def read_body(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"Request body exceeds the limit of {limit} bytes", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    def run_predict(model: LoadedModel, body: bytes) -> tuple[dict, float, float]:
        t0 = time.perf_counter()
        doc = parse_body(body)
        doc_sig = doc.get("signature_name", "serving_default")
        if not isinstance(doc_sig, str):
            raise RequestError("'signature_name' must be a string")
        signature = model.signatures.get(doc_sig)
        if signature is None:
            raise RequestError(
                f'Serving signature name: "{doc_sig}" not found in signature def '
                f"(available: {sorted(model.signatures)})"
            )
        arrays, fmt = decode_request(doc, signature)
        t1 = time.perf_counter()
        try:
            result = signature.fn(**{k: tf.constant(v) for k, v in arrays.items()})
        except (tf.errors.InvalidArgumentError, ValueError) as err:
            raise RequestError(
                f"The model rejected the input: {str(err).splitlines()[0][:300]}"
            ) from None
        outputs = {k: v.numpy() for k, v in result.items()}
        t2 = time.perf_counter()
        compute.labels(model.name, doc_sig).observe(t2 - t1)
        batch_items.labels(model.name).inc(len(next(iter(arrays.values()))))
        return encode_response(outputs, fmt), (t1 - t0) * 1e3, (t2 - t1) * 1e3

    async def predict(request: Request, name: str, version: int | None) -> Response:
        try:
            model = registry.get(name, version)
            body = await read_body(request)
            payload, parse_ms, compute_ms = await run_in_threadpool(run_predict, model, body)
        except RequestError as err:
            return error(str(err), err.status)
        content = orjson.dumps(payload)
        return Response(
            content,
            media_type="application/json",
            headers={
                SERVER_TIMING: f"parse;dur={parse_ms:.3f}, compute;dur={compute_ms:.3f}",
            },
        )

    def split_action(spec: str) -> tuple[str, str | None]:
        name, sep, action = spec.partition(":")
        return name, (action if sep else None)

    predict_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "signature_name": {"type": "string"},
                            "instances": {"type": "array"},
                            "inputs": {},
                        },
                    }
                }
            },
        }
    }

    @app.get("/healthz", summary="Liveness and loaded models")
    async def healthz():
        return {
            "status": "ok",
            "models": {n: sorted(v) for n, v in registry.models.items()},
            "load_errors": registry.errors,
        }

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models/{name}/metadata", summary="Model metadata (latest version)")
    async def metadata_latest(name: str):
        return _metadata(name, None)

    @app.get("/v1/models/{name}/versions/{version}/metadata", summary="Model metadata")
    async def metadata_version(name: str, version: str):
        try:
            return _metadata(name, _parse_version(version))
        except RequestError as err:
            return error(str(err), err.status)

    def _metadata(name: str, version: int | None):
        try:
            model = registry.get(name, version)
        except RequestError as err:
            return error(str(err), err.status)
        return {
            "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
            "metadata": {
                "signature_def": {
                    "signature_def": {k: s.metadata() for k, s in model.signatures.items()}
                }
            },
        }

    @app.get("/v1/models/{name}", summary="Model status (all versions)")
    async def status_latest(name: str):
        name, action = split_action(name)
        if action is not None:
            return error(f"Use POST for :{action}", 405)
        try:
            return registry.status(name)
        except RequestError as err:
            return error(str(err), err.status)

    @app.get("/v1/models/{name}/versions/{version}", summary="Model status (one version)")
    async def status_version(name: str, version: str):
        version, action = split_action(version)
        if action is not None:
            return error(f"Use POST for :{action}", 405)
        try:
            return registry.status(name, _parse_version(version))
        except RequestError as err:
            return error(str(err), err.status)

    @app.post(
        "/v1/models/{spec}",
        summary="Predict with the latest version (name:predict)",
        openapi_extra=predict_body,
    )
    async def predict_latest(spec: str, request: Request):
        name, action = split_action(spec)
        if action != "predict":
            return error(
                f"Unsupported action {action!r} in {spec!r}: use <name>:predict",
                400 if action else 405,
            )
        return await predict(request, name, None)

    @app.post(
        "/v1/models/{name}/versions/{spec}",
        summary="Predict with one version (N:predict)",
        openapi_extra=predict_body,
    )
    async def predict_version(name: str, spec: str, request: Request):
        version, action = split_action(spec)
        if action != "predict":
            return error(
                f"Unsupported action {action!r} in {spec!r}: use <version>:predict",
                400 if action else 405,
            )
        try:
            v = _parse_version(version)
        except RequestError as err:
            return error(str(err), err.status)
        return await predict(request, name, v)

    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(str(exc.detail), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error(f"Invalid request: {exc.errors()}", 400)

    return app


def _route_label(path: str, method: str) -> str:
    if path.startswith("/v1/models/"):
        if method == "POST":
            return "predict"
        return "metadata" if path.endswith("/metadata") else "status"
    return {"/healthz": "health", "/metrics": "metrics"}.get(path, "other")


def run_server(
    *,
    model_base: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8501,
    max_body_bytes: int | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until interrupted (``python -m workbench serve``)."""
    import uvicorn

    app = create_app(model_base, max_body_bytes=max_body_bytes)
    loaded = {n: sorted(v) for n, v in app.state.registry.models.items()}
    print(f"Serving {loaded} from {app.state.registry.base} on http://{host}:{port}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


# ===================================================================== starting it


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    port: int


@contextlib.contextmanager
def serving(
    model_base: Path | str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    max_body_bytes: int | None = None,
    startup_timeout_s: float = 120.0,
    netns: str | None = None,
) -> Iterator[RunningServer]:
    """Start the server as a subprocess on a free port, wait until ready, always stop it.

    Args:
        netns: run the server inside this network namespace (``ip netns exec``), for
            link-emulation experiments; ``host`` must then be an address in it.
    """
    import httpx

    from workbench import paths

    port = port or free_port("127.0.0.1" if netns is None else "0.0.0.0")
    base = Path(model_base) if model_base else paths.serving_base()
    cmd = [
        sys.executable,
        "-m",
        "workbench",
        "serve",
        "--model-base",
        str(base),
        "--host",
        host,
        "--port",
        str(port),
    ]
    if max_body_bytes:
        cmd += ["--max-body-bytes", str(max_body_bytes)]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    stopper = functools.partial(_stop, proc)
    atexit.register(stopper)  # also stops it if the kernel exits without leaving the block
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                reader.join(timeout=2)
                raise ServingError(
                    f"The model server exited with code {proc.returncode} before it was "
                    f"ready. Its output:\n{''.join(output)[-3000:]}"
                )
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServingError(
                    f"The model server at {url} was not ready within {startup_timeout_s:.0f} s. "
                    f"Its output:\n{''.join(output)[-3000:]}"
                )
            time.sleep(0.2)
        yield RunningServer(url=url, process=proc, port=port)
    finally:
        stopper()
        atexit.unregister(stopper)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
