"""Structured channel pruning: graph analysis, surgery, its self-check, fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras
from tf_keras import layers

from workbench.edge import channel_plan, finetune, slim
from workbench.models import macs

# ---------------------------------------------------------------- small test models


def _randomise(model, seed: int = 0):
    """Random weights everywhere, batch-norm statistics included (an all-default batch norm
    is an identity, which would hide a wrongly sliced mean or variance)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            leaf = w.name.split("/")[-1].split(":")[0]
            if leaf in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.5, 1.5, w.shape))
            else:
                values.append(rng.normal(0.0, 0.3, w.shape))
        if values:
            layer.set_weights(values)
    return model


def _images(model, n: int = 8, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *model.input_shape[1:]), dtype=np.float32)


def chain(activation=None):
    """conv8 -> bn -> relu -> pool -> conv16 -> bn -> relu -> gap -> dense4 (linear output:
    an output that does not saturate, so a wrong slice shows in the surgery check)."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="r1")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Conv2D(16, 3, padding="same", name="c2")(x)
    x = layers.BatchNormalization(name="bn2")(x)
    x = layers.ReLU(name="r2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(4, activation=activation, name="out")(x)
    return _randomise(keras.Model(inputs, outputs, name="chain"))


def residual():
    """stem conv -> two convs added to it (a residual block) -> a third conv; the skip from
    the input into a second add pins that add's space."""
    inputs = keras.Input((8, 8, 3))
    stem = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = layers.BatchNormalization(name="bn_stem")(stem)
    x = layers.ReLU(name="r_stem")(x)
    y = layers.Conv2D(8, 3, padding="same", name="branch")(x)
    y = layers.BatchNormalization(name="bn_branch")(y)
    x = layers.Add(name="add")([x, y])
    x = layers.Conv2D(16, 1, name="widen")(x)
    z = layers.Conv2D(3, 1, name="back_to_3")(x)
    z = layers.Add(name="skip_from_input")([z, inputs])
    z = layers.GlobalAveragePooling2D(name="gap")(z)
    outputs = layers.Dense(4, name="out")(z)
    return _randomise(keras.Model(inputs, outputs, name="residual"))


def concatenating():
    """Two convs concatenated, batch norm over the concatenation, a separable conv and a 1x1
    conv added together, a transposed conv, Flatten -> Dense."""
    inputs = keras.Input((8, 8, 3))
    a = layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    b = layers.Conv2D(12, 1, name="b")(inputs)
    x = layers.Concatenate(name="cat")([a, b])
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    s = layers.SeparableConv2D(16, 3, depth_multiplier=2, padding="same", name="sep")(x)
    p = layers.Conv2D(16, 1, name="point")(x)
    x = layers.Add(name="add")([s, p])
    x = layers.Conv2DTranspose(8, 3, strides=2, padding="same", name="up")(x)
    x = layers.Flatten(name="flat")(x)
    outputs = layers.Dense(5, name="out")(x)
    return _randomise(keras.Model(inputs, outputs, name="concatenating"))


def flatten_dense():
    """The seed CNN's shape in small: conv -> pool -> Flatten -> Dense hidden -> Dense out."""
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv"),
            layers.MaxPooling2D(2, name="pool"),
            layers.Flatten(name="flat"),
            layers.Dense(6, activation="relu", name="hidden"),
            layers.Dense(3, name="out"),
        ],
        name="flatten_dense",
    )
    return _randomise(model)


def _narrow(model, **kwargs):
    p = channel_plan.plan(model, **kwargs)
    return p, slim.narrow(model, p)


# ---------------------------------------------------------------- surgery is exact


@pytest.mark.parametrize("build", [chain, residual, concatenating, flatten_dense])
def test_fraction_zero_rebuilds_a_model_that_predicts_exactly_the_same(build):
    model = build()
    p, rebuilt = _narrow(model, fraction=0.0, fractions={})
    assert p.narrowed == {}
    assert rebuilt is not model and rebuilt.count_params() == model.count_params()
    x = _images(model)
    np.testing.assert_array_equal(rebuilt(x, training=False), model(x, training=False))
    assert slim.verify(model, rebuilt, p, x) == 0.0


@pytest.mark.parametrize("build", [chain, residual, concatenating, flatten_dense])
def test_narrow_model_matches_the_original_with_removed_channels_masked(build):
    model = build()
    fractions = {"hidden": 0.5} if build is flatten_dense else {}
    p, rebuilt = _narrow(model, fraction=0.5, fractions=fractions)
    assert p.narrowed
    x = _images(model)
    out = model(x, training=False).numpy()
    assert slim.verify(model, rebuilt, p, x) < 1e-5 * max(1.0, float(np.abs(out).max()))
    # the original is untouched (its own layers and weights)
    assert macs.count_macs(model) > macs.count_macs(rebuilt)
    np.testing.assert_array_equal(model(x, training=False), out)


