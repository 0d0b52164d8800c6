"""TensorFlow Serving's gRPC API: ``PredictionService`` and ``ModelService``.

Implements ``PredictionService.Predict`` and ``GetModelMetadata`` (``signature_def``) and
``ModelService.GetModelStatus`` with the messages of the official ``tensorflow-serving-api``
package, so its stubs (and any TF Serving gRPC client) work unchanged. Errors carry TF
Serving's status codes: ``NOT_FOUND`` for an unknown model or version, ``INVALID_ARGUMENT``
for a bad tensor, ``UNAVAILABLE`` when the server is at its limits. Each Predict answer
carries the server timings as trailing metadata ``server-timing`` (as the REST header).

It uses REST's certificates (``--ssl-certfile``, ``--ssl-keyfile``, ``--ssl-ca-certs``: TLS, and
mutual TLS with the CA) and tokens (``--auth-token-file``: ``UNAUTHENTICATED`` without
``authorization: Bearer <token>`` metadata), and closes idle connections and slow handshakes.
"""

from __future__ import annotations

import functools
import logging
import math
from concurrent import futures

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from workbench.cloud.serving.decode import TensorSpec, check_array
from workbench.cloud.serving.errors import RequestError
from workbench.cloud.serving.options import ServerOptions
from workbench.cloud.serving.security import read_tokens, token_matches
from workbench.cloud.serving.service import Service, server_timing

log = logging.getLogger("workbench.cloud.serving")
VALUE_FIELDS = {
    "float32": "float_val",
    "float64": "double_val",
    "float16": "half_val",
    "int8": "int_val",
    "uint8": "int_val",
    "int16": "int_val",
    "uint16": "int_val",
    "int32": "int_val",
    "int64": "int64_val",
    "bool": "bool_val",
    "string": "string_val",
}


def _rpc(method: str):
    """Turn RequestError into its gRPC status, log anything else with its traceback."""

    def wrap(fn):
        @functools.wraps(fn)
        def handler(self, request, context):
            code = "OK"
            try:
                return fn(self, request, context)
            except RequestError as err:
                code = err.code
                context.abort(getattr(grpc.StatusCode, err.code), str(err))
            except Exception as err:  # noqa: BLE001 - our bug: log it, answer INTERNAL
                code = "INTERNAL"
                log.exception("INTERNAL error in gRPC %s", method)
                context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")
            finally:
                self.service.metrics.grpc_requests.labels(method, code).inc()

        return handler

    return wrap


def _version(spec) -> int | None:
    if spec.version_label:
        raise RequestError("Version labels are not supported; name a version number")
    return spec.version.value if spec.HasField("version") else None


