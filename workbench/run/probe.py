"""The throughput probe: a short measurement of this machine (training, conversion and
inference rates on the notebooks' own models) that the estimates scale from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from workbench.core import machine

# ===================================================================== constants


# The probe's own measurements on the development machine, when the constants of
# calibration.json were measured: a machine is as much slower as its probe is than these.
REFERENCE: dict[str, float] = json.loads(
    (Path(__file__).with_name("calibration.json")).read_text()
)["reference"]["value"]


# The probe trains these at these batch sizes (the notebooks' defaults), augmented as they are.
PROBE_TRAINING = (
    ("improved_cnn", 64, True),
    ("seed_cnn", 32, False),
    ("student_cnn", 64, True),
    ("resnet", 256, True),  # notebook 02's cloud model
)


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
            [sys.executable, "-m", "workbench.run.probe"],
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
    """The probe itself (run by ``python -m workbench.run.probe``). On the 2-core development
    machine it took 21 s at a load average of 1, 35 s at 5 and 70-85 s at 8-9, process start
    and TensorFlow's import included."""
    t = time.perf_counter()  # the package (this module's parent) already chose Keras 2
    import tensorflow as tf  # noqa: F401
    import tf_keras  # noqa: F401

    import_s = time.perf_counter() - t
    import numpy as np

    from workbench.edge import convert, runtime
    from workbench.models import architectures

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1024, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 1024)
    train_ips, first_step = {}, {}
    improved = None
    for arch, batch, augment in PROBE_TRAINING:
        model = architectures.build(arch)
        train_ips[arch], first_step[arch] = _training_rate(model, x, y, batch, augment)
        if arch == "improved_cnn":
            improved = model
    scaled = (x[:320] / 255.0).astype(np.float32)
    improved.predict(scaled[:64], batch_size=256, verbose=0)  # traces the predict function
    t = time.perf_counter()
    improved.predict(scaled[:256], batch_size=256, verbose=0)
    predict_ips = 256 / (time.perf_counter() - t)
    t = time.perf_counter()
    blob = convert.to_tflite(improved, "float32", input_scale=1 / 255)
    convert_s = time.perf_counter() - t
    lite = runtime.EdgeModel(blob, num_threads=1)
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

    from workbench.data import pipeline

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
    ds = pipeline.make_dataset(x, y, batch_size=batch, training=True, augment=augment).repeat()
    clock = Clock()
    start = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=1000, callbacks=[clock], verbose=0)
    timed = clock.times[2:]
    return (len(timed) - 1) * batch / (timed[-1] - timed[0]), clock.times[0] - start


def save_probe(rates: Rates) -> None:
    """Keep the latest probe in ``reports/results/probe.json`` (for comparing machines)."""
    from workbench.core import atomic, paths

    doc = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine.machine_id()}
    atomic.write_json(paths.reports_dir("results") / "probe.json", doc | asdict(rates), indent=2)


if __name__ == "__main__":
    print(json.dumps(_measure()))
