"""Keep library noise out of what a reader sees, and let real warnings through.

TensorFlow, its converter, LiteRT and tfmot print a lot that says nothing to a reader of a
notebook or a report. Each filter below names one message and why it is harmless here;
anything not listed stays visible (Python warnings and log records pass through; lines that
C++ code writes to stderr are captured around the calls that make them and written back,
minus the known ones).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator

_INSTALLED = False

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
    re.compile(r"No training configuration found in save file"),
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


def import_tensorflow():
    """``import tensorflow``, with the lines its C++ start-up prints on a CPU-only machine
    filtered (see ``_KNOWN_NATIVE_LINES``); other lines are written back to stderr."""
    if "tensorflow" in sys.modules:
        install()
        return sys.modules["tensorflow"]
    with native_output("TensorFlow"):
        import tensorflow as tf
    install()
    return tf


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
