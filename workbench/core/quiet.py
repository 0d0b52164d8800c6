"""Keep library noise out of what a reader sees, and let real warnings through.

TensorFlow, its converter, LiteRT and tfmot print a lot that says nothing to a reader of a
notebook or a report. Each filter below names one message and why it is harmless here;
anything not listed stays visible (Python warnings and log records pass through; lines that
C++ code writes to stderr are captured around the calls that make them and written back,
minus the known ones). Three layers:

- the environment (:data:`LOG_ENVIRONMENT`, set in the kernel spec by ``make setup`` and
  Binder's ``postBuild``, and by :func:`set_log_environment` for the runner's kernels):
  TensorFlow's C++ INFO and WARNING lines off once its logging is initialised;
- :func:`import_tensorflow`: the lines TensorFlow prints while it loads, before its logging
  reads that environment (oneDNN's notice, CUDA probes), captured and filtered;
- in a Jupyter kernel, :func:`filter_native_stderr`: known lines that native code prints
  later (a CUDA probe on first use, oneDNN's int32 notice) dropped from fd 2 for good.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, MutableMapping

_INSTALLED = False
_RELAY: threading.Thread | None = None

# The environment a process running TensorFlow (a notebook's kernel) should start with.
# TF_CPP_MIN_LOG_LEVEL=2: C++ INFO and WARNING lines off, errors stay. TF_ENABLE_ONEDNN_OPTS
# is deliberately absent: it changes which kernels run (and so the last bits of results),
# and the workbench measures TensorFlow's default; only its notice is filtered below.
LOG_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2"}

# Python warnings: (category, message pattern). Each is harmless for the reason given.
_KNOWN_WARNINGS = [
    # The converter's int8 path warns when a model's input has no recorded range; the
    # workbench always passes a representative dataset, which supplies it.
    (UserWarning, r"Statistics for quantized inputs were expected"),
    # tf-keras' legacy-format nag; the workbench saves .keras files.
    (UserWarning, r"You are saving your model as an HDF5 file"),
    # Raised inside tfmot's wrappers (their code, not ours); no effect on results.
    (UserWarning, r"`layer.add_variable` is deprecated|`layer.apply` is deprecated"),
    # Cluster-preserving QAT on a layer left unclustered on purpose (the classifier is kept
    # dense): there is nothing to preserve, and tfmot quantizes it as plain QAT does.
    (UserWarning, r"No clustering performed on layer"),
]

# Python log records (TensorFlow, absl, tf-keras, tfmot's root logger): message patterns.
_KNOWN_LOG_LINES = [
    # compress.to_tflite converts from a frozen concrete function on purpose (same flatbuffer,
    # a tenth of the time of the SavedModel round trip this warning recommends).
    re.compile(r"Please consider providing the trackable_obj argument"),
    # tf-keras' optimizer when tfmot's cluster-preserving QAT freezes cluster indices: those
    # variables are deliberately not trained, so "no gradient" is the intended state.
    re.compile(r"Gradients do not exist for variables"),
    # SavedModel export progress, one line per conversion (a temp folder nobody needs).
    re.compile(
        r"Assets written to|Function `.*` contains input name\(s\)|Found untraced functions"
    ),
    re.compile(r"Compiled the loaded model, but the compiled metrics have yet to be built"),
    # tf-keras compares callback and batch times over the first five batches of a fit only,
    # where a progress display is first drawn; the workbench's bars redraw at most twice a
    # second (workbench.core.progressbar), far below a training step's time after that.
    re.compile(r"Callback method `on_\w+_batch_(begin|end)` is slow compared to the batch time"),
    re.compile(r"No training configuration found in save file"),
    # Reading back a .keras file saved mid-run (notebook 02's export check, after a resumed
    # run): its optimizer is not rebuilt until it trains, so its state is not loaded; the
    # file is read to predict, which needs no optimizer.
    re.compile(r"Skipping variable loading for optimizer"),
    # PCQAT on a layer without zeros (the first and last layers are left dense on purpose):
    # tfmot falls back to cluster-preserving QAT for it, which is what we want.
    re.compile(r"does not contain zero weights, so apply CQAT instead"),
]

# Lines C++ code writes straight to stderr (file descriptor 2).
_KNOWN_NATIVE_LINES = [
    # absl's preamble before TensorFlow initialises its logging.
    re.compile(r"All log messages before absl::InitializeLog\(\) is called"),
    # A TensorFlow build with GPU support looking for a GPU on a machine that has none: it
    # runs on the CPU, as intended (a machine with a GPU does not print these).
    re.compile(r"cudart_stub\.cc.*Could not find cuda drivers"),
    re.compile(r"cuda_platform\.cc.*failed call to cuInit"),
    re.compile(r"Unable to register cu(DNN|FFT|BLAS) factory"),
    re.compile(r"computation placer already registered"),
    # oneDNN's kernels are TensorFlow's default on x86 CPUs; the notice says results may
    # differ from other builds in the last bits. The workbench keeps that default (it is
    # what it measures) and the course's notes say so; two lines, one per library loaded.
    re.compile(r"oneDNN custom operations are on"),
    # An int32 op (a quantizer's index arithmetic) runs on Eigen instead of oneDNN; the
    # result is the same, and the check prints this on AVX-512 CPUs as well.
    re.compile(r"oneDNN supports DT_INT32 only on platforms with AVX-512"),
    # Which vector instructions the binary was built for: the CPU is described by the
    # workbench's own hardware line where it matters.
    re.compile(r"This TensorFlow binary is optimized to use available CPU instructions"),
    re.compile(r"To enable the following instructions: .* rebuild TensorFlow"),
    # The TFLite converter's and calibrator's status lines, one block per conversion.
    re.compile(r"fully_quantize: \d, inference_type: \d"),
    re.compile(r"Estimated count of arithmetic ops"),
    re.compile(r"Ignored (output_format|drop_control_dependency)"),
    re.compile(r"tf_tfl_flatbuffer_helpers|flatbuffer_export\.cc"),
    # LiteRT announcing its default CPU delegate when an interpreter is created.
    re.compile(r"Created TensorFlow Lite XNNPACK delegate for CPU"),
]


class _DropKnown(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in _KNOWN_LOG_LINES)


def install() -> None:
    """Install the filters once: Python loggers, absl, and the known warnings."""
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO/WARNING lines off
    for name in ("", "tensorflow", "absl", "tf_keras", "h5py"):
        logger = logging.getLogger(name)
        logger.addFilter(_DropKnown())
        for handler in logger.handlers:
            handler.addFilter(_DropKnown())
        if name and logger.level in (logging.NOTSET, logging.INFO, logging.DEBUG):
            logger.setLevel(logging.WARNING)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)
        absl_logging.get_absl_handler().addFilter(_DropKnown())
    for category, pattern in _KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*(?:{pattern})", category=category)


def set_log_environment(environ: MutableMapping[str, str] | None = None) -> None:
    """Put :data:`LOG_ENVIRONMENT` into ``environ`` (default: this process's, which the
    kernels it starts inherit) where a variable is unset: an explicit value wins."""
    environ = os.environ if environ is None else environ
    for name, value in LOG_ENVIRONMENT.items():
        environ.setdefault(name, value)


def import_tensorflow():
    """``import tensorflow``, with the lines its C++ start-up prints on a CPU-only machine
    filtered (see ``_KNOWN_NATIVE_LINES``); other lines are written back to stderr.

    The devices are listed inside the capture too (a CUDA build probes for a GPU then, once
    per process). In a Jupyter kernel, :func:`filter_native_stderr` is installed as well.
    """
    if in_kernel():
        filter_native_stderr()
    if "tensorflow" in sys.modules:
        install()
        return sys.modules["tensorflow"]
    set_log_environment()
    with native_output("TensorFlow"):
        import tensorflow as tf

        tf.config.list_physical_devices()
    install()
    return tf


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (IPython with a kernel attached)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")


def filter_native_stderr() -> bool:
    """From now on, drop the known lines native code writes to this process's stderr.

    Some lines come long after import, from whichever call first needs a device or an op
    (``failed call to cuInit``, oneDNN's int32 notice), where no capture around one call
    catches them. A pipe takes the place of file descriptor 2 and a daemon thread copies
    every line to the original descriptor unless it is a known one (:func:`is_noise`); a
    line without its newline yet is passed on after 0.2 s of silence. Meant for a Jupyter
    kernel, which forwards fd 2 into the running cell's output: installed there by
    :func:`import_tensorflow`. Python's own ``sys.stderr`` is not affected.

    Returns:
        True if installed now; False if it already was, or fd 2 cannot be duplicated.
    """
    global _RELAY
    if _RELAY is not None:
        return False
    try:
        original = os.dup(2)
    except OSError:
        return False
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    _RELAY = threading.Thread(
        target=_relay, args=(read_end, original), name="workbench-stderr-filter", daemon=True
    )
    _RELAY.start()
    return True


def _relay(read_end: int, original: int) -> None:
    import select

    pending = b""
    while True:
        ready, _, _ = select.select([read_end], [], [], 0.2 if pending else None)
        if not ready:  # a partial line and silence: pass it on as it is
            os.write(original, pending)
            pending = b""
            continue
        chunk = os.read(read_end, 65536)
        if not chunk:  # every writer closed fd 2
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = [line for line in lines if not is_noise(line.decode(errors="replace"))]
        if kept:
            os.write(original, b"\n".join(kept) + b"\n")
    if pending:
        os.write(original, pending)


def is_noise(line: str) -> bool:
    """Whether a line written by native code is one of the known harmless ones."""
    return any(p.search(line) for p in _KNOWN_NATIVE_LINES)


@contextlib.contextmanager
def native_output(what: str) -> Iterator[list[str]]:
    """Capture what native code writes to the process's stderr (fd 2) meanwhile.

    The TFLite converter and its calibrator print status lines such as ``fully_quantize: 0,
    inference_type: 6, ...`` straight to fd 2, which Jupyter shows under the cell. The
    captured lines are yielded as a list (filled when the block ends). Known harmless ones
    are dropped; the others are written back to stderr, so real warnings stay visible. On an
    exception they are also appended to its message, where they usually explain it.
    """
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no real fd 2 (an unusual embedding): nothing to capture
        yield lines
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        except Exception as err:
            _restore(saved)
            lines += _read(sink)
            shown = [line for line in lines if not is_noise(line)]
            if shown:
                err.args = (
                    f"{err.args[0] if err.args else err}\n{what} printed:\n"
                    + "\n".join(shown[-20:]),
                    *err.args[1:],
                )
            raise
        finally:
            _restore(saved)  # idempotent; also on KeyboardInterrupt
            with contextlib.suppress(OSError):
                os.close(saved)
        lines += _read(sink)
        kept = [line for line in lines if not is_noise(line)]
        if kept:
            print("\n".join(kept), file=sys.stderr, flush=True)


def _restore(saved: int) -> None:
    sys.stderr.flush()
    with contextlib.suppress(OSError):
        os.dup2(saved, 2)


def _read(sink) -> list[str]:
    sink.flush()
    sink.seek(0)
    return [line for line in sink.read().decode(errors="replace").splitlines() if line.strip()]
