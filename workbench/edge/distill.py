"""Knowledge distillation: a small edge student taught by the cloud model, measured fairly.

The student learns from a mix of the labels and the teacher's softened answers
(Hinton, Vinyals and Dean, 2015):

    loss = alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T)

where ``_T`` is the softmax of the logits divided by the temperature ``T``.

- :func:`distill` runs the teacher (inference mode) on **exactly the batch the student sees**,
  after the same augmentation, at every step: a random flip or shift changes the right soft
  answer, so teacher outputs computed once on un-augmented images would teach the student the
  wrong image's answer. Nothing is cached for that reason; the teacher's forward pass is the
  price (:func:`compare` reports it). Work is counted in optimizer steps, so a larger dataset
  does not multiply the time. ``alpha=1`` skips the teacher and is, step for step, the
  labels-only training ``model.fit`` would do with the same seed, data order, augmentation and
  optimizer: the baseline.
- :func:`compare` trains a labels-only and a distilled student per seed with identical budgets,
  picks the temperature and alpha on the validation split, and reports the gain on the test set
  as mean +- sd over seeds.
- :func:`teacher_diagnostics` gives the numbers that explain a gain or a loss: how often the
  teacher agrees with the labels, how confident and how well calibrated it is, and how much
  its softened targets say beyond the top class.

The models output probabilities (a softmax), not logits. For ``p = softmax(z)``,
``log p = z - logsumexp(z)``: the log-probabilities are the logits shifted by one constant
per image, and a softmax ignores such a shift, so ``softmax(log p / T) = softmax(z / T)``.
The log is taken of probabilities floored at :data:`LOG_FLOOR` (far below anything a float32
softmax gives a class that matters), so a class whose probability underflowed to 0 stays finite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench.data.pipeline import DEFAULT_INPUT_SCALE

LOG_FLOOR = 1e-30  # probabilities are floored here before the log (float32 keeps 1e-38)
LABELS_ONLY, DISTILLED = "labels only", "distilled"


# ---------------------------------------------------------------- the loss


def softened_log_probs(probs, temperature: float):
    """``log softmax(log p / T)``, which equals ``log softmax(z / T)`` for ``p = softmax(z)``."""
    import tensorflow as tf

    log_p = tf.math.log(tf.maximum(tf.cast(probs, tf.float32), LOG_FLOOR))
    return tf.nn.log_softmax(log_p / temperature, axis=-1)


def kl_term(teacher_probs, student_probs, temperature: float):
    """Mean over the batch of ``KL(teacher_T || student_T)`` (nats, without the T^2 factor)."""
    import tensorflow as tf

    log_t = softened_log_probs(teacher_probs, temperature)
    log_s = softened_log_probs(student_probs, temperature)
    return tf.reduce_mean(tf.reduce_sum(tf.exp(log_t) * (log_t - log_s), axis=-1))


def distillation_loss(y, student_probs, teacher_probs, *, temperature: float, alpha: float):
    """``alpha * CE(y, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T)``, batch mean.

    The T^2 factor keeps the soft term's gradients on the scale of the hard term's as T
    changes (the gradient of the softened KL with respect to the logits shrinks as 1/T^2).
    With ``alpha=1`` the teacher is not used (``teacher_probs`` may be None).
    """
    import tf_keras as keras

    _check_weights(temperature, alpha)
    ce = keras.losses.SparseCategoricalCrossentropy()(y, student_probs)
    if alpha == 1.0:
        return ce
    kl = kl_term(teacher_probs, student_probs, temperature)
    return alpha * ce + (1.0 - alpha) * temperature**2 * kl


# ---------------------------------------------------------------- training


def distill(
    student,
    teacher,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    steps: int,
    batch_size: int = 64,
    temperature: float = 2.0,
    alpha: float = 0.5,
    learning_rate: float = 3e-3,
    input_scale: float | None = DEFAULT_INPUT_SCALE,
    augment: bool = True,
    seed: int = 0,
    progress: bool = True,
):
    """Train ``student`` for ``steps`` optimizer steps on labels and the teacher's soft answers.

    Each step draws a batch from :func:`workbench.data.pipeline.make_dataset` (seeded shuffling, and
    with ``augment`` random flips and shifts), runs the teacher in inference mode on that very
    batch, and takes one Adam step on :func:`distillation_loss`. The learning rate decays to
    zero over ``steps`` (cosine), as ``train.fit(lr_schedule="cosine")`` does over its epochs.

    Args:
        student: a tf-keras model outputting class probabilities; trained in place.
        teacher: a tf-keras model outputting probabilities over the same classes, run with
            ``training=False`` and never updated; may be None when ``alpha=1``.
        x_train, y_train: images (N, H, W, C) in their stored units, any size and channel
            count, and integer labels (N,).
        steps: optimizer steps (batches), the unit of work; not epochs.
        batch_size: images per step.
        temperature: T > 0 softening both models' answers in the KL term.
        alpha: weight of the labels in [0, 1]; 1 trains on labels alone (the baseline),
            0 on the teacher alone.
        learning_rate: Adam's initial learning rate.
        input_scale: both models receive ``pixels * input_scale`` (CIFAR-10 models: 1/255);
            ``None``: the stored values.
        augment: random flips and shifts, the same view for teacher and student.
        seed: weights-independent randomness: data order, augmentation, dropout.
        progress: show a progress bar.

    Returns:
        ``(student, seconds)``: the trained student (compiled, ready for ``evaluate``) and the
        wall time of the training loop, the teacher's forward passes included.

    Raises:
        ValueError: a bad argument, or teacher, student and data that do not fit together;
            the message says which and what to do.
    """
    import tensorflow as tf
    import tf_keras as keras

    from workbench.core.progressbar import ProgressBar
    from workbench.data import pipeline

    _check_arguments(student, teacher, x_train, y_train, steps, batch_size, temperature, alpha)
    use_teacher = alpha < 1.0
    keras.utils.set_random_seed(seed)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps))
    student.compile(
        optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    data = pipeline.make_dataset(
        x_train,
        y_train,
        batch_size=batch_size,
        training=True,
        augment=augment,
        seed=seed,
        input_scale=input_scale,
    )

    @tf.function(reduce_retracing=True)
    def step(x, y):
        soft = teacher(x, training=False) if use_teacher else None
        with tf.GradientTape() as tape:
            p = student(x, training=True)
            loss = distillation_loss(y, p, soft, temperature=temperature, alpha=alpha)
            if student.losses:  # weight regularizers, as model.fit adds them
                loss += tf.add_n(student.losses)
        grads = tape.gradient(loss, student.trainable_variables)
        optimizer.apply_gradients(zip(grads, student.trainable_variables, strict=True))
        return loss

    desc = DISTILLED if use_teacher else LABELS_ONLY
    bar = ProgressBar(steps, f"{desc} (seed {seed})", unit="step", mode=None if progress else "off")
    start = time.perf_counter()
    for i, (x, y) in enumerate(data.repeat().take(steps)):
        loss = step(x, y)
        bar.update(1)
        if progress and (i % 50 == 0 or i == steps - 1):
            bar.update(0, loss=float(loss))
    seconds = time.perf_counter() - start
    bar.close()
    return student, seconds


def _check_weights(temperature: float, alpha: float) -> None:
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(
            f"alpha={alpha!r} is outside [0, 1]: it is the weight of the labels in the "
            "distillation loss (1: labels only, the baseline; 0: the teacher only)."
        )
    if not float(temperature) > 0.0:
        raise ValueError(
            f"temperature={temperature!r} must be > 0: the teacher's and student's log-"
            "probabilities are divided by it (1: unchanged; 2-4: the usual softening)."
        )


def _classes(model, role: str) -> int:
    shape = getattr(model, "output_shape", None)
    if not isinstance(shape, tuple) or len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"the {role} must be a Keras model with one output of shape (batch, classes); "
            f"{getattr(model, 'name', type(model).__name__)!r} has output shape {shape}."
        )
    return int(shape[-1])


def _check_arguments(student, teacher, x, y, steps, batch_size, temperature, alpha) -> None:
    _check_weights(temperature, alpha)
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive whole number of optimizer steps.")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive whole number.")
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"x_train must be images (N, H, W, C) and y_train N integer labels; got "
            f"x_train {x.shape} and y_train {y.shape}."
        )
    n_student = _classes(student, "student")
    if y.min() < 0 or y.max() >= n_student:
        raise ValueError(
            f"y_train holds labels {int(y.min())}..{int(y.max())}, but the student "
            f"{student.name!r} has {n_student} outputs: labels must be 0..{n_student - 1}."
        )
    _check_input(student, x, "student")
    if alpha < 1.0:
        if teacher is None:
            raise ValueError(
                f"alpha={alpha} uses the teacher's answers, but teacher is None: pass the "
                "teacher model, or alpha=1 for the labels-only baseline."
            )
        n_teacher = _classes(teacher, "teacher")
        if n_teacher != n_student:
            raise ValueError(
                f"the teacher {teacher.name!r} has {n_teacher} classes and the student "
                f"{student.name!r} {n_student}: distillation needs the same classes in the "
                "same order. Build the student with the teacher's number of outputs."
            )
        _check_input(teacher, x, "teacher")


def _check_input(model, x: np.ndarray, role: str) -> None:
    want = tuple(model.input_shape[1:])
    got = tuple(x.shape[1:])
    if len(want) != len(got) or any(
        w is not None and w != g for w, g in zip(want, got, strict=True)
    ):
        raise ValueError(
            f"the {role} {model.name!r} takes images of shape {want}, but x_train holds "
            f"{got}: resize the images or build the {role} for this shape."
        )


# ---------------------------------------------------------------- comparison over seeds


def compare(
    teacher,
    build_student: Callable[[], object],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int,
    batch_size: int = 64,
    temperatures: Sequence[float] = (2.0,),
    alphas: Sequence[float] = (0.5,),
    learning_rate: float = 3e-3,
    input_scale: float | None = DEFAULT_INPUT_SCALE,
    augment: bool = True,
    progress: bool = True,
) -> dict:
    """Labels-only against distilled students, per seed, with identical budgets.

    For every seed one labels-only student (``alpha=1``) and one distilled student per
    (temperature, alpha) candidate are trained from the same initial weights, on the same
    data order and augmentation, for the same ``steps``. The candidate with the best mean
    validation accuracy is chosen; only the chosen one and the baseline are evaluated on the
    test set. (With several candidates the chosen one's validation gain is biased upwards by
    the choice; its test gain is not.)

    Args:
        teacher: the cloud model (tf-keras, probabilities).
        build_student: returns a fresh, untrained student (e.g.
            ``lambda: models.student_cnn(width=16)``).
        x_train, y_train: what the students train on.
        x_val, y_val: held out from training; chooses temperature and alpha.
        x_test, y_test: reported only.
        seeds: one labels-only and one distilled student per seed (at least 2 for an sd).
        steps: optimizer steps per student.
        temperatures, alphas: the candidates (every pair, alpha < 1).

    Returns:
        A dict: ``seeds, steps, batch_size, train_images, teacher`` (its validation and test
        accuracy), ``accuracy`` (per student kind, mean validation and test accuracy),
        ``candidates`` (temperature, alpha, validation accuracies per seed and their mean),
        ``chosen`` (temperature and alpha), ``runs`` (one row per trained student: seed,
        student, temperature, alpha, val_accuracy, test_accuracy (None for candidates not
        chosen), seconds), ``gain_test_pp`` and ``gain_val_pp`` (distilled minus labels only,
        in points: ``per_seed``, ``mean``, ``sd``), ``seconds`` (mean per student kind, and
        the teacher's share of a distilled run), and ``models`` (``{"labels only": [...],
        "distilled": [...]}``, one per seed, the chosen candidate's).
    """
    import tf_keras as keras

    from workbench.core import metrics

    grid = [(float(t), float(a)) for t in temperatures for a in alphas]
    if not grid or any(a >= 1.0 for _, a in grid):
        raise ValueError(
            f"alphas {list(alphas)} must be non-empty and below 1: alpha=1 is the labels-only "
            "baseline, which compare() always trains."
        )
    for t, a in grid:
        _check_weights(t, a)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} must be distinct and at least one (3 or more for a sd).")

    def accuracy(model, x, y) -> float:
        return metrics.accuracy(_probabilities(model, x, input_scale), y)

    common = dict(
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        input_scale=input_scale,
        augment=augment,
        progress=progress,
    )
    runs, kept = [], {}
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        initial = build_student().get_weights()
        for t, a in [(None, 1.0), *grid]:
            student = build_student()
            student.set_weights(initial)  # the same start for every student of this seed
            student, seconds = distill(
                student,
                teacher,
                x_train,
                y_train,
                temperature=t or 1.0,
                alpha=a,
                seed=seed,
                **common,
            )
            kind = LABELS_ONLY if a == 1.0 else DISTILLED
            runs.append(
                {
                    "seed": seed,
                    "student": kind,
                    "temperature": t,
                    "alpha": a,
                    "val_accuracy": accuracy(student, x_val, y_val),
                    "test_accuracy": None,
                    "seconds": seconds,
                }
            )
            kept[(seed, t, a)] = student

    candidates = []
    for t, a in grid:
        val = [r["val_accuracy"] for r in runs if (r["temperature"], r["alpha"]) == (t, a)]
        candidates.append(
            {"temperature": t, "alpha": a, "val_per_seed": val, "val_mean": float(np.mean(val))}
        )
    best = max(candidates, key=lambda c: c["val_mean"])
    chosen = (best["temperature"], best["alpha"])

    models_out: dict[str, list] = {LABELS_ONLY: [], DISTILLED: []}
    for r in runs:
        key = (r["temperature"], r["alpha"])
        if key == (None, 1.0) or key == chosen:
            model = kept[(r["seed"], *key)]
            r["test_accuracy"] = accuracy(model, x_test, y_test)
            models_out[r["student"]].append(model)

    def by_seed(kind: str, metric: str) -> np.ndarray:
        rows = [r for r in runs if r["student"] == kind]
        if kind == DISTILLED:
            rows = [r for r in rows if (r["temperature"], r["alpha"]) == chosen]
        return np.array([r[metric] for r in sorted(rows, key=lambda r: r["seed"])])

    labels_s = by_seed(LABELS_ONLY, "seconds")
    distilled_s = by_seed(DISTILLED, "seconds")
    return {
        "seeds": seeds,
        "steps": int(steps),
        "batch_size": int(batch_size),
        "train_images": int(len(x_train)),
        "accuracy": {
            kind: {
                "val_mean": float(by_seed(kind, "val_accuracy").mean()),
                "test_mean": float(by_seed(kind, "test_accuracy").mean()),
            }
            for kind in (LABELS_ONLY, DISTILLED)
        },
        "teacher": {
            "val_accuracy": accuracy(teacher, x_val, y_val),
            "test_accuracy": accuracy(teacher, x_test, y_test),
        },
        "candidates": candidates,
        "chosen": {"temperature": chosen[0], "alpha": chosen[1]},
        "runs": runs,
        "gain_test_pp": mean_sd(
            100 * (by_seed(DISTILLED, "test_accuracy") - by_seed(LABELS_ONLY, "test_accuracy"))
        ),
        "gain_val_pp": mean_sd(
            100 * (by_seed(DISTILLED, "val_accuracy") - by_seed(LABELS_ONLY, "val_accuracy"))
        ),
        "seconds": {
            LABELS_ONLY: float(labels_s.mean()),
            DISTILLED: float(distilled_s.mean()),
            "teacher_share": float(1.0 - labels_s.mean() / distilled_s.mean()),
            "total": float(sum(r["seconds"] for r in runs)),
        },
        "models": models_out,
    }


def _probabilities(model, x: np.ndarray, input_scale: float | None, batch: int = 256):
    """Inference-mode outputs, called eagerly: evaluating many fresh students through
    ``model.predict`` would trace a new predict function for each (and TensorFlow warns)."""
    from workbench.models import loading

    return np.concatenate(
        [
            np.asarray(model(loading.scale_inputs(x[i : i + batch], input_scale), training=False))
            for i in range(0, len(x), batch)
        ]
    )


def mean_sd(values) -> dict:
    """``per_seed`` values, their ``mean`` and sample standard deviation ``sd`` (ddof=1)."""
    v = np.asarray(values, dtype=float)
    return {
        "per_seed": [float(x) for x in v],
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
    }


# ---------------------------------------------------------------- why a gain, or a loss


def teacher_diagnostics(
    teacher_probs: np.ndarray,
    y: np.ndarray,
    *,
    temperatures: Sequence[float] = (1.0, 2.0, 4.0),
    bins: int = 10,
) -> dict:
    """What the teacher's answers can teach, on images with labels ``y``.

    Returns:
        ``accuracy`` (agreement with the labels), ``mean_confidence`` (top probability),
        ``ece`` (expected calibration error over ``bins`` confidence bins: the gap between
        confidence and accuracy, weighted by the share of images in each bin), and per
        temperature: ``entropy_bits`` of the softened answer (log2(classes) is uniform),
        ``top_mass`` (probability left on the top class) and ``true_class_mass_when_wrong``
        (how much the softened answer still puts on the right class when the top one is wrong:
        the "dark knowledge" that can help even where the teacher errs).
    """
    p = np.asarray(teacher_probs, dtype=np.float64)
    y = np.asarray(y)
    top, pred = p.max(1), p.argmax(1)
    correct = pred == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(top, edges[1:-1]), 0, bins - 1)
    ece = sum(
        np.mean(which == b) * abs(top[which == b].mean() - correct[which == b].mean())
        for b in range(bins)
        if np.any(which == b)
    )
    per_t = {}
    for t in temperatures:
        z = np.log(np.maximum(p, LOG_FLOOR)) / t
        q = np.exp(z - z.max(1, keepdims=True))
        q /= q.sum(1, keepdims=True)
        entropy = -(q * np.log2(np.maximum(q, LOG_FLOOR))).sum(1)
        wrong = ~correct
        per_t[float(t)] = {
            "entropy_bits": float(entropy.mean()),
            "top_mass": float(q.max(1).mean()),
            "true_class_mass_when_wrong": (
                float(q[wrong, y[wrong]].mean()) if wrong.any() else float("nan")
            ),
        }
    return {
        "images": int(len(y)),
        "accuracy": float(correct.mean()),
        "mean_confidence": float(top.mean()),
        "ece": float(ece),
        "max_entropy_bits": float(np.log2(p.shape[1])),
        "temperatures": per_t,
    }


# ---------------------------------------------------------------- the verdict, in words


# Two-sided 95% quantiles of Student's t by degrees of freedom (seeds - 1); 1.96 beyond.
T_975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def confidence_interval(gain: dict) -> tuple[float, float]:
    """95% confidence interval of the mean of paired per-seed gains (Student's t)."""
    n = len(gain["per_seed"])
    if n < 2:
        return float("-inf"), float("inf")
    half = T_975.get(n - 1, 1.96) * gain["sd"] / np.sqrt(n)
    return gain["mean"] - half, gain["mean"] + half


def explain(result: dict, diagnostics: dict) -> str:
    """A short Markdown verdict on a :func:`compare` result, with the numbers that explain it.

    Args:
        result: what :func:`compare` returned.
        diagnostics: :func:`teacher_diagnostics` of the teacher on the students' training
            images (stored, un-augmented) and their labels.

    The verdict rests on the 95% confidence interval of the mean paired gain over seeds
    (:func:`confidence_interval`): a gain whose interval holds zero is reported as noise,
    whatever its sign. With 3 seeds the interval is +-4.3 standard errors wide.
    """
    gain, n = result["gain_test_pp"], len(result["gain_test_pp"]["per_seed"])
    lo, hi = confidence_interval(gain)
    teacher = 100 * result["teacher"]["test_accuracy"]
    labels = 100 * result["accuracy"][LABELS_ONLY]["test_mean"]
    distilled = 100 * result["accuracy"][DISTILLED]["test_mean"]
    t, alpha = result["chosen"]["temperature"], result["chosen"]["alpha"]
    if n < 2:
        verdict = "one seed cannot tell a gain from noise"
    elif lo > 0:
        verdict = f"**distillation helps** (95% interval of the mean {lo:+.2f} to {hi:+.2f} pp)"
    elif hi < 0:
        verdict = f"**distillation hurts** (95% interval of the mean {lo:+.2f} to {hi:+.2f} pp)"
    else:
        verdict = (
            "**no gain the seeds can tell from noise**: the 95% interval of the mean, "
            f"{lo:+.2f} to {hi:+.2f} pp, holds zero"
        )
    lines = [
        f"**Distillation, measured.** Over {n} seeds the distilled student (T={t:g}, "
        f"alpha={alpha:g}, chosen on the validation images) reaches {distilled:.1f}% on the test "
        f"images and the labels-only student {labels:.1f}%, with the same steps, initial weights "
        f"and augmented images: {gain['mean']:+.2f} ± {gain['sd']:.2f} pp (per seed: "
        f"{', '.join(f'{g:+.2f}' for g in gain['per_seed'])}); {verdict}. The teacher reaches "
        f"{teacher:.1f}%.",
        "",
        "What the numbers say about why:",
        *_reasons(result, diagnostics, teacher - labels),
    ]
    return "\n".join(lines)


def _reasons(result: dict, diagnostics: dict, margin_pp: float) -> list[str]:
    t = result["chosen"]["temperature"]
    agree = 100 * diagnostics["accuracy"]
    confidence, ece = diagnostics["mean_confidence"], 100 * diagnostics["ece"]
    epochs = result["steps"] * result["batch_size"] / max(1, result["train_images"])
    secs = result["seconds"]
    if margin_pp >= 10:
        lead = (
            "there is knowledge to pass on, so what limits the gain is on the student's side: "
            "its capacity and its training budget"
        )
    else:
        lead = "there is little the teacher knows that the labels do not already teach"
    out = [
        f"- *Teacher against student*: the teacher is {margin_pp:+.1f} pp ahead of the "
        f"labels-only student; {lead}.",
        f"- *Teacher against the labels*: on the students' own training images the teacher "
        f"agrees with the labels on {agree:.1f}%. On the other {100 - agree:.1f}% its top "
        f"answer is wrong, and the soft term ({1 - result['chosen']['alpha']:.0%} of the loss) "
        "pulls the student towards it.",
    ]
    if confidence > 0.9:
        soft = "over-confident: its answers are nearly one-hot, and a temperature is needed"
    elif ece <= 5:
        soft = "well calibrated and not over-confident: its answers are soft already at T=1"
    else:
        soft = f"miscalibrated by {ece:.1f} pp"
    out.append(
        f"- *How soft its answers are*: mean top probability {confidence:.2f}, calibration "
        f"error {ece:.1f} pp: {soft}."
    )
    per_t = diagnostics["temperatures"].get(float(t))
    if per_t is not None:
        out.append(
            f"- *At T={t:g}* the softened answers carry {per_t['entropy_bits']:.2f} bits "
            f"(uniform: {diagnostics['max_entropy_bits']:.2f}); the top class keeps "
            f"{per_t['top_mass']:.2f} of the mass, and where the teacher is wrong the right "
            f"class still gets {per_t['true_class_mass_when_wrong']:.2f}."
        )
    out.append(
        f"- *Budget*: {result['steps']:,} steps of {result['batch_size']} images, "
        f"{epochs:.1f} passes over {result['train_images']:,} images per student. Running the "
        f"teacher on every batch took {100 * secs['teacher_share']:.0f}% of a distilled "
        f"student's time ({secs[DISTILLED]:.0f} s against {secs[LABELS_ONLY]:.0f} s): in the "
        "same wall time the labels-only student could take "
        f"{secs[DISTILLED] / secs[LABELS_ONLY]:.1f}x the steps."
    )
    return out
