"""Distillation: the baseline is plain training, the teacher sees the student's view, the loss."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data import pipeline
from workbench.edge import distill

CLASSES = 4


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, CLASSES, 40)
    return x, y


def _net(name: str, *, classes: int = CLASSES, first=None):
    import tf_keras as keras
    from tf_keras import layers

    inputs = keras.Input((8, 8, 3))
    x = first(inputs) if first is not None else inputs
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def _recorder(store: list):
    """A pass-through layer that keeps a copy of every batch it is called on."""
    import tensorflow as tf
    import tf_keras as keras

    class Record(keras.layers.Layer):
        def call(self, x):
            def keep(v):
                store.append(v.numpy().copy())
                return np.float32(0)

            done = tf.py_function(keep, [x], tf.float32)
            with tf.control_dependencies([done]):
                return tf.identity(x)

    return Record()


def test_alpha_one_is_plain_labels_only_training_step_for_step(data):
    import tf_keras as keras

    x, y = data
    steps, lr, seed = 7, 1e-2, 3  # 40 images, batches of 16: partial batches and a new epoch
    start = _net("student")
    initial = start.get_weights()

    ours = _net("ours")
    ours.set_weights(initial)
    ours, seconds = distill.distill(
        ours, _net("unused_teacher"), x, y, steps=steps, batch_size=16, alpha=1.0,
        learning_rate=lr, seed=seed, progress=False,
    )  # fmt: skip

    plain = _net("plain")
    plain.set_weights(initial)
    plain.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)),
        loss="sparse_categorical_crossentropy",
    )
    ds = pipeline.make_dataset(x, y, batch_size=16, training=True, augment=True, seed=seed)
    plain.fit(ds.repeat(), steps_per_epoch=steps, epochs=1, verbose=0)

    assert seconds > 0
    assert int(ours.optimizer.iterations.numpy()) == steps
    moved = max(np.abs(a - b).max() for a, b in zip(ours.get_weights(), initial, strict=True))
    assert moved > 1e-3  # training happened
    for a, b in zip(ours.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_teacher_sees_exactly_the_augmented_batch_the_student_sees(data):
    x, y = data
    seen_by_teacher, seen_by_student = [], []
    teacher = _net("teacher", first=_recorder(seen_by_teacher))
    student = _net("student", first=_recorder(seen_by_student))
    distill.distill(
        student, teacher, x, y, steps=5, batch_size=16, alpha=0.5, seed=1, progress=False
    )
    assert len(seen_by_teacher) == len(seen_by_student) == 5
    for t, s in zip(seen_by_teacher, seen_by_student, strict=True):
        np.testing.assert_array_equal(t, s)
    # and it is the augmented view, not the stored images
    originals = {img.tobytes() for img in (x.astype(np.float32) / 255)}
    seen = np.concatenate(seen_by_teacher)
    assert np.mean([img.tobytes() in originals for img in seen]) < 0.5


def test_softened_log_probs_equal_the_softened_logits():
    import tensorflow as tf

    z = np.random.default_rng(0).normal(0, 4, (6, CLASSES)).astype(np.float32)
    p = tf.nn.softmax(z)
    for t in (0.5, 1.0, 2.0, 5.0):
        np.testing.assert_allclose(
            distill.softened_log_probs(p, t), tf.nn.log_softmax(z / t), atol=1e-5
        )


def test_kl_is_zero_when_student_equals_teacher_and_positive_otherwise():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(CLASSES), 8).astype(np.float32)
    q = rng.dirichlet(np.ones(CLASSES), 8).astype(np.float32)
    y = rng.integers(0, CLASSES, 8)
    for t in (1.0, 3.0):
        assert abs(float(distill.kl_term(p, p, t))) < 1e-6
        assert float(distill.kl_term(p, q, t)) > 1e-3
        assert abs(float(distill.distillation_loss(y, p, p, temperature=t, alpha=0.0))) < 1e-5


def test_soft_term_is_scaled_by_t_squared():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    z_t, z_s = rng.normal(0, 2, (2, 5, CLASSES)).astype(np.float32)
    y = rng.integers(0, CLASSES, 5)
    p_t, p_s = tf.nn.softmax(z_t).numpy(), tf.nn.softmax(z_s).numpy()
    for t, alpha in ((1.0, 0.0), (4.0, 0.0), (3.0, 0.25)):
        q_t, q_s = tf.nn.softmax(z_t / t).numpy(), tf.nn.softmax(z_s / t).numpy()
        kl = np.mean(np.sum(q_t * (np.log(q_t) - np.log(q_s)), axis=1))
        ce = -np.mean(np.log(p_s[np.arange(5), y]))
        want = alpha * ce + (1 - alpha) * t**2 * kl
        got = float(distill.distillation_loss(y, p_s, p_t, temperature=t, alpha=alpha))
        assert got == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -0.1}, "alpha=-0.1 is outside"),
        ({"alpha": 1.5}, "alpha=1.5 is outside"),
        ({"temperature": 0.0}, "temperature=0.0 must be > 0"),
        ({"temperature": -2.0}, "temperature=-2.0 must be > 0"),
        ({"steps": 0}, "steps=0"),
        ({"batch_size": 0}, "batch_size=0"),
    ],
)
def test_bad_arguments_are_refused_clearly(data, kwargs, message):
    x, y = data
    args = {"steps": 2, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        distill.distill(_net("s"), _net("t"), x, y, **args)


def test_teacher_and_student_must_agree(data):
    x, y = data
    with pytest.raises(ValueError, match="teacher 'wide' has 5 classes and the student"):
        distill.distill(_net("s"), _net("wide", classes=5), x, y, steps=1, progress=False)
    with pytest.raises(ValueError, match="teacher is None"):
        distill.distill(_net("s"), None, x, y, steps=1, alpha=0.5, progress=False)
    too_high = y.copy()
    too_high[0] = CLASSES
    with pytest.raises(ValueError, match=r"labels 0\.\.4, but the student 's' has 4 outputs"):
        distill.distill(_net("s"), _net("t"), x, too_high, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"takes images of shape \(8, 8, 3\)"):
        distill.distill(_net("s"), _net("t"), x[:, :6, :6], y, steps=1, progress=False)


def test_compare_chooses_on_validation_and_reports_paired_gains(data):
    x, y = data
    result = distill.compare(
        _net("teacher"),
        lambda: _net("student"),
        x[:24], y[:24], x[24:32], y[24:32], x[32:], y[32:],
        seeds=(0, 1), steps=2, batch_size=8, temperatures=(1.0, 3.0), alphas=(0.5,),
        progress=False,
    )  # fmt: skip
    assert len(result["runs"]) == 2 * 3
    best = max(result["candidates"], key=lambda c: c["val_mean"])
    assert result["chosen"] == {"temperature": best["temperature"], "alpha": 0.5}
    tested = [r for r in result["runs"] if r["test_accuracy"] is not None]
    assert len(tested) == 4  # the baseline and the chosen candidate, per seed: nothing else
    labels = sorted(
        (r for r in tested if r["student"] == distill.LABELS_ONLY), key=lambda r: r["seed"]
    )
    chosen = sorted(
        (r for r in tested if r["student"] == distill.DISTILLED), key=lambda r: r["seed"]
    )
    gains = [
        100 * (d["test_accuracy"] - b["test_accuracy"]) for d, b in zip(chosen, labels, strict=True)
    ]
    assert result["gain_test_pp"]["per_seed"] == pytest.approx(gains)
    assert result["gain_test_pp"]["mean"] == pytest.approx(np.mean(gains))
    assert len(result["models"][distill.DISTILLED]) == 2
    with pytest.raises(ValueError, match="alpha=1 is the labels-only baseline"):
        distill.compare(None, None, x, y, x, y, x, y, steps=1, alphas=(1.0,))


def test_teacher_diagnostics_measure_agreement_confidence_and_softening():
    y = np.array([0, 1, 2, 3])
    p = np.array([[0.97, 0.01, 0.01, 0.01], [0.1, 0.7, 0.1, 0.1], [0.6, 0.1, 0.2, 0.1], [0.25] * 4])
    d = distill.teacher_diagnostics(p, y, temperatures=(1.0, 4.0))
    assert d["accuracy"] == 0.5  # the last row's tie goes to class 0
    assert d["mean_confidence"] == pytest.approx((0.97 + 0.7 + 0.6 + 0.25) / 4)
    assert d["temperatures"][4.0]["entropy_bits"] > d["temperatures"][1.0]["entropy_bits"]
    assert d["temperatures"][1.0]["true_class_mass_when_wrong"] == pytest.approx((0.2 + 0.25) / 2)
    assert d["max_entropy_bits"] == 2.0


def _result(gains):
    g = distill.mean_sd(gains)
    return {
        "gain_test_pp": g,
        "teacher": {"test_accuracy": 0.64},
        "accuracy": {
            distill.LABELS_ONLY: {"test_mean": 0.50},
            distill.DISTILLED: {"test_mean": 0.50 + g["mean"] / 100},
        },
        "chosen": {"temperature": 2.0, "alpha": 0.5},
        "steps": 600,
        "batch_size": 64,
        "train_images": 4800,
        "seconds": {distill.LABELS_ONLY: 50.0, distill.DISTILLED: 100.0, "teacher_share": 0.5},
    }


@pytest.mark.parametrize(
    ("gains", "verdict"),
    [
        ([1.0, 1.2, 0.9], "distillation helps"),
        ([-1.0, -1.2, -0.9], "distillation hurts"),
        ([2.0, -1.5, 0.4], "no gain the seeds can tell from noise"),
    ],
)
def test_explanation_judges_the_gain_by_its_confidence_interval(gains, verdict):
    diagnostics = distill.teacher_diagnostics(
        np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]), np.array([0, 2]), temperatures=(2.0,)
    )
    text = distill.explain(_result(gains), diagnostics)
    assert verdict in text
    lo, hi = distill.confidence_interval(distill.mean_sd(gains))
    assert lo < np.mean(gains) < hi and hi - lo == pytest.approx(
        2 * 4.30 * np.std(gains, ddof=1) / np.sqrt(3)
    )
    assert "agrees with the labels on 50.0%" in text and "+14.0 pp ahead" in text
    assert "At T=2" in text and "2.0x the steps" in text
