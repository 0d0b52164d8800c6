"""Importing workbench selects Keras 2 for TensorFlow Model Optimization."""

import os
import subprocess
import sys


def test_import_sets_legacy_keras():
    import workbench  # noqa: F401

    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"


def test_tf_keras_is_keras_2_in_a_fresh_process():
    code = "import workbench, tensorflow as tf; workbench.check_keras(); print(tf.keras.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("tf_keras")


def test_import_after_tensorflow_still_selects_keras_2():
    code = "import tensorflow as tf; import workbench; workbench.check_keras(); print(tf.keras.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"},
    )
    assert out.returncode == 0 and out.stdout.strip().startswith("tf_keras"), out.stderr[-2000:]


def test_check_keras_explains_keras_3():
    code = (
        "import tensorflow as tf; tf.keras.layers; "  # tf.keras resolved to Keras 3 first
        "import workbench; workbench.check_keras()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"},
    )
    assert out.returncode != 0 and "import workbench" in out.stderr
