"""TensorFlow Serving's gRPC API: ``PredictionService`` and ``ModelService``.

Implements ``PredictionService.Predict`` and ``GetModelMetadata`` (``signature_def``) and
``ModelService.GetModelStatus`` with the messages of the official ``tensorflow-serving-api``
package, so its stubs (and any TF Serving gRPC client) work unchanged. Errors carry TF
Serving's status codes: ``NOT_FOUND`` for an unknown model or version, ``INVALID_ARGUMENT``
for a bad tensor, ``UNAVAILABLE`` when the server is at its limits. Each Predict answer
carries the server timings as trailing metadata ``server-timing`` (as the REST header).
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


def start_grpc_server(service: Service, host: str, port: int) -> tuple[grpc.Server, int]:
    """Serve both services on ``host:port`` (0: any free port); return the server and port.

    The message size limit is the body limit (``--max-body-bytes``, else 16 MiB); at most
    ``--max-concurrent-requests`` calls are accepted at once (more: ``RESOURCE_EXHAUSTED``).
    """
    options = service.options
    limit = options.max_body_bytes or 16 * 2**20
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=options.max_concurrent_requests, thread_name_prefix="grpc"
        ),
        maximum_concurrent_rpcs=options.max_concurrent_requests,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a second process must not share our port
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"Cannot bind the gRPC port {host}:{port} (in use?)")
    server.start()
    service.grpc_port = bound
    return server, bound
