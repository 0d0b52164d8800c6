"""Library noise kept out of what a reader sees (workbench.core.quiet), real lines kept."""

import logging
import subprocess
import sys
import textwrap

import pytest

from workbench.core import quiet

# Lines seen in executed notebooks (TensorFlow 2.21 on CPU-only machines).
NOISE = [
    "I0000 00:00:1796304267.655246    6040 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors "
    "from different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.",
    "E0000 00:00:1796304270.481564    6040 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1796304352.785285    6940 util.cc:131] oneDNN supports DT_INT32 only on "
    "platforms with AVX-512. Falling back to the default Eigen-based implementation if present.",
    "I0000 00:00:1796305775.922659    1639 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
]


@pytest.mark.parametrize("line", NOISE)
def test_known_native_lines_are_noise(line):
    assert quiet.is_noise(line)


@pytest.mark.parametrize(
    "line",
    [
        "E0000 00:00:1.0 op_kernel.cc:1830] OP_REQUIRES failed at conv_ops.cc: INVALID_ARGUMENT",
        "Segmentation fault",
        "a real warning from native code",
    ],
)
def test_other_native_lines_are_kept(line):
    assert not quiet.is_noise(line)


def test_the_slow_callback_warning_is_dropped_and_other_records_kept(caplog):
    quiet.install()
    logger = logging.getLogger("tensorflow")
    logger.propagate = True
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        logger.warning(
            "Callback method `on_train_batch_end` is slow compared to the batch time (batch "
            "time: 0.0060s vs `on_train_batch_end` time: 0.0123s). Check your callbacks."
        )
        logger.warning("a warning worth reading")
    shown = [r.getMessage() for r in caplog.records]
    assert shown == ["a warning worth reading"]


def test_the_log_environment_fills_gaps_and_respects_explicit_values():
    environ = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    quiet.set_log_environment(environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "0"}, "an explicit value wins"
    environ = {}
    quiet.set_log_environment(environ)
    assert environ == quiet.LOG_ENVIRONMENT
    assert "TF_ENABLE_ONEDNN_OPTS" not in environ, "oneDNN stays as TensorFlow ships it"


def test_the_stderr_filter_drops_known_lines_at_any_time_and_passes_the_rest():
    """In a fresh process: fd 2 filtered from the call on, partial lines passed on."""
    script = textwrap.dedent(
        f"""
        import os, time
        from workbench.core import quiet
        assert quiet.filter_native_stderr() is True
        assert quiet.filter_native_stderr() is False  # once per process
        os.write(2, {NOISE[0]!r}.encode() + b"\\n")
        os.write(2, b"kept line one\\n" + {NOISE[1]!r}.encode() + b"\\nkept ")
        time.sleep(0.6)  # a partial line is passed on after 0.2 s of silence
        os.write(2, b"line two\\n")
        time.sleep(0.6)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["kept line one", "kept line two"]


def test_outside_a_kernel_nothing_is_redirected():
    assert quiet.in_kernel() is False


def test_the_training_strategy_is_described_without_private_class_names():
    import tensorflow as tf

    from workbench.cloud import train

    text = train.describe_strategy(tf.distribute.get_strategy())
    assert text.startswith("default strategy (no distribution) with 1 replica(s) on ")
    assert "_Default" not in text
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert train.strategy_name(mirrored) == "MirroredStrategy"
