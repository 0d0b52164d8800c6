"""A time budget for the whole flow: what ``make run`` will do, and how long it should take here.

Notebook 02 trains, notebook 03 fine-tunes and converts, 04 serves, 05 trains students: the
work differs in kind, so each is priced at its own measured rate. Before any notebook starts,
:func:`make_plan` combines

- **the work each notebook is asked to do**: its parameters in the chosen profile (training
  images, fine-tuning steps, variants, requests...) and the dataset's image counts, read from
  the file's headers without decoding anything (:func:`data_counts`). Each notebook's work is
  described by a :class:`WorkModel` in :data:`MODELS`, which names the parameters it reads;
- **this machine's throughput now**: :func:`probe` measures it in a fresh process, in a few
  seconds: training images/s of the seed, improved and student CNNs at their batch sizes
  (after warm-up), the first training step (graph tracing: what every fine-tuning set-up
  pays), Keras and LiteRT inference, one TFLite conversion and TensorFlow's import; the
  fixed costs measured once on the development machine (:data:`FIXED_S` and the other
  constants below) are scaled by how much slower than then the machine is now
  (:attr:`Rates.slowdown`);

into one :class:`Estimate` per notebook: seconds, with the terms that make them. When
``runs.json`` holds an earlier run of the notebook on this machine with its work recorded
(and that work is within :data:`MAX_WORK_RATIO` of today's), the estimate is that run's
measured time scaled by the work ratio instead, and says so.

:class:`Progress` then shows the run: one line that updates every second on a terminal (a
line every 30 s into a log file), with the notebook, its elapsed time against its estimate
and the whole run's ETA. After each notebook, the remaining estimates are rescaled by how far
off the finished ones were.

``python -m workbench.plan`` runs the probe and prints its JSON (what :func:`probe` reads).
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

# ===================================================================== constants

# Every constant below was measured on this project's development machine (AMD EPYC, 2 cores,
# AVX2 without VNNI; shared with other engineers: load average 4-9 on its 2 cores), on
# 2026-11-23, from smoke-profile runs of each notebook with `python -m workbench run` in scratch
# folders, each preceded by this module's probe, and papermill's per-cell durations in the
# executed notebooks. They are in seconds as they were while the probe measured REFERENCE (run
# of 17:58, load average 4.4); at run time they are multiplied by how much slower the machine
# is now (:attr:`Rates.slowdown`), so a slower or busier machine gets longer fixed costs.
REFERENCE = {"first_step_s": 4.7, "import_s": 9.6, "improved_ips": 94.0}
# Per notebook: its measured run time minus the work terms modelled below for that run and
# minus TensorFlow's import (the probe measures it): kernel start, the other imports, figures,
# exports, reports, model loading. 01, 02: run of 17:58; 03: run of 17:39 (slowdown 1.5);
# 04: run of 18:04, less its scoring through the server (21 s, priced per image since
# 2026-12-01); 05 failed in its distillation cell (a notebook being rewritten), so its
# figure is the sum of its cells that are not modelled (import, tables, plots: 17 s) plus
# an allowance of 8 s for the cells after the failure (student int8 conversion, cascades).
FIXED_S = {
    "01-edge-iris-knn": 17.0,
    "02-cloud-cifar10-cnn": 25.0,
    "03-compress-for-the-edge": 27.0,
    "04-edge-vs-cloud": 29.0,
    "05-edge-cloud-collaboration": 25.0,
}
# Per-unit costs the probe does not measure:
KNN_PREDICT_MS = 5.5  # one single-sample KNN prediction: notebook 01's measured p50 (17:58)
EPOCH_S = 0.5  # per epoch in train.fit: checkpoint and state file (02's training cell, 17:58)
# One model server (serving.serving): start (it imports TensorFlow), load, warm up, stop:
# notebook 04's batching cell (two servers, 200 requests: 49-52 s) and its first server (22 s,
# with the SavedModel export), 18:02 and 18:04.
SERVER_START_S = 15.0
REQUEST_MS = 10.0  # one single-image request on loopback (04's load test: p50 20 ms, 4 clients)
# Scoring the test images through the server as JSON (04's compare.score, batches of 64),
# per image: 3.9 ms on an Intel Xeon with AVX-512 for 1,017 and for 10,000 images (2026-12-01,
# where the probe put fixed costs at x0.18 of this machine's), so 21 ms here; it was part
# of 04's fixed cost until a 10,000-image test set made it 39 s.
SERVED_IMAGE_MS = 21.0
CUT_S = 0.5  # per cut point in 05 beyond its conversion: splitting, tracing (05's split cell)
SHAPED_CELL_S = 0.8  # per cell of 04's bandwidth check beyond its transfers (04, 3 s for 4)
# A fine-tuning step with tfmot's wrappers, relative to the probe's plain augmented training
# step of the improved CNN at the same batch size: timed over 14 steps of each after two
# warm-up steps (compress.prune / cluster / quantization_aware / slim.prune_channels through
# compress.fine_tune, batch 64; the plain step before and after them). Pruning and clustering
# fine-tune without augmentation, which is why they are not slower.
STEP_FACTOR = {"prune": 0.8, "cluster": 1.15, "qat": 1.25, "slim": 0.5}
# Setting up one fine-tuned model in notebook 03 (wrapping, cloning, compiling, tracing its
# first step, stripping, predicting its test images), relative to the probe's first training
# step of the plain improved CNN: notebook 03's per-variant build_seconds minus its modelled
# steps, conversion and evaluation, in two smoke runs (17:39, load 8-9: prune 6.8, QAT 5.4,
# cluster + PCQAT 28, slim 1.7; 18:14, load 5-6: 3.2-4.7, 4.4-6.4, 7.5-11, 1.4-2.1; the ranges
# are relative to the probe's first step then and to REFERENCE's), rounded between them.
# Cluster + PCQAT is the largest: tracing a model wrapped for both takes long.
SETUP_FACTOR = {"prune": 4.5, "qat": 5.0, "pcqat": 17.0, "slim": 1.7}
# int8 calibration: each sample runs once through TFLite's calibrating interpreter: this
# multiple of a LiteRT float32 single-image inference (mean), from int8 conversions of the
# improved CNN with 50 and 500 samples.
CALIBRATION_PER_LATENCY = 1.4

# The probe trains these at these batch sizes (the notebooks' defaults), augmented as they are.
PROBE_TRAINING = (
    ("improved_cnn", 64, True),
    ("seed_cnn", 32, False),
    ("student_cnn", 64, True),
)
# A recorded run is scaled by the work ratio only within this factor of its work: beyond it,
# fixed costs dominate one run and not the other, and the probe's model is the better guide.
MAX_WORK_RATIO = 3.0
# After each notebook the remaining estimates are multiplied by actual / estimated so far,
# with RESCALE_PRIOR_S of estimated time counted as on target (a short first notebook, mostly
# fixed costs, does not swing the long ones alone), kept within RESCALE_BOUNDS.
RESCALE_PRIOR_S = 60.0
RESCALE_BOUNDS = (0.25, 4.0)
# Progress lines: every second on a terminal, every 30 s when stdout is a file or a pipe.
TERMINAL_INTERVAL_S = 1.0
LOG_INTERVAL_S = 30.0


# ===================================================================== the machine


def machine_id() -> str:
    """What "this machine" means for recorded runs: CPU model, logical cores, usable cores."""
    from workbench import bench

    h = bench.hardware()
    return f"{h['cpu']} | {h['cores']} cores | affinity {h.get('cpu_affinity', '?')}"


@dataclass(frozen=True)
class Rates:
    """This machine's throughput, as :func:`probe` measured it (or a test gives it)."""

    train_ips: dict[str, float]  # training images/s per architecture (PROBE_TRAINING)
    first_step_s: dict[str, float]  # first training step per architecture: tracing, set-up
    predict_ips: float  # Keras inference of the improved CNN, images/s (batches of 256)
    tflite_ms: float  # LiteRT float32 improved CNN, ms per image in batches of 64, 1 thread
    latency_ms: float  # LiteRT float32 improved CNN, single image, 1 thread: the mean (wall time)
    convert_s: float  # one float32 TFLite conversion of the improved CNN
    import_s: float  # importing TensorFlow and tf_keras in a fresh process
    probe_s: float = 0.0  # how long the probe took, its process start included

    @property
    def slowdown(self) -> float:
        """Fixed costs' multiplier: how much slower this machine is now than when they were
        measured. The median of three ratios to :data:`REFERENCE`: the improved CNN's first
        training step (tracing, graph building: the kind of work fixed costs are made of),
        TensorFlow's import, and the improved CNN's training time per image (one odd
        measurement, e.g. a burst of load during the probe, does not decide alone)."""
        ratios = sorted(
            [
                self.first_step_s["improved_cnn"] / REFERENCE["first_step_s"],
                self.import_s / REFERENCE["import_s"],
                REFERENCE["improved_ips"] / self.train_ips["improved_cnn"],
            ]
        )
        return ratios[1]

    def describe(self) -> str:
        ips = ", ".join(f"{a} {v:,.0f}" for a, v in self.train_ips.items())
        return (
            f"training images/s: {ips}; Keras inference {self.predict_ips:,.0f} images/s; "
            f"LiteRT {self.tflite_ms:.2f} ms/image (single image {self.latency_ms:.2f} ms); "
            f"TFLite conversion {self.convert_s:.1f} s; TensorFlow import {self.import_s:.1f} s; "
            f"first training step {self.first_step_s['improved_cnn']:.1f} s; fixed costs "
            f"x{self.slowdown:.2f}"
        )


