"""Compression and the edge runtime on a tiny model: every TFLite variant, sparsity, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.core import metrics
from workbench.edge import convert, finetune, runtime, slim, techniques
from workbench.models import architectures


@pytest.fixture(scope="module")
def tiny():
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(4),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax", name="out"),
        ]
    )
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 128)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    model.fit(architectures.scale_images(x), y, epochs=2, verbose=0)
    return model, x, y


@pytest.mark.parametrize(
    "variant, floor", [("float32", 0.99), ("dynamic_range", 0.95), ("float16", 0.99), ("int8", 0.9)]
)
def test_every_variant_loads_and_agrees(tiny, variant, floor):
    model, x, _ = tiny
    blob = convert.to_tflite(
        model, variant, x_calibration=x, calibration_samples=64, input_scale=1 / 255
    )
    m = runtime.EdgeModel(blob, name=variant)
    ref = model.predict(architectures.scale_images(x), verbose=0)
    assert metrics.agreement(m.predict(architectures.scale_images(x)), ref) >= floor
    if variant == "int8":
        assert m.input_dtype == np.int8 and m.output_dtype == np.int8
        scale, zero = m.input_quantization
        assert scale == pytest.approx(1 / 255, rel=1e-3) and zero == -128  # pixel p -> code p - 128
    stats = m.benchmark(architectures.scale_images(x[:1]), warmup=2, repeats=10)
    assert stats.p50_ms > 0 and stats.p95_ms >= stats.p50_ms


def test_int8_needs_calibration_data(tiny):
    with pytest.raises(ValueError, match="x_calibration"):
        convert.to_tflite(tiny[0], "int8", input_scale=1 / 255)


def test_corrupt_and_truncated_files_name_the_file(tiny, tmp_path):
    blob = convert.to_tflite(tiny[0], "float32", input_scale=None)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(runtime.EdgeModelError, match="truncated.tflite"):
        runtime.EdgeModel(truncated)
    other = tmp_path / "not-a-model.tflite"
    other.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(runtime.EdgeModelError, match="not-a-model.tflite.*not a TFLite model"):
        runtime.EdgeModel(other)
    with pytest.raises(runtime.EdgeModelError, match="run notebook 03"):
        runtime.EdgeModel(tmp_path / "missing.tflite")


def test_wrong_input_shape_is_a_clear_error(tiny):
    m = runtime.EdgeModel(convert.to_tflite(tiny[0], "float32", input_scale=None))
    with pytest.raises(ValueError, match="expects inputs of shape"):
        m.predict(np.zeros((2, 28, 28, 3), np.float32))


def test_pruning_reaches_the_target_even_on_a_short_run(tiny):
    model, x, y = tiny
    pruned = techniques.prune(
        model, x, y, sparsity=0.75, steps=4, batch_size=32, input_scale=1 / 255, progress=False
    )
    report = techniques.sparsity_report(pruned)
    assert report[-1]["sparsity"] == pytest.approx(0.75, abs=0.01)
    for row in report[:-1]:
        assert row["sparsity"] == pytest.approx(0.75, abs=0.02), row
    dense = convert.size_of(convert.to_tflite(model, "float32", input_scale=None))
    sparse = convert.size_of(convert.to_tflite(pruned, "float32", input_scale=None))
    assert sparse.gzip_bytes < 0.6 * dense.gzip_bytes  # zeros only pay off after compression


def test_pruning_schedule_fits_the_number_of_steps():
    schedule = techniques.pruning_schedule(0.8, total_steps=7)
    config = schedule.get_config()["config"]
    assert config["end_step"] <= 7 and config["end_step"] % config["frequency"] == 0


def test_clustering_preserves_sparsity_and_limits_unique_values(tiny):
    model, x, y = tiny
    pruned = techniques.prune(
        model, x, y, sparsity=0.5, steps=4, batch_size=32, input_scale=1 / 255, progress=False
    )
    clustered = techniques.cluster(
        pruned, x, y, clusters=8, steps=4, batch_size=32, input_scale=1 / 255, progress=False
    )
    assert techniques.overall_sparsity(clustered) >= 0.49
    assert all(np.unique(k).size <= 8 for _, k in finetune.kernels(clustered))


@pytest.mark.parametrize("fn", [convert.affine_quantize, convert.symmetric_quantize])
def test_quantization_error_is_at_most_half_a_step(fn):
    values = np.random.default_rng(0).normal(0, 0.1, 1000).astype(np.float32)
    q = fn(values)
    assert q["q"].min() >= -128 and q["q"].max() <= 127
    assert q["max_abs_error"] <= q["scale"] / 2 + 1e-7


def test_per_channel_scales_each_output_channel_by_its_own_range():
    rng = np.random.default_rng(0)
    # four output channels whose weights span 0.01 to 1: one scale would round the small ones
    kernel = rng.normal(0, 1, (3, 3, 2, 4)) * np.array([0.01, 0.1, 0.5, 1.0])
    per_tensor = convert.symmetric_quantize(kernel)
    per_channel = convert.symmetric_quantize(kernel, axis=-1)
    assert np.shape(per_channel["scale"]) == (4,)
    np.testing.assert_allclose(per_channel["scale"], np.abs(kernel).max(axis=(0, 1, 2)) / 127)
    assert per_channel["q"].shape == kernel.shape and np.abs(per_channel["q"]).max() == 127
    # every channel uses the full int8 range, and errs at most half its own step
    assert (np.abs(per_channel["q"]).max(axis=(0, 1, 2)) == 127).all()
    err = np.abs(per_channel["restored"] - kernel).max(axis=(0, 1, 2))
    assert (err <= per_channel["scale"] / 2 + 1e-12).all()
    # the smallest channel is restored far better than with the tensor's one scale
    small = kernel[..., 0]
    assert (
        np.abs(per_channel["restored"][..., 0] - small).max()
        < 0.05 * np.abs(per_tensor["restored"][..., 0] - small).max()
    )
    zeros = convert.symmetric_quantize(np.zeros((2, 3)), axis=-1)  # an all-zero channel
    assert (zeros["q"] == 0).all() and (zeros["scale"] == 1.0).all()


def test_quantization_demo_compares_per_tensor_and_per_channel():
    kernel = np.random.default_rng(1).normal(0, 1, (3, 3, 3, 8)) * np.linspace(0.1, 1, 8)
    rows, errors = convert.quantization_demo(kernel, show=5)
    assert len(rows) == 5 and [r["output channel"] for r in rows] == [0, 1, 2, 3, 4]
    assert errors["per_channel"]["scales"] == 8 and errors["symmetric"]["scales"] == 1
    assert errors["per_channel"]["scale"] == pytest.approx(errors["symmetric"]["scale"])
    # rounding errors are about uniform within half a step: RMS = scale / sqrt(12)
    scales = np.abs(kernel).reshape(-1, 8).max(axis=0) / 127
    expected_ratio = errors["symmetric"]["scale"] / np.sqrt(np.mean(scales**2))
    ratio = errors["symmetric"]["rms_error"] / errors["per_channel"]["rms_error"]
    assert ratio > 1.2 and ratio == pytest.approx(expected_ratio, rel=0.1)


def test_manifest_roundtrip(tiny, tmp_path):
    blob = convert.to_tflite(tiny[0], "float32", input_scale=None)
    (tmp_path / "m.tflite").write_bytes(blob)
    runtime.write_manifest(
        tmp_path, [{"variant": "float32", "file": "m.tflite"}], default="float32"
    )
    m, entry = runtime.load_from_manifest(tmp_path)
    assert entry["file"] == "m.tflite" and m.size_bytes == len(blob)
    with pytest.raises(KeyError, match="int8"):
        runtime.load_from_manifest(tmp_path, "int8")
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        runtime.read_manifest(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def with_rescaling():
    """A model that carries its own preprocessing (a Rescaling layer tfmot does not know)."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 12, 12, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 64)
    return model, x, y


