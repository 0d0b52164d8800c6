"""Split computing, cascades and distillation on a small model; the split endpoint over HTTP."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from workbench import collab, models, network, serve


@pytest.fixture(scope="module")
def chain():
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="p1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    return model, models.scale_images(images)


def test_split_points_cover_every_cut(chain):
    model, _ = chain
    points = collab.split_points(model)
    assert [p.after for p in points] == ["input", "c1", "p1", "c2", "gap", "out"]
    assert points[2].activation_shape == (16, 16, 8) and points[2].values == 16 * 16 * 8


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 5])
def test_prefix_then_suffix_equals_the_model(chain, index):
    model, x = chain
    prefix, suffix = collab.split_model(model, index)
    a = prefix.predict(x, verbose=0) if prefix is not None else x
    out = suffix.predict(a, verbose=0) if suffix is not None else a
    np.testing.assert_allclose(out, model.predict(x, verbose=0), atol=1e-5)


def test_int8_activations_keep_the_answers(chain):
    model, x = chain
    prefix, suffix = collab.split_model(model, 2)
    a = prefix.predict(x, verbose=0)
    scale, zero = collab.activation_quantization(a)
    restored = collab.dequantize_activation(collab.quantize_activation(a, scale, zero), scale, zero)
    assert np.abs(restored - a).max() <= scale / 2 + 1e-6
    agree = np.mean(
        suffix.predict(restored, verbose=0).argmax(1) == model.predict(x, verbose=0).argmax(1)
    )
    assert agree >= 0.98


def test_best_split_is_the_fastest_total():
    rows = [
        {"index": 0, "after": "input", "int8_bytes": 3072, "edge_ms": 0.0, "cloud_ms": 1.0},
        {"index": 1, "after": "mid", "int8_bytes": 100, "edge_ms": 5.0, "cloud_ms": 0.5},
        {"index": 2, "after": "out", "int8_bytes": 10, "edge_ms": 50.0, "cloud_ms": 0.0},
    ]
    slow = network.LinkProfile("slow", "slow", 10, 0.1, 0.3, 0, "test")  # 3 kB up takes ~330 ms
    fast = network.LinkProfile("fast", "fast", 1, 1000, 1000, 0, "test")
    best = {
        b["key"]: b
        for b in collab.best_splits(
            rows, {"slow": slow, "fast": fast}, server_overhead_ms=1.0, response_bytes=100
        )
    }
    assert best["fast"]["best_after"] == "input"
    assert best["slow"]["best_after"] == "mid"
    assert best["slow"]["all_edge_ms"] == 50.0


def test_cascade_sweep_ends_and_threshold_choice():
    y = np.array([0, 1, 2, 3])
    edge_p = np.array([[0.9, 0.1, 0, 0], [0.6, 0.4, 0, 0], [0, 0, 0.95, 0.05], [0.5, 0, 0, 0.5]])
    cloud_p = np.eye(4)
    rows = collab.cascade_sweep(
        edge_p,
        cloud_p,
        y,
        thresholds=np.array([0.0, 0.7, 1.01]),
        edge_ms=1.0,
        cloud_ms_per_link={"x": 10.0},
    )
    assert (
        rows[0]["accuracy"] == 0.5
        and rows[0]["cloud_fraction"] == 0.0
        and rows[0]["x_mean_ms"] == 1.0
    )
    assert rows[1]["accuracy"] == 1.0 and rows[1]["cloud_fraction"] == 0.5
    assert rows[2]["cloud_fraction"] == 1.0 and rows[2]["x_mean_ms"] == 11.0
    assert collab.pick_threshold(rows, target_accuracy=1.0)["threshold"] == 0.7


def test_distillation_trains_a_student(chain):
    _, x = chain
    images = (x * 255).astype(np.uint8)
    teacher = np.full((len(x), 10), 0.1, np.float32)
    student, seconds = collab.distill(
        models.student_cnn(width=4),
        teacher,
        images,
        np.zeros(len(x), int),
        epochs=1,
        progress=False,
    )
    assert seconds > 0 and student.predict(x[:2], verbose=0).shape == (2, 10)


@pytest.mark.slow
def test_split_endpoint_serves_and_rejects_bad_activations(chain, tmp_path):
    model, x = chain
    prefix, suffix = collab.split_model(model, 2)
    a = prefix.predict(x[:4], verbose=0)
    scale, zero = collab.activation_quantization(a)
    collab.export_suffix(
        suffix,
        base=tmp_path,
        name="suffix",
        activation_shape=a.shape[1:],
        scale=scale,
        zero_point=zero,
    )
    q = collab.quantize_activation(a, scale, zero)
    with serve.serving(tmp_path) as server, serve.ServingClient(server.url, "suffix") as client:
        got = client.predict_body(collab.split_request(q)).outputs
        want = suffix.predict(collab.dequantize_activation(q, scale, zero), verbose=0)
        np.testing.assert_allclose(got, want, atol=1e-5)
        url = f"{server.url}/v1/models/suffix:predict"
        bad = [
            collab.split_request(q[:, :3]),  # wrong shape: bytes of a smaller activation
            b'{"signature_name": "activation_b64", "instances": [[0.5]]}',  # floats, not bytes
            b'{"instances": [[1, 2, 3]]}',  # int8 signature, wrong shape
            b'{"instances": [[[[300]]]]}',  # outside the int8 range
        ]
        for body in bad:
            r = httpx.post(url, content=body, timeout=30)
            assert 400 <= r.status_code < 500 and "error" in r.json(), (
                body[:60],
                r.status_code,
                r.text,
            )


def test_best_split_curve_moves_to_the_edge_as_bandwidth_falls():
    rows = [
        {"index": 0, "after": "input", "int8_bytes": 3072, "edge_ms": 0.0, "cloud_ms": 1.0},
        {"index": 1, "after": "out", "int8_bytes": 10, "edge_ms": 20.0, "cloud_ms": 0.0},
    ]
    curve = collab.best_split_curve(
        rows, rtt_ms=1.0, uplinks_mbps=[1000.0, 0.01], server_overhead_ms=1.0, response_bytes=100
    )
    assert curve == [0, 1]