def probe(timeout_s: float = 300.0) -> Rates:
    """Measure this machine's throughput now, in a fresh Python process (its memory is freed
    when it exits, and its TensorFlow import is timed as a notebook kernel's would be).

    Raises:
        ProbeError: the probe process failed or timed out; the message says why.
    """
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "workbench.plan"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    except subprocess.TimeoutExpired:
        raise ProbeError(f"the throughput probe took more than {timeout_s:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProbeError(f"the throughput probe failed (exit {done.returncode}: {tail})")
    try:
        values = json.loads(lines[-1])
        values["probe_s"] = time.perf_counter() - start
        return Rates(**values)
    except (json.JSONDecodeError, TypeError) as err:
        raise ProbeError(f"the throughput probe answered {lines[-1][:200]!r} ({err})") from None


class ProbeError(RuntimeError):
    """The throughput probe could not run; the plan goes on without estimates from it."""


def _measure() -> dict:
    """The probe itself (run by ``python -m workbench.plan``). On the 2-core development
    machine it took 21 s at a load average of 1, 35 s at 5 and 70-85 s at 8-9, process start
    and TensorFlow's import included."""
    t = time.perf_counter()  # the package (this module's parent) already chose Keras 2
    import tensorflow as tf  # noqa: F401
    import tf_keras  # noqa: F401

    import_s = time.perf_counter() - t
    import numpy as np

    from workbench import compress, edge, models

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1024, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 1024)
    train_ips, first_step = {}, {}
    improved = None
    for arch, batch, augment in PROBE_TRAINING:
        model = models.build(arch)
        train_ips[arch], first_step[arch] = _training_rate(model, x, y, batch, augment)
        if arch == "improved_cnn":
            improved = model
    scaled = (x[:320] / 255.0).astype(np.float32)
    improved.predict(scaled[:64], batch_size=256, verbose=0)  # traces the predict function
    t = time.perf_counter()
    improved.predict(scaled[:256], batch_size=256, verbose=0)
    predict_ips = 256 / (time.perf_counter() - t)
    t = time.perf_counter()
    blob = compress.to_tflite(improved, "float32", input_scale=1 / 255)
    convert_s = time.perf_counter() - t
    lite = edge.EdgeModel(blob, num_threads=1)
    lite.predict(scaled[:64])
    batches = []
    for i in range(0, 320, 64):  # the median batch: a burst of load in one does not count
        t = time.perf_counter()
        lite.predict(scaled[i : i + 64])
        batches.append((time.perf_counter() - t) * 1e3 / 64)
    tflite_ms = sorted(batches)[len(batches) // 2]
    latency = lite.benchmark(scaled[:1], warmup=5, repeats=50, max_seconds=1.0)
    return {
        "train_ips": train_ips,
        "first_step_s": first_step,
        "predict_ips": predict_ips,
        "tflite_ms": tflite_ms,
        "latency_ms": latency.mean_ms,
        "convert_s": convert_s,
        "import_s": import_s,
    }


def _training_rate(model, x, y, batch: int, augment: bool, seconds: float = 1.0):
    """(images/s after warm-up, seconds of the first step) of ``model.fit`` as train.fit runs
    it: Adam, the same tf.data pipeline. Timed for ``seconds`` (at least 3 steps)."""
    import tf_keras as keras

    from workbench import train

    class Clock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())
            timed = self.times[2:]  # the first step traces, the second still warms up
            if len(timed) >= 4 and timed[-1] - timed[0] >= seconds:
                self.model.stop_training = True

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    ds = train.make_dataset(x, y, batch_size=batch, training=True, augment=augment).repeat()
    clock = Clock()
    start = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=1000, callbacks=[clock], verbose=0)
    timed = clock.times[2:]
    return (len(timed) - 1) * batch / (timed[-1] - timed[0]), clock.times[0] - start


