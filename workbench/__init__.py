"""The edge-cloud AI workbench: the package behind the numbered notebooks.

Importing ``workbench`` sets ``TF_USE_LEGACY_KERAS=1`` *before* TensorFlow is
imported anywhere. Why: TensorFlow 2.16+ ships Keras 3 as ``tf.keras``, but
TensorFlow Model Optimization (pruning, clustering, quantization-aware
training) only understands Keras 2 models. With the variable set,
``tf.keras`` resolves to the ``tf_keras`` package (Keras 2), so every model
the workbench builds can be compressed later. The variable is read once, when
TensorFlow is first imported: import ``workbench`` first, or set it in your
shell. If TensorFlow was already imported with Keras 3, :func:`check_keras`
says so instead of failing later with a confusing tfmot error.

Stage modules (one per step of the flow): ``paths``, ``data``, ``models``,
``train``, ``compress``, ``edge``, ``serve``, ``network``, ``bench``,
``collab``, ``plots``, ``report``.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

os.environ["TF_USE_LEGACY_KERAS"] = "1"
# Quieter TensorFlow start-up logs; users can override in their shell.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class KerasVersionError(RuntimeError):
    """TensorFlow was imported with Keras 3 before the workbench could select Keras 2."""


def check_keras() -> None:
    """Raise a clear error if ``tf.keras`` is Keras 3 (tfmot would then fail).

    Raises:
        KerasVersionError: when TensorFlow was imported before ``workbench`` with
            ``TF_USE_LEGACY_KERAS`` unset.
    """
    import tensorflow as tf

    module = tf.keras.__name__
    if not module.startswith("tf_keras"):
        raise KerasVersionError(
            f"tf.keras is {module} (Keras 3), but TensorFlow Model Optimization needs Keras 2 "
            "(the tf-keras package). tf.keras was used before `workbench` set "
            "TF_USE_LEGACY_KERAS=1. Restart the kernel and `import workbench` first, or "
            "`export TF_USE_LEGACY_KERAS=1` before starting Python."
        )
