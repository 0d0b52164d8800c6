"""Split computing on chains and branchy graphs, cascades, and the split endpoint over HTTP."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from workbench.cloud import serving
from workbench.collab import cascade, split
from workbench.models import architectures
from workbench.network import latency


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
    return model, architectures.scale_images(images)


def test_every_layer_of_a_chain_is_a_cut_point(chain):
    model, _ = chain
    points = split.cut_points(model)
    assert [p.after for p in points] == ["input", "c1", "p1", "c2", "gap", "out"]
    assert points[2].activation_shape == (16, 16, 8) and points[2].values == 16 * 16 * 8
    assert [p.index for p in points] == list(range(6))


@pytest.mark.parametrize("after", ["input", "c1", "p1", "c2", "gap", "out"])
def test_prefix_then_suffix_equals_the_model(chain, after):
    model, x = chain
    prefix, suffix = split.split_model(model, after)
    a = prefix.predict(x, verbose=0) if prefix is not None else x
    out = suffix.predict(a, verbose=0) if suffix is not None else a
    np.testing.assert_allclose(out, model.predict(x, verbose=0), atol=1e-5)


@pytest.fixture(scope="module")
def branchy():
    """A residual block, a two-branch concatenation and a long skip from the input."""
    import tf_keras as keras
    from tf_keras import layers

    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 10, 1), name="image")
    stem = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    inner = layers.Conv2D(8, 3, padding="same", name="res_conv")(stem)
    inner = layers.BatchNormalization(name="res_bn")(inner)
    block = layers.Add(name="res_add")([stem, inner])
    left = layers.DepthwiseConv2D(3, padding="same", name="left_dw")(block)
    right = layers.SeparableConv2D(4, 3, padding="same", name="right_sep")(block)
    merged = layers.Concatenate(name="merge")([left, right])
    pooled = layers.GlobalAveragePooling2D(name="gap")(merged)
    outputs = layers.Dense(7, activation="softmax", name="out")(pooled)
    model = keras.Model(inputs, outputs, name="branchy")
    x = np.random.default_rng(1).uniform(0, 1, (16, 12, 10, 1)).astype(np.float32)
    return model, x


def test_no_cut_point_lies_inside_a_branch(branchy):
    model, _ = branchy
    cuts = [p.after for p in split.cut_points(model)]
    assert cuts == ["input", "stem", "res_add", "merge", "gap", "out"]
    for inside in ("res_conv", "res_bn", "left_dw", "right_sep"):
        with pytest.raises(ValueError, match="not a cut point"):
            split.split_model(model, inside)


@pytest.mark.parametrize("after", ["input", "stem", "res_add", "merge", "gap", "out"])
def test_split_of_a_branchy_graph_equals_the_model(branchy, after):
    model, x = branchy
    prefix, suffix = split.split_model(model, after)
    a = prefix.predict(x, verbose=0) if prefix is not None else x
    out = suffix.predict(a, verbose=0) if suffix is not None else a
    np.testing.assert_allclose(out, model.predict(x, verbose=0), atol=1e-5)


def test_a_long_skip_from_the_input_leaves_only_the_ends():
    import tf_keras as keras
    from tf_keras import layers

    inputs = keras.Input((4,))
    hidden = layers.Dense(4, name="hidden")(inputs)
    outputs = layers.Dense(3, activation="softmax", name="out")(layers.Add()([inputs, hidden]))
    model = keras.Model(inputs, outputs)
    assert [p.after for p in split.cut_points(model)] == ["input", "add", "out"]


def test_choose_cuts_keeps_both_ends_and_the_cheapest_in_between(branchy):
    points = split.cut_points(branchy[0])
    chosen = split.choose_cuts(points, 4)
    assert len(chosen) == 4 and chosen[0].after == "input" and chosen[-1].after == "out"
    assert split.choose_cuts(points, 10) == points


def test_int8_activations_keep_the_answers(chain):
    model, x = chain
    prefix, suffix = split.split_model(model, "p1")
    a = prefix.predict(x, verbose=0)
    scale, zero = split.activation_quantization(a)
    restored = (split.quantize_activation(a, scale, zero).astype(np.float32) - zero) * scale
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
    slow = latency.Link("slow", "slow", 10, 0.1, 0.3, 0, "test")  # 3 kB up takes ~330 ms
    fast = latency.Link("fast", "fast", 1, 1000, 1000, 0, "test")
    best = {
        b["key"]: b
        for b in split.best_splits(
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
    rows = cascade.cascade_sweep(
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
    assert cascade.pick_threshold(rows, target_accuracy=1.0)["threshold"] == 0.7


@pytest.mark.slow
def test_split_endpoint_serves_and_rejects_bad_activations(chain, tmp_path):
    model, x = chain
    prefix, suffix = split.split_model(model, "p1")
    a = prefix.predict(x[:4], verbose=0)
    scale, zero = split.activation_quantization(a)
    split.export_suffix(
        suffix,
        base=tmp_path,
        name="suffix",
        activation_shape=a.shape[1:],
        scale=scale,
        zero_point=zero,
    )
    q = split.quantize_activation(a, scale, zero)
    with serving.serving(tmp_path) as server, serving.ServingClient(server.url, "suffix") as client:
        got = client.predict_body(split.split_request(q)).outputs
        want = suffix.predict((q.astype(np.float32) - zero) * scale, verbose=0)
        np.testing.assert_allclose(got, want, atol=1e-5)
        url = f"{server.url}/v1/models/suffix:predict"
        bad = [
            split.split_request(q[:, :3]),  # wrong shape: bytes of a smaller activation
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
    curve = split.best_split_curve(
        rows, rtt_ms=1.0, uplinks_mbps=[1000.0, 0.01], server_overhead_ms=1.0, response_bytes=100
    )
    assert curve == [0, 1]


# ----------------------------------------------------------------------------- Keras 3 graphs


@pytest.fixture(scope="module")
def keras3_blocks():
    """A Keras 3 graph with operations (``x + 3.0``, ``keras.ops.multiply``): a
    squeeze-and-excitation block, an inverted-residual block, a residual add as an op."""
    import keras
    from keras import layers, ops

    keras.utils.set_random_seed(2)
    inputs = keras.Input((12, 12, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = x * ops.relu6(x + 3.0) * (1.0 / 6.0)  # hard swish as operations
    se = layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    se = layers.Conv2D(8, 1, activation="sigmoid", name="se_gate")(se)
    x = ops.multiply(x, se)  # the excitation: x crosses beside the gate
    y = layers.Conv2D(16, 1, activation="relu6", name="ir_expand")(x)
    y = layers.DepthwiseConv2D(3, padding="same", name="ir_depthwise")(y)
    y = layers.Conv2D(8, 1, name="ir_project")(y)
    x = layers.Add(name="ir_add")([x, y])  # inverted residual
    z = layers.Conv2D(8, 3, padding="same", name="res_conv")(x)
    x = ops.add(x, z)  # a residual add written as an operation
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(5, activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs, name="keras3_blocks")
    xs = np.random.default_rng(2).uniform(0, 1, (16, 12, 12, 3)).astype(np.float32)
    return model, xs


def test_keras3_operations_are_calls_and_blocks_are_interiors(keras3_blocks):
    model, _ = keras3_blocks
    cuts = [p.after for p in split.cut_points(model)]
    assert cuts[0] == "input" and cuts[-1] == "out"
    assert "stem" in cuts and "ir_add" in cuts and "gap" in cuts
    for inside in ("se_pool", "se_gate", "ir_expand", "ir_depthwise", "ir_project", "res_conv"):
        assert inside not in cuts, (inside, cuts)
        with pytest.raises(ValueError, match="not a cut point"):
            split.split_model(model, inside)
    ops_cuts = [c for c in cuts if c.startswith(("add", "multiply"))]
    assert len(ops_cuts) >= 3, cuts  # the hard swish's product, the excitation, the residual


def test_a_keras3_split_equals_the_model(keras3_blocks):
    import keras

    model, x = keras3_blocks
    expected = np.asarray(model(x))
    for point in split.cut_points(model):
        prefix, suffix = split.split_model(model, point.after)
        for half in (prefix, suffix):
            assert half is None or isinstance(half, keras.Model)
        a = np.asarray(prefix(x)) if prefix is not None else x
        out = np.asarray(suffix(a)) if suffix is not None else a
        assert a.shape[1:] == point.activation_shape or prefix is None
        np.testing.assert_allclose(out, expected, atol=1e-5, err_msg=point.after)


def test_a_keras3_sequential_model_is_cut_everywhere():
    import keras

    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, name="c1"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    assert [p.after for p in split.cut_points(model)] == ["input", "c1", "flat", "out"]
    prefix, suffix = split.split_model(model, "flat")
    x = np.random.default_rng(3).uniform(0, 1, (2, 6, 6, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(suffix(prefix(x))), np.asarray(model(x)), atol=1e-6)


def test_a_model_without_a_graph_is_refused_with_the_reason():
    import keras

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="keras.Input"):
        split.cut_points(Subclassed())