# ===================================================================== the data


@dataclass(frozen=True)
class DataCounts:
    """How many images a dataset holds, and how that was found out."""

    source: str  # where it is, in words (data.locate_cifar10's answer)
    n_train: int | None
    n_test: int | None
    how: str  # "read from the .npz headers", ...

    def describe(self) -> str:
        if self.n_train is None:
            return f"data: {self.source}\n      image counts unknown ({self.how})"
        return (
            f"data: {self.source}\n      {self.n_train:,} training and {self.n_test:,} test "
            f"images ({self.how})"
        )


def data_counts(value: str | None) -> DataCounts:
    """The image counts of the dataset a notebook's data parameter names (``None``: CIFAR-10
    from ``$WORKBENCH_CIFAR10``, the cache or the archive), without decoding any image.

    Raises:
        workbench.data.DatasetError: nothing usable there (as the runner's data check).
    """
    from workbench import data, paths

    source = data.locate_cifar10(value, download=False)
    path = Path(value) if value is not None else None
    if path is None and os.environ.get(data.ENV_VAR):
        path = Path(os.environ[data.ENV_VAR])
    if path is None:
        cached = paths.datasets_dir() / data.CACHE_NAME
        path = cached if cached.exists() else paths.datasets_dir() / data.ARCHIVE_NAME
    official = (data.CIFAR10_TRAIN_IMAGES, data.CIFAR10_TEST_IMAGES)
    try:
        if path.suffix == ".npz":
            return DataCounts(source, *_npz_counts(path), "read from the .npz headers")
        if path.name.endswith((".tar.gz", ".tgz")) or (path / "data_batch_1").exists():
            return DataCounts(source, *official, "the official CIFAR-10")
        if (path / "cifar-10-batches-py").is_dir():
            return DataCounts(source, *official, "the official CIFAR-10")
        if path.is_dir():
            return DataCounts(source, *_folder_counts(path))
    except (OSError, ValueError, KeyError) as err:
        return DataCounts(source, None, None, f"could not read {path}: {err}")
    return DataCounts(source, None, None, f"unknown kind of file: {path}")


def _npz_counts(path: Path) -> tuple[int, int]:
    """Lengths of ``y_train`` and ``y_test`` from their ``.npy`` headers inside the zip."""
    import zipfile

    import numpy as np

    counts = []
    with zipfile.ZipFile(path) as archive:
        for name in ("y_train", "y_test"):
            with archive.open(f"{name}.npy") as f:
                version = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape = read(f)[0]
            counts.append(int(shape[0]))
    return counts[0], counts[1]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _folder_counts(folder: Path) -> tuple[int, int, str]:
    """Image files under a folder of class folders: ``train/`` and ``test/``, or all of them
    split 80/20 (as data.load_image_dataset does)."""

    def images(root: Path) -> int:
        return sum(1 for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)

    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return images(folder / "train"), images(folder / "test"), "image files counted"
    total = images(folder)
    n_test = round(0.2 * total)
    return total - n_test, n_test, "image files counted, about 80/20 split"


# ===================================================================== the work


@dataclass(frozen=True)
class Work:
    """One term of a notebook's work: ``quantity`` ``unit`` at the cost named by ``rate``.

    Rates: ``train:<arch>`` (images at the probe's training rate of that architecture),
    ``train:improved_cnn:<technique>`` (images with tfmot's wrappers, :data:`STEP_FACTOR`),
    ``first_step:<arch>[:<technique>]`` (models set up: built, compiled, traced; times
    :data:`SETUP_FACTOR` for a technique), ``predict`` (Keras inference, images), ``tflite``
    (LiteRT, images in batches), ``latency`` (LiteRT single-image runs), ``convert`` (TFLite
    conversions), ``calibrate`` (int8 calibration samples), ``import`` (TensorFlow's import),
    ``wall`` (seconds of waiting, whatever the load), and the constants above scaled by the
    slowdown: ``fixed``, ``knn``, ``epoch``, ``server``, ``request``, ``cut``, ``shaped_cell``.
    """

    label: str
    quantity: float
    unit: str
    rate: str


@dataclass(frozen=True)
class Environment:
    """What a notebook's work depends on besides its parameters."""

    n_train: int | None  # images in the dataset's training split
    n_test: int | None
    shaping: bool = False  # tc tbf works here (notebook 04's bandwidth check runs)
    netem: bool = False  # tc netem works here (notebook 04's delay emulation runs)
    link_rtts_ms: tuple[float, ...] = (20.0, 50.0, 300.0)  # the links notebook 04 emulates
    # notebook 02's training checkpoints found: (architecture, epochs done, images seen)
    checkpoints: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True)
class WorkModel:
    """How one notebook's parameters become work: the names it reads, and the terms."""

    uses: tuple[str, ...]  # parameter names read (each must exist in the notebook)
    terms: Callable[[dict, Environment], list[Work]]
    notes: tuple[str, ...] = ()  # said with every estimate of this notebook
    explain: Callable[[dict, Environment], list[str]] | None = None  # notes for this run


def _cap(total: int | None, n: int | None) -> int:
    if total is None:
        raise ValueError("the dataset's image counts are unknown")
    return total if n is None else min(int(n), total)


def _split(total: int, fraction: float) -> tuple[int, int]:
    """(fit, validation) counts of data.validation_split."""
    n_val = int(round(fraction * total))
    return total - n_val, n_val


def _work_01(p: dict, env: Environment) -> list[Work]:
    return [
        Work("single-sample KNN predictions", p["latency_repeats"] + p["warmup"] + 1, "", "knn"),
        Work("throughput run", p["throughput_seconds"], "s", "wall"),
        Work("fixed", 1, "run", "fixed"),
    ]


