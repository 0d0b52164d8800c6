"""The latency model against a real emulated link (ip netns + veth + tc netem).

Runs where the tests run as root with iproute2 and a kernel with netem; skips
with the reason otherwise. Traffic stays on this machine (link-local veth pair).
"""

from __future__ import annotations

import numpy as np
import pytest

from workbench import bench, network, serve, train

pytestmark = [pytest.mark.netem, pytest.mark.slow]
OK, WHY = network.netem_available()


@pytest.mark.skipif(not OK, reason=f"link emulation unavailable: {WHY}")
@pytest.mark.parametrize("name", ["4g", "3g"])
def test_link_model_within_15_percent_of_netem(name, tmp_path):
    import tf_keras as keras

    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    train.export_saved_model(model, base=tmp_path, name="tiny")
    image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    body = serve.encode_images(image, "json")
    with serve.serving(tmp_path) as server, serve.ServingClient(server.url, "tiny") as client:
        response_bytes = client.predict_body(body).response_bytes
        loopback = bench.measure_latency(lambda: client.predict_body(body), warmup=5, repeats=30)
    result = network.validate_model(
        network.PROFILES[name],
        model_base=tmp_path,
        model_name="tiny",
        body=body,
        loopback_p50_ms=loopback.p50_ms,
        response_bytes=response_bytes,
        requests=10,
    )
    assert result["error"] <= 0.15, result
