"""The gRPC API, driven with the official ``tensorflow-serving-api`` stubs, and the client's
gRPC mode. Predictions must equal the REST ones."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import export_tiny
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from workbench.cloud import serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving")
    export_tiny(base, 1)
    with serving.serving(base, grpc=True, max_batch_size=16) as running:
        yield running


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)


def predict_request(tensor, *, name="tiny", signature="serving_default", version=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["images" if signature == "serving_default" else "image_bytes"].CopyFrom(tensor)
    return request


def test_model_status(stubs):
    _, model_stub = stubs
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "tiny"
    response = model_stub.GetModelStatus(request, timeout=10)
    [status] = response.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0


def test_model_metadata(stubs):
    predict_stub, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "tiny"
    response = predict_stub.GetModelMetadata(request, timeout=10)
    defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(defs)
    images = defs.signature_def["serving_default"].inputs["images"]
    assert images.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in images.tensor_shape.dim] == [-1, 32, 32, 3]
    assert "predict_png" in defs.signature_def
    assert response.model_spec.version.value == 1


def test_predict_equals_rest(stubs, server, images):
    predict_stub, _ = stubs
    request = predict_request(tf.make_tensor_proto(images.astype(np.float32)))
    response = predict_stub.Predict(request, timeout=10)
    got = tf.make_ndarray(response.outputs["probabilities"])
    with serving.ServingClient(server.url, "tiny") as rest:
        want = rest.predict(images).outputs
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert response.model_spec.name == "tiny" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


def test_png_bytes_without_base64(stubs, server, images):
    predict_stub, _ = stubs
    pngs = np.array([serving.png_bytes(i) for i in images], dtype=object)
    request = predict_request(tf.make_tensor_proto(pngs), signature="predict_png")
    got = tf.make_ndarray(predict_stub.Predict(request, timeout=10).outputs["probabilities"])
    with serving.ServingClient(server.url, "tiny") as rest:
        np.testing.assert_allclose(got, rest.predict(images).outputs, atol=1e-4)


@pytest.mark.parametrize(
    "make, code, fragment",
    [
        (lambda t: predict_request(t, name="nope"), "NOT_FOUND", "Servable not found"),
        (lambda t: predict_request(t, version=9), "NOT_FOUND", "Specific(tiny, 9)"),
        (
            lambda t: predict_request(tf.make_tensor_proto(np.zeros((1, 28, 28, 3), np.float32))),
            "INVALID_ARGUMENT",
            "shape",
        ),
        (
            lambda t: predict_request(tf.make_tensor_proto(np.zeros((1, 32, 32, 3), np.uint8))),
            "INVALID_ARGUMENT",
            "DT_FLOAT",
        ),
        (
            lambda t: predict_request(t, signature="nope"),
            "INVALID_ARGUMENT",
            "not found in signature def",
        ),
        (
            lambda t: predict_request(
                tf.make_tensor_proto(np.full((1, 32, 32, 3), np.inf, np.float32))
            ),
            "INVALID_ARGUMENT",
            "NaN or Infinity",
        ),
        (
            lambda t: predict_request(tf.make_tensor_proto(np.zeros((17, 32, 32, 3), np.float32))),
            "INVALID_ARGUMENT",
            "max-batch-size",
        ),
    ],
)
def test_errors_carry_tf_serving_codes(stubs, images, make, code, fragment):
    predict_stub, _ = stubs
    good = tf.make_tensor_proto(images[:1].astype(np.float32))
    with pytest.raises(grpc.RpcError) as err:
        predict_stub.Predict(make(good), timeout=10)
    assert err.value.code() == getattr(grpc.StatusCode, code)
    assert fragment in err.value.details()


def test_a_tensor_claiming_a_huge_shape_is_refused_before_allocation(stubs):
    """One float and a shape of a billion values: make_ndarray would broadcast it."""
    predict_stub, _ = stubs
    from tensorflow.core.framework import tensor_pb2

    tensor = tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum, float_val=[0.0])
    for size in (16, 32, 32, 3):
        tensor.tensor_shape.dim.add().size = size
    ok = predict_stub.Predict(predict_request(tensor), timeout=10)  # 16 images: a broadcast
    assert tf.make_ndarray(ok.outputs["probabilities"]).shape == (16, 10)
    tensor.tensor_shape.dim[0].size = 1_000_000
    with pytest.raises(grpc.RpcError) as err:
        predict_stub.Predict(predict_request(tensor), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    tensor.tensor_shape.dim[0].size = 2
    tensor.ClearField("float_val")
    tensor.tensor_content = b"\0" * 12  # wrong byte count for the shape
    with pytest.raises(grpc.RpcError) as err:
        predict_stub.Predict(predict_request(tensor), timeout=10)
    assert "tensor_content" in err.value.details()


def test_status_of_unknown_model_is_not_found(stubs):
    _, model_stub = stubs
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as err:
        model_stub.GetModelStatus(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_client_grpc_mode_matches_rest(server, images):
    with (
        serving.ServingClient(server.grpc_url, "tiny") as g,
        serving.ServingClient(server.url, "tiny") as r,
    ):
        assert g.status() == r.status()
        assert g.metadata() == r.metadata()
        for encoding in ("tensor_proto", "tensor_proto_png"):
            p = g.predict(images, encoding=encoding)
            np.testing.assert_allclose(p.outputs, r.predict(images).outputs, atol=1e-4)
            assert p.server_compute_ms is not None and p.request_bytes > 0
        with pytest.raises(ValueError, match="grpc"):
            r.predict(images, encoding="tensor_proto")
    with serving.ServingClient(server.grpc_url, "nope") as g:
        with pytest.raises(serving.ServingError) as err:
            g.status()
        assert err.value.code == "NOT_FOUND" and err.value.status == 404


def test_measure_encodings_has_a_row_per_encoding(server, images):
    rows = serving.measure_encodings(
        server.url, "tiny", images[:1], grpc_url=server.grpc_url, repeats=5, warmup=1
    )
    by = {r["encoding"]: r for r in rows}
    assert set(by) == set(serving.ENCODINGS)
    # a float32 TensorProto: 4 bytes a value plus a little framing; JSON integers cost more
    assert 3072 * 4 <= by["tensor_proto"]["request_bytes"] < 3072 * 4 + 200
    assert by["tensor_proto_png"]["request_bytes"] < by["png_b64"]["request_bytes"]
    assert by["tensor_proto"]["response_bytes"] < by["json"]["response_bytes"]
    assert all(r["loopback_p50_ms"] > 0 for r in rows)


def test_unreachable_grpc_server_is_explained():
    port = serving.free_port()
    with serving.ServingClient(f"grpc://127.0.0.1:{port}", "tiny", timeout_s=1) as client:
        with pytest.raises(serving.ServerUnreachableError, match="Is it running"):
            client.status()