def _work_02(p: dict, env: Environment) -> list[Work]:
    from workbench.train import epochs_for

    n_fit, n_val = _split(_cap(env.n_train, p["n_train"]), p["val_fraction"])
    n_test = _cap(env.n_test, p["n_test"])
    # train.fit resumes from a checkpoint of the same run: epochs already done are not trained
    seed_epochs = epochs_for(p["seed_images"], n_fit) - _done("seed_cnn", n_fit, p, env)
    improved_epochs = epochs_for(p["improved_images"], n_fit) - _done("improved_cnn", n_fit, p, env)
    epochs = seed_epochs + improved_epochs
    return [
        Work("improved CNN training", improved_epochs * n_fit, "images", "train:improved_cnn"),
        Work("seed CNN training", seed_epochs * n_fit, "images", "train:seed_cnn"),
        # validation after every epoch; both models on the test images; the reload check
        Work("inference", epochs * n_val + 2 * n_test + 64, "images", "predict"),
        Work("epochs (checkpoint each)", epochs, "epochs", "epoch"),
        Work("training set-ups", 3, "fits", "first_step:improved_cnn"),  # seed, improved, resume
        Work("TensorFlow import", 1, "", "import"),
        Work("fixed", 1, "run", "fixed"),
    ]


def _done(arch: str, n_fit: int, p: dict, env: Environment) -> int:
    """Epochs of ``arch`` a checkpoint already holds for this training (same images per epoch,
    no more epochs than planned): probably the same run, which train.fit resumes."""
    from workbench.train import epochs_for

    planned = epochs_for(p[f"{arch.split('_')[0]}_images"], n_fit)
    found = [
        e for a, e, seen in env.checkpoints if a == arch and seen == e * n_fit <= planned * n_fit
    ]
    return max(found, default=0)


def _batch_note(arch: str, batch: int) -> list[str]:
    """A warning when a notebook trains ``arch`` at another batch size than the probe did."""
    probed = next(b for a, b, _ in PROBE_TRAINING if a == arch)
    if batch == probed:
        return []
    return [f"the probe trained {arch} at batch {probed}, this run uses {batch}: its rate differs"]


def _notes_02(p: dict, env: Environment) -> list[str]:
    return (
        _batch_note("seed_cnn", p["seed_batch_size"])
        + _batch_note("improved_cnn", p["improved_batch_size"])
        + _resumed_02(p, env)
    )


def _resumed_02(p: dict, env: Environment) -> list[str]:
    from workbench.train import epochs_for

    n_fit, _ = _split(_cap(env.n_train, p["n_train"]), p["val_fraction"])
    done = {a: _done(a, n_fit, p, env) for a in ("seed_cnn", "improved_cnn")}
    if not any(done.values()):
        return []
    found = ", ".join(
        f"{a} {e} of {epochs_for(p[a.split('_')[0] + '_images'], n_fit)} epochs"
        for a, e in done.items()
        if e
    )
    return [
        f"checkpoints in artifacts/cloud/checkpoints hold {found} for {n_fit:,} images per "
        "epoch: counted as done (train.fit resumes its own run; if these are another run's, "
        "the training takes longer)"
    ]


