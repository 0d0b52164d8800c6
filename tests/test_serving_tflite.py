"""``--prefer-tflite-model``: a version's ``model.tflite`` served with LiteRT through the same
REST and gRPC API, its predictions agreeing with the SavedModel's, compute timed the same way."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from serving_helpers import export_tiny

from workbench.cloud import serving

pytestmark = pytest.mark.slow
IMAGES = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny export whose version folder also holds its serving_default as model.tflite."""
    import tensorflow as tf

    path = tmp_path_factory.mktemp("serving")
    export_tiny(path, 1)
    folder = path / "tiny" / "1"
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(folder), signature_keys=["serving_default"]
    )
    (folder / "model.tflite").write_bytes(converter.convert())
    return path


def predictions(server) -> tuple[np.ndarray, np.ndarray, float | None]:
    with server.client("tiny") as client:
        client.predict(IMAGES)  # the first call at this batch size sets up kernels
        rest = client.predict(IMAGES)
    with server.client("tiny", grpc=True) as client:
        grpc_outputs = client.predict(IMAGES).outputs
    return rest.outputs, grpc_outputs, rest.server_compute_ms


def test_tflite_and_savedmodel_serve_the_same_predictions(base):
    with serving.serving(base, grpc=True, poll_seconds=0) as server:
        tf_rest, tf_grpc, tf_compute = predictions(server)
    with serving.serving(base, grpc=True, poll_seconds=0, prefer_tflite_model=True) as server:
        lite_rest, lite_grpc, lite_compute = predictions(server)
        metadata = httpx.get(f"{server.url}/v1/models/tiny/metadata").json()
        status = httpx.get(f"{server.url}/v1/models/tiny").json()
        r = httpx.post(
            f"{server.url}/v1/models/tiny:predict",
            json={"signature_name": "predict_png", "instances": [{"b64": ""}]},
        )
        too_many = httpx.post(
            f"{server.url}/v1/models/tiny:predict",
            json={"instances": np.zeros((129, 32, 32, 3), np.uint8).tolist()},
        )
    print(
        f"max |TFLite - SavedModel| {np.abs(lite_rest - tf_rest).max():.2e}; compute "
        f"{lite_compute:.3f} ms (LiteRT) vs {tf_compute:.3f} ms (TensorFlow)"
    )
    np.testing.assert_allclose(tf_grpc, tf_rest, atol=1e-6)
    np.testing.assert_allclose(lite_rest, tf_rest, atol=1e-5)
    np.testing.assert_allclose(lite_grpc, lite_rest, atol=1e-6)
    assert lite_compute is not None and lite_compute > 0  # Server-Timing, as for TensorFlow
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    defs = metadata["metadata"]["signature_def"]["signature_def"]
    # what the TFLite file kept, and PNG files decoded in front of it by the server
    assert sorted(defs) == ["predict_png", "serving_default"]
    images = defs["serving_default"]["inputs"]["images"]
    assert images["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "32", "32", "3"]
    assert r.status_code == 400 and "PNG" in r.json()["error"]
    assert too_many.status_code in (400, 413)  # the same limits, from the same signatures


def test_png_requests_are_decoded_in_front_of_the_tflite_model(base):
    """predict_png through LiteRT: the same answers as TensorFlow's, and bad images refused."""
    with serving.serving(base, poll_seconds=0) as server, server.client("tiny") as client:
        want = client.predict(IMAGES, encoding="png_b64").outputs
    with serving.serving(base, poll_seconds=0, prefer_tflite_model=True) as server:
        with server.client("tiny") as client:
            got = client.predict(IMAGES, encoding="png_b64")
        small = serving.png_bytes(np.zeros((8, 8, 3), np.uint8))
        import base64

        wrong_size = httpx.post(
            f"{server.url}/v1/models/tiny:predict",
            json={
                "signature_name": "predict_png",
                "instances": [{"b64": base64.b64encode(small).decode()}],
            },
        )
    np.testing.assert_allclose(got.outputs, want, atol=1e-5)
    assert got.server_compute_ms is not None
    assert wrong_size.status_code == 400, wrong_size.text
