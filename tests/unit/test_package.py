"""Importing workbench selects Keras 2 for TensorFlow Model Optimization."""

import os
import subprocess
import sys


def _python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter without TF_USE_LEGACY_KERAS in its environment."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )


def test_import_sets_legacy_keras():
    import workbench  # noqa: F401

    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"


def test_tf_keras_is_keras_2_in_a_fresh_process():
    out = _python(
        "import workbench, tensorflow as tf; workbench.check_keras(); print(tf.keras.__name__)"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("tf_keras")


def test_import_after_tensorflow_still_selects_keras_2():
    out = _python(
        "import tensorflow as tf; import workbench; workbench.check_keras(); print(tf.keras.__name__)"
    )
    assert out.returncode == 0 and out.stdout.strip().startswith("tf_keras"), out.stderr[-2000:]


def test_check_keras_explains_keras_3():
    # tf.keras resolved to Keras 3 before workbench could select Keras 2
    out = _python(
        "import tensorflow as tf; tf.keras.layers; import workbench; workbench.check_keras()"
    )
    assert out.returncode != 0 and "import workbench" in out.stderr