def find_checkpoints() -> tuple[tuple[str, int, int], ...]:
    """Notebook 02's training checkpoints (``artifacts/cloud/checkpoints/<arch>-<run>/``):
    architecture, epochs done and images seen, from each ``state.json``."""
    from workbench import paths

    found = []
    for state in sorted(paths.cloud_dir().glob("checkpoints/*/state.json")):
        try:
            doc = json.loads(state.read_text())
            found.append((str(doc["architecture"]), int(doc["epoch"]), int(doc["images_seen"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: train.fit will say so itself
    return tuple(found)


def _work_03(p: dict, env: Environment) -> list[Work]:
    from workbench.assess import Settings

    n_fit, n_val = _split(_cap(env.n_train, p["n_train"]), Settings().validation_fraction)
    n_test = _cap(env.n_test, p["n_test"])
    levels, clusters = len(p["sparsities"]), len(p["cluster_counts"])
    fractions, batch = len(p["slim_fractions"]), p["batch_size"]
    # variants.search, every step taken (the ladders may stop early): 4 post-training, QAT,
    # per channel fraction float32, int8 and dynamic-range, the ladder, at the best level
    # pruned float32 + all layers (one more rung) + PQAT + per cluster count PCQAT. The
    # ladder and what follows fine-tune the slim model, counted at the float model's rate
    # (an upper bound: the slim model has fewer MACs per step).
    variants = 4 + 1 + 3 * fractions + levels + 3 + clusters
    int8 = 1 + 1 + fractions + levels + 2 + clusters
    tuned = variants - 4  # fine-tuned variants, each predicted by Keras on the test images
    prune_steps = (levels + 1) * p["prune_steps"]  # the ladder, and the ends pruned too
    improved = "train:improved_cnn"
    return [
        Work("fine-tuning: pruning", prune_steps * batch, "images", f"{improved}:prune"),
        Work(
            "fine-tuning: QAT", (2 + clusters) * p["qat_steps"] * batch, "images", f"{improved}:qat"
        ),
        Work(
            "fine-tuning: clustering",
            clusters * p["cluster_steps"] * batch,
            "images",
            f"{improved}:cluster",
        ),
        Work(
            "fine-tuning: channel pruning",
            fractions * p["slim_steps"] * batch,
            "images",
            f"{improved}:slim",
        ),
        # wrapping, cloning, compiling, tracing, stripping: per fine-tuned model
        Work("set-ups: pruning", levels + 1, "models", "first_step:improved_cnn:prune"),
        Work("set-ups: QAT, PQAT", 2, "models", "first_step:improved_cnn:qat"),
        Work("set-ups: clustering + PCQAT", clusters, "models", "first_step:improved_cnn:pcqat"),
        Work("set-ups: channel pruning", fractions, "models", "first_step:improved_cnn:slim"),
        Work("TFLite conversions", variants, "variants", "convert"),
        Work("int8 calibration", int8 * p["calibration_samples"], "samples", "calibrate"),
        Work("LiteRT evaluation", variants * (n_test + n_val), "images", "tflite"),
        Work("LiteRT latency", variants * (p["latency_repeats"] + 21), "runs", "latency"),
        Work("Keras inference", n_test + n_val + tuned * n_test, "images", "predict"),
        Work("TensorFlow import", 1, "", "import"),
        Work("fixed", 1, "run", "fixed"),
    ]


def _work_04(p: dict, env: Environment) -> list[Work]:
    n_test = _cap(env.n_test, p["n_test"])
    clients = len(p["batching_clients"])
    requests = (
        6 * (p["server_repeats"] + 11)  # every encoding, REST and gRPC, after warm-up
        + p["load_requests"]
        + 2 * (20 + clients * p["batching_requests"])  # without and with batching
        + math.ceil(n_test / p["accuracy_batch"])
    )
    servers = 1 + 2 + (3 if env.netem else 0)
    terms = [
        Work("model-server starts", servers, "starts", "server"),
        Work("requests", requests, "requests", "request"),
        Work("inference (Keras, LiteRT)", 2 * n_test, "images", "tflite"),
        Work("scoring through the server", n_test, "images", "served"),
        Work("LiteRT latency", p["edge_repeats"] + 21, "runs", "latency"),
        Work("edge throughput run", 1, "s", "wall"),
        Work("TensorFlow import", 1, "", "import"),
        Work("fixed", 1, "run", "fixed"),
    ]
    if env.shaping:
        cells = [
            size * 8 / (rate * 1e6)
            for size in p["bandwidth_sizes"]
            for rate in p["bandwidth_rates"]
            if size * 8 / (rate * 1e6) <= 1.0  # network.validate_bandwidth's max_transfer_s
        ]
        terms += [
            Work("shaped-link transfers", 6 * sum(cells), "s", "wall"),  # 2 connections x 3
            Work("shaped-link cells", len(cells), "cells", "shaped_cell"),
        ]
    if env.netem:
        delays = sum(env.link_rtts_ms) / 1e3 * (p["netem_requests"] + 3)
        terms.append(Work("emulated-link round trips", delays, "s", "wall"))
    return terms


def _work_05(p: dict, env: Environment) -> list[Work]:
    from workbench.assess import Settings

    n_fit, n_val = _split(_cap(env.n_train, p["n_train"]), Settings().validation_fraction)
    n_test = _cap(env.n_test, p["n_test"])
    seeds, steps = len(p["distill_seeds"]), p["student_steps"]
    candidates = len(p["temperatures"]) * len(p["alphas"])
    students = seeds * (1 + candidates)  # a labels-only student and each candidate, per seed
    images = steps * 64  # distill.compare's batch size
    return [
        Work("student training", students * images, "images", "train:student_cnn"),
        Work("teacher answers while distilling", seeds * candidates * images, "images", "predict"),
        Work("student set-ups", students, "set-ups", "first_step:student_cnn"),
        # the float model on test + validation, the teacher's diagnostics on the training
        # images, each student on the validation images, two per seed on the test images
        Work(
            "Keras inference",
            n_test + n_val + n_fit + students * n_val + 2 * seeds * n_test,
            "images",
            "predict",
        ),
        Work("cut points profiled", p["max_cuts"], "cuts", "cut"),
        Work("TFLite conversions", p["max_cuts"] + 2, "conversions", "convert"),
        Work(
            "LiteRT latency",
            2 * p["max_cuts"] * (p["profile_repeats"] + 6) + 4 * p["profile_repeats"] + 21,
            "runs",
            "latency",
        ),
        Work("LiteRT inference", 3 * n_test, "images", "tflite"),  # edge, student, split run
        Work("model-server starts", 2, "starts", "server"),
        Work("split requests", math.ceil(n_test / 64) + 8, "requests", "request"),
        Work("TensorFlow import", 1, "", "import"),
        Work("fixed", 1, "run", "fixed"),
    ]


MODELS: dict[str, WorkModel] = {
    "01-edge-iris-knn": WorkModel(("latency_repeats", "warmup", "throughput_seconds"), _work_01),
    "02-cloud-cifar10-cnn": WorkModel(
        (
            "n_train",
            "n_test",
            "val_fraction",
            "seed_images",
            "seed_batch_size",
            "improved_images",
            "improved_batch_size",
        ),
        _work_02,
        explain=_notes_02,
    ),
    "03-compress-for-the-edge": WorkModel(
        (
            "n_train",
            "n_test",
            "sparsities",
            "prune_steps",
            "cluster_counts",
            "cluster_steps",
            "qat_steps",
            "slim_fractions",
            "slim_steps",
            "batch_size",
            "calibration_samples",
            "latency_repeats",
        ),
        _work_03,
        explain=lambda p, env: _batch_note("improved_cnn", p["batch_size"]),
        notes=(
            "an upper bound: every sparsity level and channel fraction is counted, but the search "
            "stops climbing at the first one over the accuracy budget",
        ),
    ),
    "04-edge-vs-cloud": WorkModel(
        (
            "n_test",
            "accuracy_batch",
            "edge_repeats",
            "server_repeats",
            "load_requests",
            "batching_clients",
            "batching_requests",
            "bandwidth_sizes",
            "bandwidth_rates",
            "netem_requests",
        ),
        _work_04,
    ),
    "05-edge-cloud-collaboration": WorkModel(
        (
            "n_train",
            "n_test",
            "max_cuts",
            "profile_repeats",
            "student_steps",
            "distill_seeds",
            "temperatures",
            "alphas",
        ),
        _work_05,
    ),
}


# ===================================================================== estimates


RECORDED = "as recorded"  # a term's rate when it comes from a recorded run
FIXED_LABELS = ("fixed", "TensorFlow import")  # shown together as the fixed cost


@dataclass(frozen=True)
class Term:
    """One priced term of an estimate."""

    label: str
    quantity: float
    unit: str
    seconds: float
    rate: str  # the rate in words, e.g. "410 images/s"


@dataclass
class Estimate:
    """How long one notebook should take here, and why."""

    notebook: str
    seconds: float | None  # None: no estimate (no probe, no usable recorded run, no model)
    basis: str  # "probe", "recorded run ...", or why there is none
    terms: list[Term] = field(default_factory=list)
    work: dict[str, float] = field(default_factory=dict)  # label -> quantity
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The main terms in a line: "147,000 images at 410 images/s = 6:00; ...; 0:30 fixed"."""
        if self.seconds is None or not self.terms:
            return self.basis
        fixed = sum(t.seconds for t in self.terms if t.label in FIXED_LABELS)
        main = sorted(
            (t for t in self.terms if t.label not in FIXED_LABELS), key=lambda t: -t.seconds
        )
        parts = []
        for t in main[:3]:
            if t.seconds < 0.5:
                continue
            amount = f"{_quantity(t.quantity)}{' ' + t.unit if t.unit else ''}"
            rate = "" if t.rate in (RECORDED, "") else f" at {t.rate}"
            parts.append(f"{t.label} {amount}{rate} = {clock(t.seconds)}")
        parts.append(f"{clock(fixed)} fixed (start, imports, figures, exports)")
        text = "; ".join(parts)
        return text if self.basis == "probe" else f"{self.basis}: {text}"

    def record(self) -> dict:
        """What runs.json keeps next to the measured seconds (for the report and the next
        run's scaling)."""
        if self.seconds is None:
            return {"estimate_basis": self.basis}
        return {
            "estimate_s": round(self.seconds, 1),
            "estimate_basis": self.basis,
            "work": {k: _rounded(v) for k, v in self.work.items()},
            "estimate_terms": {t.label: round(t.seconds, 2) for t in self.terms},
            "machine": machine_id(),
        }


def _rounded(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 3)


def _quantity(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or value >= 100 else f"{value:.2g}"


def clock(seconds: float | None) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour); ``?`` for no value."""
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _cost(w: Work, rates: Rates) -> tuple[float, str]:
    """(seconds, the rate in words) of one term."""
    slow = rates.slowdown
    kind, _, arg = w.rate.partition(":")
    if kind == "train":
        arch, _, technique = arg.partition(":")
        ips = rates.train_ips[arch] / STEP_FACTOR.get(technique, 1.0)
        return w.quantity / ips, f"{ips:,.0f} images/s"
    if kind == "first_step":
        arch, _, technique = arg.partition(":")
        each = rates.first_step_s[arch] * SETUP_FACTOR.get(technique, 1.0)
        return w.quantity * each, f"{each:.1f} s each"
    per_unit = {
        "predict": (1 / rates.predict_ips, f"{rates.predict_ips:,.0f} images/s"),
        "tflite": (rates.tflite_ms / 1e3, f"{1e3 / rates.tflite_ms:,.0f} images/s"),
        "latency": (rates.latency_ms / 1e3, f"{rates.latency_ms:.2f} ms each"),
        "convert": (rates.convert_s, f"{rates.convert_s:.1f} s each"),
        "calibrate": (
            CALIBRATION_PER_LATENCY * rates.latency_ms / 1e3,
            f"{CALIBRATION_PER_LATENCY * rates.latency_ms:.1f} ms each",
        ),
        "import": (rates.import_s, "as measured"),
        "wall": (1.0, ""),
        "knn": (KNN_PREDICT_MS * slow / 1e3, f"{KNN_PREDICT_MS * slow:.1f} ms each"),
        "epoch": (EPOCH_S * slow, f"{EPOCH_S * slow:.1f} s each"),
        "server": (SERVER_START_S * slow, f"{SERVER_START_S * slow:.1f} s each"),
        "request": (REQUEST_MS * slow / 1e3, f"{REQUEST_MS * slow:.0f} ms each"),
        "served": (SERVED_IMAGE_MS * slow / 1e3, f"{1e3 / (SERVED_IMAGE_MS * slow):,.0f} images/s"),
        "cut": (CUT_S * slow, f"{CUT_S * slow:.1f} s each"),
        "shaped_cell": (SHAPED_CELL_S * slow, f"{SHAPED_CELL_S * slow:.1f} s each"),
    }
    seconds, text = per_unit[kind]  # "fixed" is priced per notebook (estimate_from_probe)
    return w.quantity * seconds, text


def estimate_from_probe(name: str, work: list[Work], rates: Rates) -> list[Term]:
    """Priced terms of notebook ``name``; its fixed term from :data:`FIXED_S`."""
    terms = []
    for w in work:
        if w.rate == "fixed":
            seconds = FIXED_S.get(name, max(FIXED_S.values())) * rates.slowdown
            terms.append(Term(w.label, w.quantity, w.unit, seconds, "measured once"))
        else:
            terms.append(Term(w.label, w.quantity, w.unit, *_cost(w, rates)))
    return terms


def scale_recorded(
    recorded: dict, work: dict[str, float]
) -> tuple[float, float, dict[str, float]] | None:
    """An estimate from an earlier run: its measured seconds times the ratio of the work now
    to the work then, each term weighted by its share of that run's estimate.

    Returns:
        (seconds, work ratio, each term's seconds scaled to today's work), or None when the
        run recorded no work, its terms differ from today's (the notebook's work model
        changed), or the work is more than :data:`MAX_WORK_RATIO` away from it.
    """
    old_work, old_terms = recorded.get("work"), recorded.get("estimate_terms")
    if not old_work or not old_terms or set(old_work) != set(work) or set(old_terms) != set(work):
        return None
    scaled = {}
    for label, seconds in old_terms.items():
        if old_work[label] == work[label]:
            scaled[label] = seconds
        elif old_work[label] > 0:
            scaled[label] = seconds * work[label] / old_work[label]
        else:
            return None  # work that was not there: the old run says nothing about its cost
    before = sum(old_terms.values())
    if before <= 0 or not recorded.get("seconds"):
        return None
    ratio = sum(scaled.values()) / before
    if not 1 / MAX_WORK_RATIO <= ratio <= MAX_WORK_RATIO:
        return None
    return recorded["seconds"] * ratio, ratio, scaled


# ===================================================================== the plan


@dataclass
class Plan:
    """What ``make run`` will do: the data, one estimate per notebook, and how they were made."""

    profile: str
    data: list[DataCounts]
    estimates: dict[str, Estimate]
    rates: Rates | None
    probe_note: str  # how the throughput was measured, or why it was not

    @property
    def total_s(self) -> float | None:
        known = [e.seconds for e in self.estimates.values() if e.seconds is not None]
        return sum(known) if known else None

    def describe(self) -> str:
        """The data found and the plan table, as printed before the first notebook."""
        lines = [d.describe() for d in self.data]
        lines.append(f"throughput: {self.probe_note}")
        lines.append(f"plan ({self.profile} profile), estimated on this machine:")
        width = max(len(n) for n in self.estimates) if self.estimates else 10
        for name, e in self.estimates.items():
            lines.append(f"  {name:<{width}}  {clock(e.seconds):>7}  {e.summary()}")
            lines += [f"  {'':<{width}}           note: {note}" for note in e.notes]
        unknown = [n for n, e in self.estimates.items() if e.seconds is None]
        total = clock(self.total_s)
        lines.append(
            f"  {'total':<{width}}  {total:>7}"
            + (f"  (without {', '.join(unknown)}: no estimate)" if unknown else "")
        )
        return "\n".join(lines)


def notebook_values(name: str, profile: str) -> dict:
    """The parameters notebook ``name`` gets in ``profile``: the profile's values over the
    defaults of its parameters cell (defaults that are not literals are left out)."""
    from workbench import runner

    values = {}
    for parameter, info in runner.notebook_parameters(name).items():
        try:
            values[parameter] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            continue
    return values | runner.profile_parameters(name, profile)


def read_runs() -> dict:
    """``reports/results/runs.json`` (empty when there is none or it cannot be read)."""
    from workbench import paths

    path = paths.reports_dir("results") / "runs.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def make_plan(
    names: list[str],
    profile: str,
    *,
    measure: bool = True,
    probe_fn: Callable[[], Rates] | None = None,
    runs: Mapping[str, dict] | None = None,
    environment: Callable[[list[str]], dict] | None = None,
) -> Plan:
    """The data, and how long each notebook should take on this machine.

    Args:
        names: the notebooks to run, in order.
        profile: ``full`` or a profile in ``notebooks/params/``.
        measure: run the throughput probe when a notebook needs it (False: ``--no-estimate``:
            only recorded runs on this machine give estimates).
        probe_fn: measures the machine (default :func:`probe`; tests give a stub).
        runs: recorded runs (default: ``runs.json``).
        environment: what 04 depends on (default: :func:`link_environment`; tests stub it).

    Raises:
        workbench.data.DatasetError: a dataset is missing.
        workbench.runner.ProfileError: the profile does not fit a notebook.
    """
    runs = read_runs() if runs is None else runs
    values = {name: notebook_values(name, profile) for name in names}
    datasets, data_of = _datasets(names, values)
    links = (environment or link_environment)(names)
    if "02-cloud-cifar10-cnn" in names and "checkpoints" not in links:
        links = links | {"checkpoints": find_checkpoints()}
    work = {name: _work(name, values[name], data_of.get(name), links) for name in names}
    here = machine_id()
    estimates = {name: _from_record(name, work[name], runs.get(name) or {}, here) for name in names}
    needs_probe = any(e.seconds is None and e.work for e in estimates.values())
    rates, note = None, "not needed: every notebook has a recorded run on this machine"
    if needs_probe and not measure:
        note = "not measured (--no-estimate)"
    elif needs_probe:
        try:
            rates = (probe_fn or probe)()
            note = f"measured now in {rates.probe_s:.0f} s: {rates.describe()}"
            _save_probe(rates)
        except ProbeError as err:
            note = f"not measured: {err}"
    for name, e in estimates.items():
        if e.seconds is not None or not e.work:  # recorded, or no work model
            continue
        if rates is None:
            e.basis = f"no estimate: throughput {note}"
            continue
        e.terms = estimate_from_probe(name, work[name][0], rates)
        e.seconds, e.basis = sum(t.seconds for t in e.terms), "probe"
    return Plan(profile, datasets, estimates, rates, note)


def _datasets(names: list[str], values: dict) -> tuple[list[DataCounts], dict[str, DataCounts]]:
    """The datasets the notebooks read (each once) and which one each reads (none: iris)."""
    from workbench import runner

    found: dict[str | None, DataCounts] = {}
    data_of: dict[str, DataCounts] = {}
    for name in names:
        declared = [p for p in runner.DATA_PARAMETERS if p in values[name]]
        if not declared:  # reads no image dataset (notebook 01: iris)
            continue
        key = values[name][declared[0]]
        key = None if key is None else str(key)
        if key not in found:
            found[key] = data_counts(key)
        data_of[name] = found[key]
    return list(found.values()), data_of


def _work(
    name: str, values: dict, counts: DataCounts | None, links: dict
) -> tuple[list[Work], list[str]] | str:
    """Notebook ``name``'s work and the notes for this run, or why there is none."""
    model = MODELS.get(name)
    if model is None:
        return "no work model for this notebook in workbench.plan.MODELS"
    missing = [p for p in model.uses if p not in values]
    if missing:
        return f"its parameters cell lacks {missing}: update workbench.plan.MODELS"
    env = Environment(counts and counts.n_train, counts and counts.n_test, **links)
    used = {p: values[p] for p in model.uses}
    try:
        notes = list(model.notes) + (model.explain(used, env) if model.explain else [])
        return model.terms(used, env), notes
    except ValueError as err:
        return f"no estimate: {err}"


def _from_record(
    name: str, work: tuple[list[Work], list[str]] | str, recorded: dict, here: str
) -> Estimate:
    """The estimate from an earlier run on this machine, scaled by the work ratio; without
    one, an estimate still to be priced (``seconds`` None)."""
    if isinstance(work, str):
        return Estimate(name, None, work)
    items, notes = work
    quantities = {w.label: w.quantity for w in items}
    scaled = scale_recorded(recorded, quantities) if recorded.get("machine") == here else None
    if scaled is None:
        return Estimate(name, None, "", work=quantities, notes=notes)
    seconds, ratio, terms = scaled
    basis = (
        f"recorded run ({recorded.get('profile', '?')} profile, "
        f"{clock(recorded['seconds'])}) x work ratio {ratio:.2f}"
    )
    share = seconds / sum(terms.values())  # the terms, as that run turned out
    priced = [Term(w.label, w.quantity, w.unit, terms[w.label] * share, RECORDED) for w in items]
    return Estimate(name, seconds, basis, priced, quantities, notes)


def _save_probe(rates: Rates) -> None:
    """Keep the latest probe in ``reports/results/probe.json`` (for comparing machines)."""
    from workbench import atomic, paths

    doc = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine_id()}
    atomic.write_json(paths.reports_dir("results") / "probe.json", doc | asdict(rates), indent=2)


def link_environment(names: list[str]) -> dict:
    """Whether notebook 04's shaped and emulated links will run here (cheap checks)."""
    if "04-edge-vs-cloud" not in names:
        return {}
    from workbench import network

    rtts = tuple(float(network.PROFILES[k].rtt_ms) for k in ("wifi", "4g", "3g"))
    return {
        "shaping": network.shaping_available()[0],
        "netem": network.netem_available()[0],
        "link_rtts_ms": rtts,
    }


# ===================================================================== progress


class Progress:
    """One line of progress with an ETA while the notebooks run.

    On a terminal the line is redrawn about once a second; into a file or a pipe a line is
    written every :data:`LOG_INTERVAL_S` seconds instead (a log stays readable). After each
    notebook the remaining estimates are multiplied by actual / estimated so far (with
    :data:`RESCALE_PRIOR_S` counted as on target).

    Use :meth:`start` and :meth:`finish` around each notebook and :meth:`close` at the end
    (or ``with``); :meth:`write` prints a line without tearing the progress line.
    """

    def __init__(
        self,
        plan: Plan,
        *,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        clock_fn: Callable[[], float] = time.monotonic,
        thread: bool = True,
    ) -> None:
        self.stream = stream or sys.stdout
        if interactive is None:
            interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interactive = interactive
        self.interval_s = TERMINAL_INTERVAL_S if interactive else LOG_INTERVAL_S
        self.clock = clock_fn
        self.names = list(plan.estimates)
        self.raw = {n: e.seconds for n, e in plan.estimates.items()}
        self.factor = 1.0
        self.actual: dict[str, float] = {}
        self.run_start = clock_fn()
        self.current: str | None = None
        self.current_start = self.run_start
        self.last_line = -math.inf
        self._shown = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True) if thread else None
        if self._thread:
            self._thread.start()

    # ---------------------------------------------------------------- public

    def estimate(self, name: str) -> float | None:
        """The current estimate for ``name``: its planned one, rescaled once others ran."""
        raw = self.raw.get(name)
        return None if raw is None else raw * self.factor

    def start(self, name: str) -> None:
        with self._lock:
            self.current, self.current_start = name, self.clock()
            self.last_line = self.current_start  # the first log line comes an interval later

    def finish(self, name: str, seconds: float) -> str:
        """Record a finished notebook, rescale the rest; returns the line saying so."""
        with self._lock:
            self.actual[name] = seconds
            self.current = None
            was = self.estimate(name)
            estimated = [n for n in self.actual if self.raw.get(n) is not None]
            if estimated:
                actual = sum(self.actual[n] for n in estimated) + RESCALE_PRIOR_S
                ratio = actual / (sum(self.raw[n] for n in estimated) + RESCALE_PRIOR_S)
                self.factor = min(max(ratio, RESCALE_BOUNDS[0]), RESCALE_BOUNDS[1])
        if was is None:
            return f"    no estimate for {name}; took {clock(seconds)}"
        planned = self.raw[name]
        first = "" if abs(was - planned) < 0.5 else f" (planned {clock(planned)})"
        line = f"    estimate {clock(was)}{first}, took {clock(seconds)} ({seconds / was:.2f}x)"
        if all(n in self.actual for n in self.names):
            return line
        left = self.remaining()
        rest = "" if left is None else f"; remaining notebooks now ~{clock(left)}"
        return f"{line}; later estimates x{self.factor:.2f}{rest}"

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left for the run: the current notebook's rest and those not yet started
        (None when one of them has no estimate). While the current notebook runs over its
        estimate, the later ones are rescaled as if it finished now (they rise with it)."""
        now = self.clock() if now is None else now
        factor = self._live_factor(now)
        left = 0.0
        for name in self.names:
            if name in self.actual:
                continue
            if self.raw.get(name) is None:
                return None
            if name == self.current:
                left += max(self.estimate(name) - (now - self.current_start), 0.0)
            else:
                left += self.raw[name] * factor
        return left

    def _live_factor(self, now: float) -> float:
        """The rescaling factor, raised while the current notebook runs over its estimate."""
        raw = self.raw.get(self.current) if self.current else None
        elapsed = now - self.current_start
        if raw is None or elapsed <= raw * self.factor:
            return self.factor
        done = [n for n in self.actual if self.raw.get(n) is not None]
        actual = sum(self.actual[n] for n in done) + elapsed + RESCALE_PRIOR_S
        planned = sum(self.raw[n] for n in done) + raw + RESCALE_PRIOR_S
        return min(max(self.factor, actual / planned), RESCALE_BOUNDS[1])

    def status(self, now: float | None = None) -> str:
        """The progress line: notebook, its elapsed time against its estimate, the run's ETA."""
        now = self.clock() if now is None else now
        elapsed_run = now - self.run_start
        if self.current is None:
            return f"run {clock(elapsed_run)} elapsed"
        index = self.names.index(self.current) + 1 if self.current in self.names else 0
        elapsed = now - self.current_start
        est = self.estimate(self.current)
        mine = f"{clock(elapsed)} / ~{clock(est)}" if est is not None else clock(elapsed)
        if est is not None and elapsed > est:
            mine += " (over)"
        left = self.remaining(now)
        if left is None:
            eta = "ETA unknown"
        else:
            at = time.strftime("%H:%M", time.localtime(time.time() + left))
            eta = f"~{clock(left)} left, ETA {at}"
        return (
            f"[{index}/{len(self.names)}] {self.current} {mine} | run {clock(elapsed_run)}, {eta}"
        )

    def tick(self, now: float | None = None) -> None:
        """Draw the line (terminal) or write it when an interval has passed (log)."""
        now = self.clock() if now is None else now
        with self._lock:
            if self.current is None or now - self.last_line < self.interval_s:
                return
            self.last_line = now
            line = self.status(now)
            if self.interactive:
                width = _terminal_width() - 1
                self.stream.write("\r" + line[:width].ljust(width))
                self._shown = True
            else:
                self.stream.write(f"    ... {line}\n")
            self.stream.flush()

    def write(self, text: str) -> None:
        """Print ``text`` on its own lines (the terminal's progress line is redrawn after)."""
        with self._lock:
            self._clear()
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last_line = -math.inf if self.interactive else self.last_line

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            self._clear()
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _clear(self) -> None:
        if self.interactive and self._shown:
            self.stream.write("\r" + " " * (_terminal_width() - 1) + "\r")
            self._shown = False

    def _loop(self) -> None:
        while not self._stop.wait(min(self.interval_s, 1.0)):
            try:
                self.tick()
            except (OSError, ValueError):  # the stream went away: stop drawing, run on
                return


def _terminal_width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((100, 20)).columns)


if __name__ == "__main__":
    print(json.dumps(_measure()))