def tensor_to_array(proto, spec: TensorSpec, what: str, limits) -> np.ndarray:
    """A TensorProto as a checked array: dtype, shape and value count checked *before* decoding."""
    import tensorflow as tf

    want = tf.as_dtype(spec.dtype).as_datatype_enum
    if proto.dtype != want:
        got = tf.dtypes.DType(proto.dtype).name if proto.dtype else "no dtype"
        raise RequestError(f"{what}: a {got} tensor; the signature takes {spec.dt_name}")
    if proto.tensor_shape.unknown_rank:
        raise RequestError(f"{what}: the tensor's shape must be given")
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise RequestError(f"{what}: negative dimension in shape {dims}")
    expected = spec.shape
    if expected is not None and (
        len(dims) != len(expected)
        or any(e is not None and e != d for e, d in zip(expected, dims, strict=False))
    ):
        raise RequestError(
            f"{what}: shape {dims} does not match the signature's {spec.shape_text()}"
        )
    if dims and dims[0] > limits.max_batch_size:
        raise RequestError(
            f"{what}: {dims[0]} instances in one request; the server takes at most "
            f"{limits.max_batch_size} (--max-batch-size): split the request"
        )
    count = math.prod(dims)
    if spec.is_string:
        if len(proto.string_val) != count:
            raise RequestError(f"{what}: {len(proto.string_val)} strings for shape {dims}")
    else:
        itemsize = np.dtype(spec.dtype).itemsize
        if count * itemsize > limits.max_body_bytes:
            raise RequestError(f"{what}: shape {dims} is too large for this model")
        if proto.tensor_content:
            if len(proto.tensor_content) != count * itemsize:
                raise RequestError(
                    f"{what}: {len(proto.tensor_content)} bytes of tensor_content for shape "
                    f"{dims} of {spec.dt_name} ({count * itemsize} expected)"
                )
        elif len(getattr(proto, VALUE_FIELDS.get(spec.dtype, "float_val"))) not in (count, 1):
            raise RequestError(f"{what}: the number of values does not match shape {dims}")
    try:
        arr = tf.make_ndarray(proto)
    except (ValueError, TypeError) as err:
        raise RequestError(f"{what}: malformed tensor ({err})") from None
    return check_array(arr, spec, what, limits)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensorflow.serving.PredictionService``: Predict and GetModelMetadata."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @_rpc("Predict")
    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        import tensorflow as tf

        spec = request.model_spec
        model = self.service.model(spec.name, _version(spec))
        with self.service.admission.slot(request.ByteSize()):
            signature = model.signature(spec.signature_name or "serving_default")
            names = set(signature.inputs)
            if set(request.inputs) != names:
                raise RequestError(
                    f"Inputs {sorted(request.inputs)} do not match the signature "
                    f"{signature.name!r}, which takes {sorted(names)}"
                )
            arrays = {
                n: tensor_to_array(request.inputs[n], s, f"input {n!r}", model.limits)
                for n, s in signature.inputs.items()
            }
            outputs, timings = self.service.run(model, signature, arrays)
        wanted = list(request.output_filter) or list(outputs)
        unknown = sorted(set(wanted) - set(outputs))
        if unknown:
            raise RequestError(f"output_filter names unknown outputs {unknown}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = signature.name
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        context.set_trailing_metadata((("server-timing", server_timing(timings)),))
        return response

    @_rpc("GetModelMetadata")
    def GetModelMetadata(self, request, context):  # noqa: N802 - gRPC method name
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise RequestError(
                f"Metadata field(s) {fields} not supported; ask for ['signature_def']"
            )
        model = self.service.model(request.model_spec.name, _version(request.model_spec))
        defs = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in model.signature_defs.items():
            defs.signature_def[name].CopyFrom(sig)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.metadata["signature_def"].Pack(defs)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``tensorflow.serving.ModelService``: GetModelStatus."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @_rpc("GetModelStatus")
    def GetModelStatus(self, request, context):  # noqa: N802 - gRPC method name
        from tensorflow.core.protobuf import error_codes_pb2

        statuses = self.service.status(request.model_spec.name, _version(request.model_spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        states = get_model_status_pb2.ModelVersionStatus.State
        for s in statuses:
            entry = response.model_version_status.add()
            entry.version = s.version
            entry.state = states.Value(s.state)
            entry.status.error_code = error_codes_pb2.Code.Value(s.error_code)
            entry.status.error_message = s.error_message
        return response


GRPC_IDLE_MS = 60_000  # gRPC clients reconnect by themselves, so an idle close costs nothing


class TokenInterceptor(grpc.ServerInterceptor):
    """``UNAUTHENTICATED`` for every call without ``authorization: Bearer <one of tokens>``."""

    def __init__(self, tokens: list[bytes], on_refusal=None) -> None:
        self.tokens = tokens
        self.on_refusal = on_refusal

        def deny(request, context):
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "Missing or wrong bearer token: send metadata 'authorization: Bearer <token>'",
            )

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        if token_matches(metadata.get("authorization"), self.tokens):
            return continuation(handler_call_details)
        if self.on_refusal is not None:
            self.on_refusal("token")
        return self._deny


def server_credentials(options: ServerOptions) -> grpc.ServerCredentials | None:
    """TLS from REST's certificate files (client certificates required when ``ssl_ca_certs``
    is given), or None without ``ssl_certfile``."""
    from pathlib import Path

    if not options.ssl_certfile:
        return None
    chain = Path(options.ssl_certfile).read_bytes()
    key = Path(options.ssl_keyfile).read_bytes() if options.ssl_keyfile else chain
    ca = Path(options.ssl_ca_certs).read_bytes() if options.ssl_ca_certs else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=ca, require_client_auth=ca is not None
    )


def start_grpc_server(service: Service, host: str, port: int) -> tuple[grpc.Server, int]:
    """Serve both services on ``host:port`` (0: any free port); return the server and port.

    The message size limit is the body limit (``--max-body-bytes``, else 16 MiB); at most
    ``--max-concurrent-requests`` calls are accepted at once (more: ``RESOURCE_EXHAUSTED``);
    handshakes must finish within ``--header-timeout-s``; idle connections are closed after a
    minute; metadata keeps gRPC's own caps (8 to 16 KiB).
    """
    options = service.options
    limit = options.max_body_bytes or 16 * 2**20
    refused = service.metrics.rejected.labels
    interceptors = (
        [TokenInterceptor(read_tokens(options.auth_token_file), lambda r: refused(r).inc())]
        if options.auth_token_file
        else []
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=options.max_concurrent_requests, thread_name_prefix="grpc"
        ),
        interceptors=interceptors,
        maximum_concurrent_rpcs=options.max_concurrent_requests,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a second process must not share our port
            ("grpc.server_handshake_timeout_ms", int(options.header_timeout_s * 1000)),
            ("grpc.max_connection_idle_ms", GRPC_IDLE_MS),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service), server)
    credentials = server_credentials(options)
    address = f"{host}:{port}"
    bound = (
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    if not bound:
        raise OSError(f"Cannot bind the gRPC port {host}:{port} (in use?)")
    server.start()
    service.grpc_port = bound
    return server, bound