def test_pruning_skips_unsupported_layers_and_keeps_dense_ones(with_rescaling):
    model, x, y = with_rescaling
    before = model.get_weights()
    pruned = techniques.prune(
        model, x, y, sparsity=0.5, steps=4, batch_size=16, input_scale=None,
        keep_dense=("conv1",), progress=False,
    )  # fmt: skip
    report = {row["layer"]: row["sparsity"] for row in techniques.sparsity_report(pruned)}
    assert report["conv1"] < 0.1 and report["conv2"] == pytest.approx(0.5, abs=0.02)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.fixture
def with_normalization(with_rescaling):
    """As :func:`with_rescaling`, plus an adapted Normalization: weights, none trainable (as
    EfficientNet's input normalization)."""
    import tf_keras as keras

    _, x, y = with_rescaling
    inputs = keras.Input((12, 12, 1))
    norm = keras.layers.Normalization(axis=-1, name="norm")
    norm.adapt(x.astype(np.float32) / 255)
    h = norm(keras.layers.Rescaling(1 / 255, name="scale")(inputs))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(h))
    assert norm.weights and not norm.trainable_weights
    return model, x, y


@pytest.mark.parametrize("preserve", [None, "sparsity", "clusters"])
@pytest.mark.parametrize("subject", ["with_rescaling", "with_normalization"])
def test_quantization_aware_training_leaves_unknown_layers_float(subject, preserve, request):
    model, x, y = request.getfixturevalue(subject)
    qat = techniques.quantization_aware(
        model, x, y, steps=2, batch_size=16, input_scale=None, preserve=preserve, progress=False
    )
    blob = convert.to_tflite(qat, "int8", x_calibration=x, input_scale=None)
    probs = runtime.EdgeModel(blob).predict(x.astype(np.float32))
    assert probs.shape == (64, 3)


