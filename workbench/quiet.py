"""Keep library noise out of what a reader sees, and let real warnings through.

TensorFlow, its converter and tfmot print a lot that says nothing to a reader of a
notebook or a report. Each filter below names one message and why it is harmless here;
anything not listed stays visible.
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

# (logger or warning category, message pattern, why it is harmless)
_KNOWN_WARNINGS = [
    (
        UserWarning,
        r"Statistics for quantized inputs were expected",
        # The converter's int8 path warns when a quantization-aware model's input has no
        # recorded range; we always pass a representative dataset, which supplies it.
        "int8 calibration data is always given",
    ),
    (
        UserWarning,
        r"You are saving your model as an HDF5 file",
        # tf-keras' legacy-format nag; the workbench saves .keras files.
        "the workbench saves .keras files",
    ),
    (
        UserWarning,
        r"`layer.add_variable` is deprecated|`layer.apply` is deprecated",
        # Raised inside tfmot's wrappers (their code, not ours); no effect on results.
        "tfmot internals",
    ),
]
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
]


class _DropKnown(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in _KNOWN_LOG_LINES)


def install() -> None:
    """Install the filters once: TensorFlow's Python logger, absl, and the known warnings."""
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO/WARNING lines off
    for name in ("tensorflow", "absl", "tf_keras", "h5py"):
        logger = logging.getLogger(name)
        logger.addFilter(_DropKnown())
        if logger.level in (logging.NOTSET, logging.INFO, logging.DEBUG):
            logger.setLevel(logging.WARNING)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)
        absl_logging.get_absl_handler().addFilter(_DropKnown())
    for category, pattern, _why in _KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*(?:{pattern})", category=category)


@contextlib.contextmanager
def native_output(what: str) -> Iterator[list[str]]:
    """Capture what C++ code writes to the process's stderr (file descriptor 2) meanwhile.

    The TFLite converter and its calibrator print status lines such as ``fully_quantize: 0,
    inference_type: 6, ...`` straight to fd 2, which Jupyter shows under the cell. They are
    kept and yielded as a list of lines: on an exception they are appended to its message
    (they then explain the failure); lines that look like errors are re-emitted as warnings.
    """
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no real fd 2 (unusual embedding): nothing to capture
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
            if lines:
                err.args = (
                    f"{err.args[0] if err.args else err}\n{what} printed:\n"
                    + "\n".join(lines[-20:]),
                    *err.args[1:],
                )
            raise
        finally:
            _restore(saved)  # idempotent; also on KeyboardInterrupt
            with contextlib.suppress(OSError):
                os.close(saved)
        lines += _read(sink)
        for line in lines:
            if re.search(r"\b(error|fatal)\b", line, re.IGNORECASE):
                warnings.warn(f"{what}: {line}", RuntimeWarning, stacklevel=3)


def _restore(saved: int) -> None:
    sys.stderr.flush()
    with contextlib.suppress(OSError):
        os.dup2(saved, 2)


def _read(sink) -> list[str]:
    sink.flush()
    sink.seek(0)
    return [line for line in sink.read().decode(errors="replace").splitlines() if line.strip()]
