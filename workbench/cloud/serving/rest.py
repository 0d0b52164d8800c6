"""TensorFlow Serving's REST API on FastAPI: routes only; the work is in :class:`Service`.

====================================================  ==================================
``GET  /v1/models/{name}[/versions/{v}]``              model status (as TF Serving)
``GET  /v1/models/{name}[/versions/{v}]/metadata``     signatures (as TF Serving)
``POST /v1/models/{name}[/versions/{v}]:predict``      ``instances`` (row) or ``inputs``
``GET  /healthz``                                      liveness, served models, nonce
``GET  /metrics``                                      Prometheus metrics
====================================================  ==================================

Every ``:predict`` answer carries ``Server-Timing: parse;dur=…, queue;dur=…, compute;dur=…``
(milliseconds). Caller mistakes get a 4xx with ``{"error": "..."}`` from one exception
handler; overload gets 503 with ``Retry-After``; a server bug gets a JSON 500 and its
traceback in the server's log. Host, Origin and bearer token are checked before any route
(:class:`~workbench.cloud.serving.security.AccessGuard`). A predict reads its whole body
first (each chunk counted against ``--max-inflight-bytes``) and only then takes a predict
slot, so a client that sends slowly never keeps another's predict out.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from workbench.cloud.serving.errors import RequestError
from workbench.cloud.serving.security import AccessGuard
from workbench.cloud.serving.service import BodyBytes, Service, server_timing
from workbench.cloud.serving.storage import parse_version

log = logging.getLogger("workbench.cloud.serving")
SERVER_TIMING = "Server-Timing"
PREDICT_BODY = {
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


def build_app(service: Service) -> FastAPI:
    """The FastAPI application answering for ``service``."""
    app = FastAPI(
        title="workbench model server",
        description="TensorFlow Serving's REST API for SavedModels, plus health and metrics.",
        version="2",
    )
    app.state.service = service
    refused = service.metrics.rejected.labels
    app.add_middleware(
        AccessGuard, options=service.options, on_refusal=lambda reason: refused(reason).inc()
    )
    app.add_middleware(Measure, service=service)  # outermost: refusals are counted too
    for cls in (RequestError, HTTPException, RequestValidationError):
        app.add_exception_handler(cls, _error_response)

    @app.get("/healthz", summary="Liveness, served models and this server's nonce")
    async def healthz():
        return service.health()

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics():
        return Response(service.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models/{name}/metadata", summary="Model metadata (latest version)")
    async def metadata_latest(name: str):
        return _metadata(service, name, None)

    @app.get("/v1/models/{name}/versions/{version}/metadata", summary="Model metadata")
    async def metadata_version(name: str, version: str):
        return _metadata(service, name, _version(version))

    @app.get("/v1/models/{name}", summary="Model status (all versions)")
    async def status_latest(name: str):
        return _status(service, _split_get(name), None)

    @app.get("/v1/models/{name}/versions/{version}", summary="Model status (one version)")
    async def status_version(name: str, version: str):
        return _status(service, name, _version(_split_get(version)))

    @app.post("/v1/models/{spec}", summary="Predict, latest version", openapi_extra=PREDICT_BODY)
    async def predict_latest(spec: str, request: Request):
        return await _predict(service, request, _split_predict(spec), None)

    @app.post(
        "/v1/models/{name}/versions/{spec}",
        summary="Predict with one version (N:predict)",
        openapi_extra=PREDICT_BODY,
    )
    async def predict_version(name: str, spec: str, request: Request):
        return await _predict(service, request, name, _version(_split_predict(spec)))

    return app


async def _error_response(request: Request, exc: Exception) -> JSONResponse:
    """The one exception handler: every refusal as ``{"error": ...}`` with its status."""
    if isinstance(exc, RequestError):
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        return JSONResponse({"error": str(exc)}, status_code=exc.http_status, headers=headers)
    if isinstance(exc, HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)
    return JSONResponse({"error": f"Invalid request: {exc.errors()}"}, status_code=400)


def _version(text: str) -> int:
    version = parse_version(text)
    if version is None:
        raise RequestError(
            f"Invalid version {text[:40]!r}: a version is a number of 1 to 18 ASCII digits"
        )
    return version


def _split_get(spec: str) -> str:
    name, sep, action = spec.partition(":")
    if sep:
        raise RequestError(f"Use POST for :{action[:40]}", http_status=405)
    return name


def _split_predict(spec: str) -> str:
    target, sep, action = spec.partition(":")
    if action != "predict":
        raise RequestError(
            f"Unsupported action {action!r} in {spec[:80]!r}: use <name>:predict",
            http_status=400 if sep else 405,
        )
    return target


def _status(service: Service, name: str, version: int | None) -> dict:
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state,
                "status": {"error_code": s.error_code, "error_message": s.error_message},
            }
            for s in service.status(name, version)
        ]
    }


def _metadata(service: Service, name: str, version: int | None) -> dict:
    from google.protobuf.json_format import MessageToDict

    model = service.model(name, version)
    defs = {
        k: MessageToDict(
            d, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for k, d in model.signature_defs.items()
    }
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
        "metadata": {"signature_def": {"signature_def": defs}},
    }


async def _predict(service: Service, request: Request, name: str, version: int | None):
    model = service.model(name, version)
    limit = model.limits.max_body_bytes
    declared = request.headers.get("content-length", "")
    declared_bytes = int(declared) if declared.isascii() and declared.isdigit() else None
    if declared_bytes is not None and declared_bytes > limit:
        service.metrics.rejected.labels("body_size").inc()
        raise _too_large(declared_bytes, limit)
    with service.admission.body() as held:
        body = await _read_body(request, limit, held)
        with service.admission.slot():  # only now: a slow body never holds a predict slot
            loop = asyncio.get_running_loop()
            content, timings = await loop.run_in_executor(
                service.executor, service.predict_json, model, body
            )
    return Response(
        content, media_type="application/json", headers={SERVER_TIMING: server_timing(timings)}
    )


async def _read_body(request: Request, limit: int, held: BodyBytes) -> bytes:
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(None, limit)
            held.add(len(chunk))
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or closed by the body deadline (connections.py)
        raise RequestError(
            "The request body did not arrive in time (--body-timeout-s)", http_status=408
        ) from None
    return b"".join(chunks)


def _too_large(size: int | None, limit: int) -> RequestError:
    what = f"Request body of {size:,} bytes" if size is not None else "Request body"
    return RequestError(
        f"{what} exceeds the limit of {limit:,} bytes for this model (the largest legitimate "
        "request; --max-body-bytes): send fewer instances or a compact encoding",
        "RESOURCE_EXHAUSTED",
    )


class Measure:
    """Pure ASGI middleware: request counts and latency by route, and the JSON 500 of last resort.

    A 500 is a server bug: it is logged with its traceback.
    """

    def __init__(self, app, service: Service) -> None:
        self.app = app
        self.metrics = service.metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = _route_label(scope["path"], scope["method"])
        start = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as err:  # noqa: BLE001 - our own bug: log it, answer JSON
            log.exception("500 on %s %s", scope["method"], scope["path"])
            if not status["sent"]:
                response = JSONResponse(
                    {"error": f"Internal error: {type(err).__name__}: {err}"}, status_code=500
                )
                await response(scope, receive, send_wrapper)
        self.metrics.latency.labels(route).observe(time.perf_counter() - start)
        self.metrics.requests.labels(route, str(status["code"])).inc()


def _route_label(path: str, method: str) -> str:
    if path.startswith("/v1/models/"):
        if method == "POST":
            return "predict"
        return "metadata" if path.endswith("/metadata") else "status"
    return {"/healthz": "health", "/metrics": "metrics"}.get(path, "other")