def test_a_technique_that_cannot_apply_says_why():
    import tf_keras as keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Softmax()])
    x, y = np.zeros((8, 4), np.float32), np.zeros(8, int)
    with pytest.raises(finetune.TechniqueError, match="pruning: no layer"):
        techniques.prune(model, x, y, sparsity=0.5, steps=1, batch_size=4, input_scale=None)


def test_keras3_and_saved_model_sources_convert(tmp_path):
    """Post-training conversion needs no tf-keras: a Keras 3 model and a SavedModel folder."""
    import keras

    keras.utils.set_random_seed(0)
    k3 = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    x = np.random.default_rng(0).uniform(0, 1, (8, 6, 6, 1)).astype(np.float32)
    blob = convert.to_tflite(k3, "float32", input_scale=None)
    np.testing.assert_allclose(
        runtime.EdgeModel(blob).predict(x), k3.predict(x, verbose=0), atol=1e-5
    )
    k3.export(str(tmp_path / "sm"), verbose=False)
    blob = convert.to_tflite(tmp_path / "sm", "int8", x_calibration=x, input_scale=None)
    assert runtime.EdgeModel(blob).input_dtype == np.int8


def test_qat_ranges_start_from_the_data_and_nothing_else_moves():
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, name="conv")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(3, activation="softmax", name="out")(h)
    qat = tfmot.quantization.keras.quantize_model(keras.Model(inp, out))
    x = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    by_name = {w.name: w for w in qat.weights}
    assert by_name["quant_relu/output_max:0"].numpy() == 6.0  # tfmot's start: [-6, 6]
    moving = [w for w in qat.weights if "moving" in w.name]
    stats = [w.numpy().copy() for w in moving]

    shown = techniques.calibrate_ranges(qat, x, input_scale=1 / 255, batches=4, batch_size=16)

    assert shown["mean_abs_bound_after"] < shown["mean_abs_bound_before"]
    for w, before in zip(moving, stats, strict=True):  # batch-norm statistics are put back
        np.testing.assert_array_equal(w.numpy(), before)
    # a ReLU's range now starts at 0 (the data's minimum), not -6, and ends at its maximum
    assert by_name["quant_relu/output_min:0"].numpy() == 0.0
    top = by_name["quant_relu/output_max:0"].numpy()
    reference = keras.Model(qat.input, qat.get_layer("quant_relu").output)
    assert 0 < top <= 1.01 * float(np.max(reference(x / 255.0, training=True)))


def test_batch_norms_fold_into_their_layer_and_qat_files_keep_no_extra_ops():
    from collections import Counter

    import tf_keras as keras
    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, use_bias=False, name="c1")(inp)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU(name="r1")(h)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)  # after a ReLU: cannot fold
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(5, name="d1")(h)
    h = keras.layers.BatchNormalization(name="bn3")(h)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="out")(h))
    x = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x / 255.0, np.zeros(64), epochs=3, verbose=0)  # batch-norm statistics move

    folded, names = slim.fold_batch_norms(model)

    assert names == ["bn1", "bn3"]
    assert [layer.name for layer in folded.layers if "bn" in layer.name] == ["bn2"]
    np.testing.assert_allclose(folded(x / 255.0), model(x / 255.0), atol=1e-5)
    assert {layer.name for layer in model.layers} >= {"bn1", "bn3"}  # the source is untouched

    def muls(source):
        blob = convert.to_tflite(source, "int8", input_scale=1 / 255, x_calibration=x)
        ops = Counter(op["op_name"] for op in Interpreter(model_content=blob)._get_ops_details())
        return ops["MUL"]

    # post-training, the converter folds bn1 and bn3 itself; bn2 stays a multiply and an add
    assert muls(model) == 1
    kw = dict(steps=2, batch_size=16, input_scale=1 / 255, progress=False)
    assert muls(techniques.quantization_aware(model, x, np.zeros(64), **kw)) == 1
    assert muls(techniques.quantization_aware(model, x, np.zeros(64), fold_bn=False, **kw)) > 1