def test_the_surgery_check_catches_a_wrong_slice():
    model = chain()
    p = channel_plan.plan(model, fraction=0.5)
    wrong = channel_plan.plan(model, fraction=0.5)
    group = next(g for g in wrong.groups if "c2" in g.producers)
    group.keep[:] = np.setdiff1d(np.arange(group.size), group.keep)  # keep the other half
    bad = slim.narrow(model, wrong)  # the same shapes, the wrong channels
    assert slim.verify(model, bad, p, _images(model)) > 1e-2


# ---------------------------------------------------------------- shapes and MACs


def test_chain_is_narrowed_with_hand_computed_macs():
    model = chain()
    p, rebuilt = _narrow(model, fraction=0.5)
    assert p.narrowed == {"c1": (8, 4), "c2": (16, 8)}
    assert p.kept == {"out": "the model's output (never narrowed)"}
    assert rebuilt.get_layer("bn2").gamma.shape == (8,)
    assert rebuilt.get_layer("out").kernel.shape == (8, 4)
    # c1: 8x8 x 9 x 3 x 4; c2: 4x4 x 9 x 4 x 8; out: 8 x 4
    assert macs.count_macs(rebuilt) == 64 * 9 * 3 * 4 + 16 * 9 * 4 * 8 + 8 * 4
    assert macs.count_macs(model) == 64 * 9 * 3 * 8 + 16 * 9 * 8 * 16 + 16 * 4


def test_channels_ranked_by_batch_norm_gamma_keep_the_largest():
    model = chain()
    gamma = np.array([0.1, 2.0, 0.2, 3.0, 0.3, 4.0, 0.4, 5.0], np.float32)
    bn = model.get_layer("bn1")
    bn.set_weights([gamma, *bn.get_weights()[1:]])
    p = channel_plan.plan(model, fraction=0.5)
    group = next(g for g in p.groups if g.producers == ("c1",))
    np.testing.assert_array_equal(group.keep, [1, 3, 5, 7])
    l1 = channel_plan.plan(model, fraction=0.5, criterion="l1")
    kernel = model.get_layer("c1").kernel.numpy()
    expected = np.sort(np.argsort(-np.abs(kernel).sum(axis=(0, 1, 2)))[:4])
    np.testing.assert_array_equal(next(g for g in l1.groups if "c1" in g.producers).keep, expected)


def test_residual_add_couples_channels_and_an_input_skip_pins_them():
    model = residual()
    p, rebuilt = _narrow(model, fraction=0.5)
    assert p.narrowed == {"stem": (8, 4), "branch": (8, 4), "widen": (16, 8)}
    coupled = next(g for g in p.groups if "stem" in g.producers)
    assert set(coupled.producers) == {"stem", "branch"}  # the same indices removed from both
    assert "back_to_3" in p.kept and "model's input" in p.kept["back_to_3"]
    assert rebuilt.get_layer("add").output_shape[-1] == 4


def test_concatenation_keeps_each_segment_and_flatten_rows_follow():
    model = concatenating()
    p, rebuilt = _narrow(model, fraction=0.5)
    assert p.narrowed == {"a": (8, 4), "b": (12, 6), "sep": (16, 8), "point": (16, 8), "up": (8, 4)}
    assert rebuilt.get_layer("bn").gamma.shape == (10,)
    assert rebuilt.get_layer("sep").depthwise_kernel.shape == (3, 3, 10, 2)
    assert rebuilt.get_layer("sep").pointwise_kernel.shape == (1, 1, 20, 8)
    assert rebuilt.get_layer("out").kernel.shape == (16 * 16 * 4, 5)


def test_flatten_then_dense_slices_rows_c_every_c():
    model = flatten_dense()
    p, rebuilt = _narrow(model, fraction=0.5)
    keep = next(g for g in p.groups if g.producers == ("conv",)).keep
    rows = (np.arange(9)[:, None] * 8 + keep[None, :]).ravel()
    np.testing.assert_array_equal(
        rebuilt.get_layer("hidden").kernel.numpy(), model.get_layer("hidden").kernel.numpy()[rows]
    )
    assert "hidden" in p.kept and "fractions" in p.kept["hidden"]  # dense: only on request


