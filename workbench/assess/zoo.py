"""The zoo: every ``keras.applications`` family through every stage of ``workbench assess``.

Each family is built with ``weights=None`` at 32x32 (or, where it needs more, at the smallest
input it accepts, with a ``Resizing`` layer in front so it still takes CIFAR-10's 32x32
images), trained a few steps on CIFAR-10 and saved, as a user would bring it, by Keras 3
and, where the family exists there, by tf-keras. Then ``python -m workbench assess``
runs on it in its own process (:func:`run_family`), and its ``assessment.json`` becomes a
row of the zoo's table (:func:`row_of`, :func:`write_table`): parameters, MACs, which
variants were built and which were skipped (with the reasons), the int8 agreement with the
float model (and the layers that lose most, when it is low), the cut points, the agreement
of the split run, the seconds.

``make zoo`` runs every family in both flavours through ``tests/test_zoo.py`` (which
checks every row) and writes ``reports/zoo.html``; CI runs a representative part.
Building and training happen in a child process, ``python -m workbench.assess.zoo build``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KERAS3, TF_KERAS = "Keras 3", "tf-keras"
FLAVOURS = (KERAS3, TF_KERAS)
POST_TRAINING = ("float32", "dynamic_range", "float16", "int8")


@dataclass(frozen=True)
class Family:
    """A ``keras.applications`` family, by the constructor of its smallest member."""

    name: str  # the constructor, e.g. "MobileNetV3Small"
    size: int = 32  # the smallest input side it accepts (a Resizing layer feeds it 32x32)
    flavours: tuple[str, ...] = FLAVOURS  # the Keras flavours that have it
    steps: int | None = None  # training steps, where the default leaves it at chance


FAMILIES = (
    Family("MobileNet"),
    Family("MobileNetV2"),
    Family("MobileNetV3Small"),
    Family("MobileNetV3Large"),
    Family("EfficientNetB0", steps=240),  # stochastic depth, dropout: slow to leave chance
    Family("EfficientNetV2B0", steps=240),
    Family("ResNet50"),
    Family("ResNet50V2"),
    Family("DenseNet121", steps=60),  # beats chance sooner; each step costs more
    Family("NASNetMobile", steps=60),
    Family("ConvNeXtTiny"),
    Family("VGG16"),
    Family("Xception", size=71),
    Family("InceptionV3", size=75),
    Family("InceptionResNetV2", size=75),
    Family("RegNetX002", flavours=(TF_KERAS,)),  # Keras 3 has no RegNet or ResNetRS
    Family("RegNetY002", flavours=(TF_KERAS,)),
    Family("ResNetRS50", flavours=(TF_KERAS,)),
)
BY_NAME = {f.name: f for f in FAMILIES}

# What CI runs: as Keras 3 files (today's default), hard-swish activations and keras.ops
# (MobileNetV3Small), squeeze-and-excitation and swish (EfficientNetB0), dense concatenations
# and average pooling (DenseNet121), NASNet's cells of separable convolutions and
# concatenations (NASNetMobile); as a tf-keras file, MobileNet (no bridge: tfmot takes it as
# it is). On 2 cores they took 3.5, 5.6, 11.9, 16.2 and about 2 min one after the other: CI
# starts them with the session, at a low CPU priority, so they use the time other tests
# leave a core idle (:class:`Ahead`), and runs their tests last.
CI_RUNS = (
    ("NASNetMobile", KERAS3),  # the longest first
    ("DenseNet121", KERAS3),
    ("EfficientNetB0", KERAS3),
    ("MobileNetV3Small", KERAS3),
    ("MobileNet", TF_KERAS),
)


def all_runs() -> list[tuple[str, str]]:
    """Every family in every flavour that has it (what ``make zoo`` runs): the Keras 3 files
    first (today's default Keras), then the tf-keras ones."""
    return [(f.name, flavour) for flavour in FLAVOURS for f in FAMILIES if flavour in f.flavours]


def run_id(family: str, flavour: str) -> str:
    """A run's short name, e.g. ``MobileNetV3Small-keras3`` (folders, test ids)."""
    return f"{family}-{'keras3' if flavour == KERAS3 else 'tf_keras'}"


@dataclass(frozen=True)
class Training:
    """How briefly each zoo model is trained: enough to beat chance, no more."""

    steps: int = 120  # optimizer steps
    batch_size: int = 32
    learning_rate: float = 2e-3
    n_test: int = 200  # test images in the zoo's data file
    seed: int = 0


# ----------------------------------------------------------------------------- building


def zoo_data(path: Path, *, training: Training) -> Path:
    """The zoo's labelled images: the first CIFAR-10 images (wherever
    :func:`workbench.data.cifar10.load_cifar10` finds them), as an ``.npz`` a user would bring."""
    from workbench.core import atomic
    from workbench.data import cifar10

    data = cifar10.load_cifar10()
    most = max(f.steps or training.steps for f in FAMILIES)
    n_train = max(most * training.batch_size, 600)
    arrays = {
        "x_train": data.x_train[:n_train],
        "y_train": data.y_train[:n_train],
        "x_test": data.x_test[: training.n_test],
        "y_test": data.y_test[: training.n_test],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.temp_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def build_and_train(
    family: str, flavour: str, data_path: Path, out: Path, *, training: Training
) -> dict:
    """Build ``family`` in ``flavour`` (``weights=None``), train it briefly, save it to ``out``.

    Runs in the calling process (:func:`run_family` calls it in a child process). Returns
    ``path, parameters, input_size, train_seconds, test_accuracy`` (Keras' own evaluation).

    Raises:
        ValueError: the family does not build in this flavour (the message says why).
    """
    fam = BY_NAME[family]
    if flavour not in fam.flavours:
        raise ValueError(f"{family} is not in {flavour}'s keras.applications")
    if flavour == KERAS3:
        import keras
    else:
        import tf_keras as keras
    keras.utils.set_random_seed(training.seed)
    data = np.load(data_path)
    constructor = getattr(keras.applications, family)
    if fam.size == 32:
        model = constructor(input_shape=(32, 32, 3), weights=None, classes=10)
    else:  # CIFAR-10's 32x32 images, resized in the model to what the family accepts
        inputs = keras.Input((32, 32, 3), name="image")
        x = keras.layers.Resizing(fam.size, fam.size, name="resize")(inputs)
        base = constructor(input_tensor=x, weights=None, classes=10)
        model = keras.Model(inputs, base.outputs[0], name=base.name)  # one input, not a list
    for layer in model.layers:  # statistics that follow a short training run
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    compile_kwargs = {"jit_compile": False} if flavour == KERAS3 else {}
    # the classifier starts at zero (its first answers are uniform, not confidently wrong),
    # and the rate decays to zero, so the last steps barely move the weights and the
    # batch-norm statistics catch up with them (else a briefly trained model may predict
    # one class)
    last = [layer for layer in model.layers if getattr(layer, "kernel", None) is not None][-1]
    last.kernel.assign(np.zeros(tuple(last.kernel.shape), dtype="float32"))
    steps = fam.steps or training.steps
    rate = keras.optimizers.schedules.CosineDecay(training.learning_rate, steps)
    model.compile(
        keras.optimizers.Adam(rate),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        **compile_kwargs,
    )
    take = np.arange(steps * training.batch_size) % len(data["y_train"])  # epochs, if need be
    start = time.perf_counter()
    model.fit(
        data["x_train"][take], data["y_train"][take], batch_size=training.batch_size, epochs=1,
        verbose=0,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(data["x_test"], data["y_test"], verbose=0)[1]
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    return {
        "path": str(out),
        "parameters": int(model.count_params()),
        "input_size": fam.size,
        "train_steps": steps,
        "train_seconds": seconds,
        "test_accuracy": float(accuracy),
    }


# ----------------------------------------------------------------------------- one run


@dataclass
class ZooRun:
    """One family in one flavour: its files, what ``assess`` printed and wrote, the row."""

    family: str
    flavour: str
    model: Path | None
    out: Path
    built: dict | None  # build_and_train's answer (None: it did not build)
    returncode: int | None
    stderr: str
    assessment: dict | None
    seconds: float
    row: dict


class Children:
    """The child processes of one set of zoo runs, so that they can be stopped together
    (:meth:`Ahead.stop`) without touching anybody else's."""

    def __init__(self) -> None:
        self.running: set = set()
        self.stopping = threading.Event()  # set: no new child starts

    def stop(self) -> None:
        self.stopping.set()
        for proc in list(self.running):
            proc.kill()


def _child(
    argv: list[str],
    *,
    timeout_s: float,
    env: dict | None,
    nice: int,
    children: Children | None = None,
) -> tuple[int, str, str]:
    """Run ``argv`` (at CPU priority ``nice`` when above 0, registered in ``children``);
    (return code, stdout, stderr).

    Raises:
        subprocess.TimeoutExpired: it ran over ``timeout_s`` (and was killed).
        RuntimeError: ``children`` were stopped before this one started.
    """
    import shutil

    children = children or Children()
    if children.stopping.is_set():
        raise RuntimeError("the zoo was stopped before this run started")
    if nice > 0 and shutil.which("nice"):
        argv = ["nice", "-n", str(nice), *argv]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    children.running.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    finally:
        children.running.discard(proc)
    return proc.returncode, out, err


def _child_env(flavour: str, base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    if flavour == KERAS3:  # a user's own Python: Keras 3, no workbench settings
        env.pop("TF_USE_LEGACY_KERAS", None)
    return env


def run_family(
    family: str,
    flavour: str,
    folder: Path,
    *,
    data_path: Path,
    training: Training | None = None,
    profile: str = "smoke",
    timeout_s: float = 3600,
    nice: int = 0,
    env: dict | None = None,
    children: Children | None = None,
) -> ZooRun:
    """Build, train and save one family, then ``python -m workbench assess`` on it.

    Everything runs in child processes (as a user would run it; each gets its memory back),
    at CPU priority ``nice``, with ``env`` (default: this process's environment). A family
    that does not build in ``flavour`` gives a row that says why.
    """
    training = training or Training()
    start = time.perf_counter()
    slug = run_id(family, flavour)
    model_path = folder / slug / f"{family}.keras"
    out = folder / slug / "assessment"
    spec = json.dumps({"family": family, "flavour": flavour, "data": str(data_path),
                       "out": str(model_path), "training": training.__dict__})  # fmt: skip
    code, stdout, stderr = _child(
        [sys.executable, "-m", "workbench.assess.zoo", "build", spec],
        timeout_s=timeout_s, env=_child_env(flavour, env), nice=nice, children=children,
    )  # fmt: skip
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    built = json.loads(lines[-1]) if code == 0 and lines else None
    if built is None or "error" in built:
        reason = (built or {}).get("error") or stderr.strip().splitlines()[-1:]
        row = {"family": family, "flavour": flavour, "status": f"does not build: {reason}"}
        return ZooRun(family, flavour, None, out, None, None, stderr, None,
                      time.perf_counter() - start, row)  # fmt: skip
    code, _, stderr = _child(
        [sys.executable, "-m", "workbench", "assess", "--model", str(model_path),
         "--data", str(data_path), "--out", str(out), "--profile", profile, "--quiet"],
        timeout_s=timeout_s, env=dict(os.environ if env is None else env), nice=nice,
        children=children,
    )  # fmt: skip
    doc = None
    if code == 0 and (out / "assessment.json").exists():
        doc = json.loads((out / "assessment.json").read_text())
    seconds = time.perf_counter() - start
    row = row_of(family, flavour, built, doc, seconds=seconds, stderr=stderr)
    return ZooRun(family, flavour, model_path, out, built, code, stderr, doc, seconds,
                  row)  # fmt: skip


class Ahead:
    """Zoo runs started before their tests need them: ``jobs`` at a time, each in child
    processes at CPU priority ``nice``, in the order given.

    CI's zoo is CPU work that is mostly single-threaded (building Keras graphs, tfmot's
    wrapping, the TFLite converter): started with the test session at a low priority it uses
    what the other tests leave idle (waiting on servers, kernels, a browser), and the zoo's
    tests, run last, find their results ready or nearly so.
    """

    def __init__(
        self,
        runs: list[tuple[str, str]],
        folder: Path,
        *,
        data_path: Path,
        jobs: int = 2,
        nice: int = 19,
        profile: str = "smoke",
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.children = Children()  # this pool's child processes, and no one else's
        environment = dict(os.environ)  # as it is now: tests may change it while these run
        self.folder, self.data_path = Path(folder), Path(data_path)
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="zoo")
        self._futures = {
            tuple(run): self._pool.submit(
                run_family,
                *run,
                self.folder,
                data_path=self.data_path,
                nice=nice,
                profile=profile,
                env=environment,
                children=self.children,
            )
            for run in runs
        }

    def runs(self) -> list[tuple[str, str]]:
        return list(self._futures)

    def result(self, family: str, flavour: str, *, timeout_s: float) -> ZooRun:
        """The run's result, waiting at most ``timeout_s`` for it.

        Raises:
            KeyError: the run was not started here.
            TimeoutError: it is not done within ``timeout_s`` (the message says which).
        """
        from concurrent.futures import TimeoutError as FutureTimeout

        future = self._futures[(family, flavour)]
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            raise TimeoutError(
                f"the zoo run {run_id(family, flavour)} was not done after {timeout_s:.0f} s"
            ) from None

    def stop(self) -> None:
        """Cancel the runs not started, kill this pool's children (no one else's), and wait
        for its threads."""
        self.children.stop()
        for future in self._futures.values():
            future.cancel()
        self._pool.shutdown(wait=True)


def row_of(
    family: str, flavour: str, built: dict, doc: dict | None, *, seconds: float, stderr: str = ""
) -> dict:
    """One line of the zoo's table from a family's ``assessment.json``."""
    row: dict = {
        "family": family,
        "flavour": flavour,
        "input": f"{built['input_size']}x{built['input_size']}",
        "parameters": built["parameters"],
        "keras_test_accuracy": built["test_accuracy"],
    }
    if doc is None:
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:]
        return {**row, "status": f"assess failed: {tail[0] if tail else 'no output'}",
                "seconds": seconds}  # fmt: skip
    variants = {v["variant"]: v for v in doc["variants"]}
    float32, int8 = variants.get("float32", {}), variants.get("int8", {})
    ok = [v["variant"] for v in doc["variants"] if v["status"] == "ok"]
    skipped = {v["variant"]: _first_line(v.get("reason")) for v in doc["variants"]
               if v["status"] != "ok"}  # fmt: skip
    splits = doc["splits"]
    run = splits.get("run", {}) if splits.get("status") == "ok" else {}
    debug = int8.get("quant_debug") or {}
    row.update(
        {
            "status": "ok",
            "MACs": float32.get("macs"),
            "float_accuracy": doc["float_model"]["test_accuracy"],
            "float32_tflite_delta_pp": float32.get("delta_pp"),
            "int8_agreement": int8.get("agreement_float"),
            "int8_worst_layers": ", ".join(
                f"{r['layer']} ({r['rmse_over_scale']:.2f})" for r in debug.get("layers", [])[:3]
            )
            or debug.get("error"),
            "variants_ok": ", ".join(ok),
            "variants_skipped": "; ".join(f"{k}: {v}" for k, v in skipped.items()),
            "tf_keras": doc["assessed"]["model"].get("tf_keras"),
            "cuts": len(splits.get("cut_points", [])),
            "split": run.get("after") or splits.get("reason"),
            "split_agreement": run.get("agreement"),
            "seconds": seconds,
        }
    )
    return row


def _first_line(text: str | None, limit: int = 160) -> str:
    """A reason's first line, short enough for a table cell (the full one is in the JSON)."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ----------------------------------------------------------------------------- the table


def reasons(rows: list[dict]) -> dict[str, list[str]]:
    """Why variants were skipped, across the zoo: reason -> the family/flavours it hit."""
    out: dict[str, list[str]] = {}
    for r in rows:
        for part in filter(None, (r.get("variants_skipped") or "").split("; ")):
            variant, _, why = part.partition(": ")
            out.setdefault(why, []).append(f"{r['family']} ({r['flavour']}, {variant})")
    return out


def write_table(rows: list[dict], path: Path, *, hardware: str | None = None) -> Path:
    """The zoo's table as a page in the report's style (``reports/zoo.html``)."""
    from workbench.core import machine
    from workbench.report import page

    hardware = hardware or machine.describe_hardware()
    done = [r for r in rows if r.get("status") == "ok"]
    intro = [
        f"{len(rows)} runs ({len(done)} assessed): every keras.applications family that "
        "takes a small input, built with weights=None, trained a few steps on CIFAR-10, saved "
        "by Keras 3 and by tf-keras where the family exists there, then `workbench assess "
        "--profile smoke`.",
        hardware,
    ]
    columns = ["family", "flavour", "status", "input", "parameters", "MACs",
               "keras_test_accuracy", "float32_tflite_delta_pp", "int8_agreement",
               "int8_worst_layers", "cuts", "split", "split_agreement", "seconds",
               "variants_ok", "variants_skipped", "tf_keras"]  # fmt: skip
    why = [{"reason": k, "runs": ", ".join(v)} for k, v in reasons(rows).items()]
    sections = [
        page.Section("Families", tables=[page.Table(rows, columns=columns, row_name="family")]),
        page.Section(
            "Why variants were skipped",
            paragraphs=[] if why else ["No variant was skipped."],
            tables=[page.Table(why, row_name="reason")] if why else [],
        ),
    ]
    return page.render_page(path, title="The zoo: keras.applications through assess",
                            intro=intro, sections=sections)  # fmt: skip


def _build_main(spec: str) -> int:
    """``python -m workbench.assess.zoo build SPEC``: build, train, save; print one JSON line."""
    args = json.loads(spec)
    try:
        info = build_and_train(
            args["family"], args["flavour"], Path(args["data"]), Path(args["out"]),
            training=Training(**args["training"]),
        )  # fmt: skip
    except (ValueError, TypeError, AttributeError) as err:  # the family does not build here
        info = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "build":
        sys.exit(_build_main(sys.argv[2]))
    sys.exit("usage: python -m workbench.assess.zoo build SPEC (run by make zoo's tests)")
