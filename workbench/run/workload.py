"""What each notebook does, counted as work (images trained, steps fine-tuned, requests
sent...) from its parameters and the data, so that the estimates can price it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.models.subject import validation_share
from workbench.run import probe

# Costs measured once on the development machine: data, not code (calibration.json says how
# each was measured).
CALIBRATION = json.loads((Path(__file__).with_name("calibration.json")).read_text())
FIXED_S: dict[str, float] = CALIBRATION["fixed_s"]["value"]  # per notebook, beyond its work
KNN_PREDICT_MS: float = CALIBRATION["knn_predict_ms"]["value"]
EPOCH_S: float = CALIBRATION["epoch_s"]["value"]
SERVER_START_S: float = CALIBRATION["server_start_s"]["value"]
REQUEST_MS: float = CALIBRATION["request_ms"]["value"]
SERVED_IMAGE_MS: float = CALIBRATION["served_image_ms"]["value"]
CUT_S: float = CALIBRATION["cut_s"]["value"]
SHAPED_CELL_S: float = CALIBRATION["shaped_cell_s"]["value"]
STEP_FACTOR: dict[str, float] = CALIBRATION["step_factor"]["value"]
SETUP_FACTOR: dict[str, float] = CALIBRATION["setup_factor"]["value"]
CALIBRATION_PER_LATENCY: float = CALIBRATION["calibration_per_latency"]["value"]
INFERENCE_SPEEDUP: float = CALIBRATION["inference_speedup"]["value"]
CLOUD_MACS_RATIO: float = CALIBRATION["cloud_macs_ratio"]["value"]


# A recorded run is scaled by the work ratio only within this factor of its work: beyond it,
# fixed costs dominate one run and not the other, and the probe's model is the better guide.
MAX_WORK_RATIO = 3.0


# ===================================================================== the work


@dataclass(frozen=True)
class Work:
    """One term of a notebook's work: ``quantity`` ``unit`` at the cost named by ``rate``.

    Rates: ``train:<arch>`` (images at the probe's training rate of that architecture),
    ``infer:<arch>`` (images at that rate times :data:`INFERENCE_SPEEDUP`: forward passes),
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


def _held_out(total: int, fraction: float | None) -> tuple[int, int]:
    """(fitted, held out) training images, the share sized as the notebooks size it."""
    return _split(total, validation_share(total) if fraction is None else fraction)


def _work_01(p: dict, env: Environment) -> list[Work]:
    return [
        Work("single-sample KNN predictions", p["latency_repeats"] + p["warmup"] + 1, "", "knn"),
        Work("throughput run", p["throughput_seconds"], "s", "wall"),
        Work("fixed", 1, "run", "fixed"),
    ]


# Notebook 02's models: role -> (its architecture's parameter or name, images, batch size).
ROLES_02 = {
    "seed_cnn": ("seed_cnn", "seed_images", "seed_batch_size"),
    "improved_cnn": ("improved_cnn", "improved_images", "improved_batch_size"),
    "cloud": ("cloud_architecture", "cloud_images", "cloud_batch_size"),
}


def _arch_02(role: str, p: dict) -> str:
    arch, _, _ = ROLES_02[role]
    return p.get(arch, arch) if arch.endswith("_architecture") else arch


def _work_02(p: dict, env: Environment) -> list[Work]:
    from workbench.cloud.train import epochs_for, validation_epochs

    n_fit, n_val = _held_out(_cap(env.n_train, p["n_train"]), p["val_fraction"])
    n_test = _cap(env.n_test, p["n_test"])
    # train.fit resumes from a checkpoint of the same run: epochs already done are not trained
    epochs = {
        role: epochs_for(p[images], n_fit) - _done(role, n_fit, p, env)
        for role, (_, images, _) in ROLES_02.items()
    }
    cloud = _arch_02("cloud", p)
    # validation after the epochs train.fit scores (of those still to train)
    validated = {
        role: sum(
            e > epochs_for(p[images], n_fit) - epochs[role]
            for e in validation_epochs(epochs_for(p[images], n_fit))
        )
        if epochs[role] > 0
        else 0
        for role, (_, images, _) in ROLES_02.items()
    }
    return [
        Work("cloud model training", epochs["cloud"] * n_fit, "images", f"train:{cloud}"),
        Work(
            "improved CNN training", epochs["improved_cnn"] * n_fit, "images", "train:improved_cnn"
        ),
        Work("seed CNN training", epochs["seed_cnn"] * n_fit, "images", "train:seed_cnn"),
        # validation (train.validation_epochs) and the test images, the cheap models at the
        # improved CNN's inference rate, the cloud model's at its training rate (an upper bound)
        Work(
            "inference",
            (validated["seed_cnn"] + validated["improved_cnn"]) * n_val + 2 * n_test,
            "images",
            "predict",
        ),
        Work(
            "cloud model inference",
            validated["cloud"] * n_val + n_test + 16,
            "images",
            f"infer:{cloud}",
        ),
        Work("epochs (checkpoint each)", sum(epochs.values()), "epochs", "epoch"),
        Work("training set-ups", 3, "fits", "first_step:improved_cnn"),  # seed, improved, resume
        Work("cloud model set-up", 1, "fits", f"first_step:{cloud}"),
        Work("TensorFlow import", 1, "", "import"),
        Work("fixed", 1, "run", "fixed"),
    ]


def _done(role: str, n_fit: int, p: dict, env: Environment) -> int:
    """Epochs of ``role``'s architecture a checkpoint already holds for this training (same
    images per epoch, no more epochs than planned): probably the same run, which train.fit
    resumes."""
    from workbench.cloud.train import epochs_for

    arch, images = _arch_02(role, p), ROLES_02[role][1]
    planned = epochs_for(p[images], n_fit)
    found = [
        e for a, e, seen in env.checkpoints if a == arch and seen == e * n_fit <= planned * n_fit
    ]
    return max(found, default=0)


def _batch_note(arch: str, batch: int) -> list[str]:
    """A warning when a notebook trains ``arch`` at another batch size than the probe did."""
    probed = next((b for a, b, _ in probe.PROBE_TRAINING if a == arch), None)
    if probed is None:
        return [f"the probe does not train {arch}: its rate is a guess (the improved CNN's)"]
    if batch == probed:
        return []
    return [f"the probe trained {arch} at batch {probed}, this run uses {batch}: its rate differs"]


def _notes_02(p: dict, env: Environment) -> list[str]:
    return (
        _batch_note("seed_cnn", p["seed_batch_size"])
        + _batch_note("improved_cnn", p["improved_batch_size"])
        + _batch_note(_arch_02("cloud", p), p["cloud_batch_size"])
        + _resumed_02(p, env)
    )


def _resumed_02(p: dict, env: Environment) -> list[str]:
    from workbench.cloud.train import epochs_for

    n_fit, _ = _held_out(_cap(env.n_train, p["n_train"]), p["val_fraction"])
    done = {role: _done(role, n_fit, p, env) for role in ROLES_02}
    if not any(done.values()):
        return []
    found = ", ".join(
        f"{_arch_02(role, p)} {e} of {epochs_for(p[ROLES_02[role][1]], n_fit)} epochs"
        for role, e in done.items()
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
    from workbench.core import paths

    found = []
    for state in sorted(paths.cloud_dir().glob("checkpoints/*/state.json")):
        try:
            doc = json.loads(state.read_text())
            found.append((str(doc["architecture"]), int(doc["epoch"]), int(doc["images_seen"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: train.fit will say so itself
    return tuple(found)


def _work_03(p: dict, env: Environment) -> list[Work]:
    n_fit, n_val = _held_out(_cap(env.n_train, p["n_train"]), None)
    n_test = _cap(env.n_test, p["n_test"])
    from workbench.edge import search

    most = search.SearchSpace(
        sparsities=tuple(p["sparsities"]),
        clusters=tuple(p["cluster_counts"]),
        slim_fractions=tuple(p["slim_fractions"]),
    ).most_steps()  # every step the search may take (its ladder may stop early)
    variants, int8, tuned, batch = most["variants"], most["int8"], most["tuned"], p["batch_size"]
    # What follows the slim model fine-tunes it, counted at the float model's rate (an upper
    # bound: the slim model has fewer MACs per step).
    improved = "train:improved_cnn"
    return [
        Work(
            "fine-tuning: pruning",
            most["prune"] * p["prune_steps"] * batch,
            "images",
            f"{improved}:prune",
        ),
        Work("fine-tuning: QAT", most["qat"] * p["qat_steps"] * batch, "images", f"{improved}:qat"),
        Work(
            "fine-tuning: clustering",
            most["cluster"] * p["cluster_steps"] * batch,
            "images",
            f"{improved}:cluster",
        ),
        Work(
            "fine-tuning: channel pruning",
            most["slim"] * p["slim_steps"] * batch,
            "images",
            f"{improved}:slim",
        ),
        # wrapping, cloning, compiling, tracing, stripping: per fine-tuned model
        Work("set-ups: pruning", most["prune"], "models", "first_step:improved_cnn:prune"),
        Work(
            "set-ups: QAT, PQAT",
            most["qat"] - most["cluster"],
            "models",
            "first_step:improved_cnn:qat",
        ),
        Work(
            "set-ups: clustering + PCQAT",
            most["cluster"],
            "models",
            "first_step:improved_cnn:pcqat",
        ),
        Work("set-ups: channel pruning", most["slim"], "models", "first_step:improved_cnn:slim"),
        Work("TFLite conversions", variants, "variants", "convert"),
        Work("int8 calibration", int8 * p["calibration_samples"], "samples", "calibrate"),
        Work("LiteRT evaluation", variants * (n_test + n_val), "images", "tflite"),
        Work("LiteRT latency", variants * (p["latency_repeats"] + 21), "runs", "latency"),
        Work("Keras inference", n_test + n_val + tuned * n_test, "images", "predict"),
        # the cloud model on devices: its float32 and int8 files, built and measured
        Work("cloud model inference", n_test + n_val, "images", "infer:resnet"),
        Work("cloud model conversions", round(2 * CLOUD_MACS_RATIO), "conversions", "convert"),
        Work(
            "cloud model int8 calibration",
            round(p["calibration_samples"] * CLOUD_MACS_RATIO),
            "samples",
            "calibrate",
        ),
        Work(
            "cloud model evaluation",
            round(2 * (n_test + n_val) * CLOUD_MACS_RATIO),
            "images",
            "tflite",
        ),
        Work(
            "cloud model latency",
            round(2 * (p["latency_repeats"] + 21) * CLOUD_MACS_RATIO),
            "runs",
            "latency",
        ),
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
    runtimes = 2 * (p["server_repeats"] + 10)  # one image, TensorFlow's runtime and LiteRT's
    servers = 2 + 1 + 2 + (3 if env.netem else 0)
    terms = [
        Work("model-server starts", servers, "starts", "server"),
        Work("requests", requests + runtimes, "requests", "request"),
        # the server runs the cloud model on every image it is sent
        Work("cloud model compute", requests + runtimes + n_test, "images", "infer:resnet"),
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
    n_fit, n_val = _held_out(_cap(env.n_train, p["n_train"]), None)
    n_test = _cap(env.n_test, p["n_test"])
    seeds, steps = len(p["distill_seeds"]), p["student_steps"]
    candidates = len(p["temperatures"]) * len(p["alphas"])
    students = seeds * (1 + candidates)  # a labels-only student and each candidate, per seed
    images = steps * 64  # distill.compare's batch size
    cloud = "infer:resnet"  # notebook 02's cloud model (its default architecture)
    return [
        Work("student training", students * images, "images", "train:student_cnn"),
        Work("teacher answers while distilling", seeds * candidates * images, "images", cloud),
        Work("student set-ups", students, "set-ups", "first_step:student_cnn"),
        # the cloud model on test + validation images and the teacher's diagnostics on the
        # training images; the edge model and each student on validation and test images
        Work("cloud model inference", n_test + n_val + n_fit, "images", cloud),
        Work(
            "Keras inference",
            n_test + n_val + students * n_val + 2 * seeds * n_test,
            "images",
            "predict",
        ),
        Work("cut points measured", p["max_cuts"], "cuts", "cut"),
        # the cloud model's parts: conversions and single-image runs cost its MACs
        Work(
            "TFLite conversions",
            round((p["max_cuts"] + 2) * CLOUD_MACS_RATIO),
            "conversions",
            "convert",
        ),
        Work(
            "LiteRT latency",
            round(
                (2 * p["max_cuts"] * (p["split_repeats"] + 6) + 4 * p["split_repeats"] + 21)
                * CLOUD_MACS_RATIO
            ),
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
            "cloud_architecture",
            "cloud_images",
            "cloud_batch_size",
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
            "split_repeats",
            "student_steps",
            "distill_seeds",
            "temperatures",
            "alphas",
        ),
        _work_05,
    ),
}


def link_environment(names: list[str]) -> dict:
    """Whether notebook 04's shaped and emulated links will run here (cheap checks)."""
    if "04-edge-vs-cloud" not in names:
        return {}
    from workbench.network import emulation, latency

    rtts = tuple(float(latency.LINKS[k].rtt_ms) for k in ("wifi", "4g", "3g"))
    return {
        "shaping": emulation.shaping_available()[0],
        "netem": emulation.netem_available()[0],
        "link_rtts_ms": rtts,
    }