@pytest.mark.parametrize("build", [chain, residual, concatenating, flatten_dense])
def test_plan_macs_predicts_the_narrow_models_macs(build):
    model = build()
    p, rebuilt = _narrow(
        model, fraction=0.5, fractions={"hidden": 0.5} if build is flatten_dense else {}
    )
    assert channel_plan.plan_macs(model, p) == macs.count_macs(rebuilt) < macs.count_macs(model)


def test_sensitivity_and_allocation_reach_the_mac_target():
    model = chain(activation="softmax")
    x = np.random.default_rng(2).random((32, 8, 8, 3), dtype=np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=1)  # the model's own answers: base 100%
    sens = slim.sensitivity(model, x, y, input_scale=None, levels=(0.25, 0.5), round_to=1)
    assert sens.base_accuracy == 1.0 and set(sens.groups) == {"c1", "c2"}
    assert all(0.0 <= a <= 1.0 for accs in sens.accuracy.values() for a in accs.values())
    target = channel_plan.plan_macs(model, channel_plan.plan(model, fraction=0.5, round_to=1))
    fractions = slim.allocate(model, sens, target_macs=target, round_to=1)
    chosen = channel_plan.plan(model, fraction=0.0, fractions=fractions, round_to=1)
    assert channel_plan.plan_macs(model, chosen) <= target
    with pytest.raises(ValueError, match="cannot reach"):
        slim.allocate(model, sens, target_macs=10, round_to=1)


def test_round_to_rounds_the_kept_channel_count():
    model = chain()
    p = channel_plan.plan(model, fraction=0.3, round_to=4)
    assert p.narrowed == {"c1": (8, 4), "c2": (16, 12)}
    assert channel_plan.plan(model, fraction=0.3).narrowed == {"c1": (8, 6), "c2": (16, 11)}


def test_keep_leaves_a_layer_and_its_coupled_partners_intact():
    model = residual()
    p = channel_plan.plan(model, fraction=0.5, keep=["branch"])
    assert "stem" not in p.narrowed and "branch" not in p.narrowed
    assert "in keep" in p.kept["branch"] and "branch" in p.kept["stem"]
    assert p.narrowed == {"widen": (16, 8)}


@pytest.mark.slow
def test_mobilenet_v2_prunes_residual_stages_consistently():
    model = keras.applications.MobileNetV2(
        alpha=0.35, weights=None, input_shape=(32, 32, 3), classes=10
    )
    _randomise(model)
    p, rebuilt = _narrow(model, fraction=0.5)
    groups = [set(g.producers) for g in p.groups if len(g.producers) > 1]
    assert {"block_1_project", "block_2_project"} in groups
    assert p.kept == {"predictions": "the model's output (never narrowed)"}
    x = _images(model, n=4)
    assert slim.verify(model, rebuilt, p, x) < 1e-5
    p0, same = _narrow(model, fraction=0.0)
    np.testing.assert_array_equal(same(x, training=False), model(x, training=False))


# ---------------------------------------------------------------- clear errors


def test_nothing_to_prune_is_a_technique_error_with_the_reason():
    inputs = keras.Input((4, 4, 2))
    x = layers.Flatten()(inputs)
    model = keras.Model(inputs, layers.Dense(3, name="out")(x))
    with pytest.raises(finetune.TechniqueError, match="no layer.*out: the model's output"):
        channel_plan.plan(model, fraction=0.5)


def test_layers_slimming_cannot_narrow_pin_their_inputs():
    inputs = keras.Input((4, 4, 2))
    x = layers.Conv2D(4, 1, name="conv")(inputs)
    x = layers.Reshape((16, 4), name="reshape")(x)
    x = layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, layers.Dense(3, name="out")(x))
    with pytest.raises(finetune.TechniqueError, match="conv: it feeds reshape: Reshape"):
        channel_plan.plan(model, fraction=0.5)


def test_nested_models_and_lambdas_are_left_whole_and_the_rest_narrowed():
    inner_in = keras.Input((8, 8, 6))
    inner = keras.Model(inner_in, layers.Conv2D(4, 1, name="inner_conv")(inner_in), name="inner")
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", name="c1")(inputs)
    x = inner(x)
    x = layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = layers.Lambda(lambda t: t * 2.0, name="lam")(x)
    x = layers.Conv2D(8, 3, padding="same", name="c3")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = _randomise(keras.Model(inputs, layers.Dense(2, name="out")(x)))
    p, rebuilt = _narrow(model, fraction=0.5)
    assert p.narrowed == {"c3": (8, 4)}
    assert p.kept["c1"] == "it feeds inner: Functional cannot be narrowed by slimming"
    assert p.kept["c2"] == "it feeds lam: Lambda cannot be narrowed by slimming"
    assert slim.verify(model, rebuilt, p, _images(model)) < 1e-5
    assert channel_plan.plan_macs(model, p) == macs.count_macs(rebuilt)


