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
    assert list(defs) == ["serving_default"]  # what the TFLite file kept
    images = defs["serving_default"]["inputs"]["images"]
    assert images["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "32", "32", "3"]
    assert r.status_code == 400 and "predict_png" in r.json()["error"]
    assert too_many.status_code in (400, 413)  # the same limits, from the same signatures
