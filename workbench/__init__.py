"""The edge-cloud AI workbench: the package behind the numbered notebooks.

TensorFlow 2.16+ ships Keras 3 as ``tf.keras``, but TensorFlow Model
Optimization (pruning, clustering, quantization-aware training) only understands
Keras 2 models. With ``TF_USE_LEGACY_KERAS=1``, ``tf.keras`` resolves to the
``tf_keras`` package (Keras 2), so every model the workbench builds can be
compressed later. The variable belongs in the environment: the Jupyter kernel
"Python (workbench)" sets it in its kernel spec (``make setup``, Binder's
``postBuild``), and Binder's ``start`` exports it for the whole session. For
plain Python, importing ``workbench`` sets it *if it is unset* (an explicit
value, e.g. ``TF_USE_LEGACY_KERAS=0``, is respected). TensorFlow reads it when
it is imported and when ``tf.keras`` is first used: import ``workbench`` first,
or set it in your shell.
If ``tf.keras`` is Keras 3 anyway, :func:`check_keras` says why instead of
failing later with a confusing tfmot error.

Wings, one per stage of the flow (imports run one way, lowest first): ``core`` (paths,
atomic writes, memory, timing), ``data``, ``models``, then ``cloud`` (training, export, the
model server), ``edge`` (LiteRT, compression, the budgeted search) and ``network`` (links),
``collab`` (edge and cloud together), ``report``, and ``run`` (the notebooks) and ``assess``
(the whole flow for any model); ``cli`` is the ``workbench`` command.

The distribution is called ``edge-cloud-workbench``, not ``workbench``: an unrelated
project named ``workbench`` on PyPI installs a package of this import name, and
``workbench --version`` (like every ``workbench`` command) warns when both are installed.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"  # the one place it is written (pyproject.toml reads it)

# Only if unset: the kernel spec or the shell may have set it, and an explicit value wins.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Quieter TensorFlow start-up logs; users can override in their shell.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class KerasVersionError(RuntimeError):
    """TensorFlow was imported with Keras 3 before the workbench could select Keras 2."""


def check_keras() -> None:
    """Raise a clear error if ``tf.keras`` is Keras 3 (tfmot would then fail).

    Raises:
        KerasVersionError: when ``tf.keras`` resolved to Keras 3: TensorFlow's Keras was
            used before ``workbench`` could set ``TF_USE_LEGACY_KERAS``, or the variable is
            set to something other than ``1``.
    """
    from workbench.core import quiet

    tf = quiet.import_tensorflow()  # TensorFlow's start-up lines on a CPU-only machine, filtered
    module = tf.keras.__name__
    if module.startswith("tf_keras"):
        return
    value = os.environ.get("TF_USE_LEGACY_KERAS")
    if value not in (None, "1", "true", "True"):
        cause = (
            f"TF_USE_LEGACY_KERAS is set to {value!r} in this environment, which selects Keras 3. "
            "Set it to 1 (or unset it and `import workbench` first) and restart the kernel."
        )
    else:
        cause = (
            "tf.keras was used before `workbench` set TF_USE_LEGACY_KERAS=1. Restart the kernel "
            'and `import workbench` first, use the kernel "Python (workbench)" (its spec sets '
            "the variable), or `export TF_USE_LEGACY_KERAS=1` before starting Python."
        )
    raise KerasVersionError(
        f"tf.keras is {module} (Keras 3), but TensorFlow Model Optimization needs Keras 2 "
        f"(the tf-keras package). {cause}"
    )