def test_subclassed_model_and_bad_arguments_are_refused_clearly():
    class Custom(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(finetune.TechniqueError, match="no layer graph"):
        channel_plan.plan(Custom(), fraction=0.5)
    model = chain()
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        channel_plan.plan(model, fraction=1.0)
    with pytest.raises(ValueError, match="does not have.*nope"):
        channel_plan.plan(model, fraction=0.5, keep=["nope"])
    with pytest.raises(ValueError, match="not convolutions or dense.*bn1"):
        channel_plan.plan(model, fraction=0.5, fractions={"bn1": 0.5})


# ---------------------------------------------------------------- fine-tuning


@pytest.fixture(scope="module")
def tiny_data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, 64)


def test_prune_channels_without_steps_is_the_checked_surgery(tiny_data):
    x, y = tiny_data
    model = chain(activation="softmax")
    result = slim.prune_channels(
        model, x, y, fraction=0.5, steps=0, batch_size=16, input_scale=1 / 255, progress=False
    )
    assert result.narrowed == {"c2": (16, 8)}  # round_to=8: c1's 8 channels stay 8
    assert result.kept["out"] == "the model's output (never narrowed)"
    assert "round_to=8" in result.kept["c1"]
    assert result.macs_before == macs.count_macs(model)
    assert result.macs_after == macs.count_macs(result.model) < result.macs_before
    assert result.params_after == result.model.count_params() < result.params_before
    assert result.steps == 0 and result.surgery_error < 1e-5
    assert result.model.optimizer is not None  # compiled, ready to evaluate or convert


@pytest.mark.slow
@pytest.mark.parametrize("distill", [0.0, 0.5])
def test_prune_channels_narrows_checks_and_fine_tunes(tiny_data, distill):
    x, y = tiny_data
    model = chain(activation="softmax")
    before = [w.copy() for w in model.get_weights()]
    result = slim.prune_channels(
        model,
        x,
        y,
        fraction=0.5,
        steps=3,
        batch_size=16,
        input_scale=1 / 255,
        round_to=1,
        distill=distill,
        progress=False,
    )
    assert result.narrowed == {"c1": (8, 4), "c2": (16, 8)}
    assert result.macs_after < result.macs_before and result.params_after < result.params_before
    assert result.surgery_error < 1e-5 and result.steps == 3
    untrained = slim.narrow(model, channel_plan.plan(model, fraction=0.5))
    changed = any(
        not np.array_equal(a, b)
        for a, b in zip(result.model.get_weights(), untrained.get_weights(), strict=True)
    )
    assert changed  # fine-tuning moved the weights
    for a, b in zip(model.get_weights(), before, strict=True):  # the teacher stayed as it was
        np.testing.assert_array_equal(a, b)
    assert "c1: 8 -> 4" in result.describe()
    probs = result.model.predict(x[:4] / 255.0, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_a_slim_recipe_builds_a_faster_variant_end_to_end(tiny_data):
    from pathlib import Path

    from workbench.edge import variants
    from workbench.models import loading, subject

    x, y = tiny_data
    model = chain(activation="softmax")
    classifier = loading.ImageClassifier(
        path=Path("chain.keras"), sha256="", saved_by="test", native=model, keras_model=model,
        keras_note="in memory", input_shape=(8, 8, 3), num_classes=4,
    )  # fmt: skip
    evaluation = subject.Evaluation.of(
        classifier, x[:16], y[:16], x_val=x[16:32], y_val=y[16:32], input_scale=1 / 255
    )
    step = variants.Step.of("slim", fraction=0.5, steps=2, round_to=1)
    assert step.describe() == "slim(fraction=50%, round_to=1, steps=2)"
    recipes = [
        variants.Recipe("float32", (), "float32"),
        variants.Recipe("slim50_float32", (step,), "float32"),
    ]
    settings = variants.Settings(batch_size=16, latency_repeats=5)
    built = variants.build_variants(
        classifier, x, y, evaluation, input_scale=1 / 255, recipes=recipes,
        settings=settings, progress=False,
    )  # fmt: skip
    assert [v.status for v in built] == ["ok", "ok"], [v.reason for v in built]
    full, slimmed = built
    assert slimmed.macs == 64 * 9 * 3 * 4 + 16 * 9 * 4 * 8 + 8 * 4 < full.macs
