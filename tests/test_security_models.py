"""Model files are programs: a model's code never runs unless the user says --trust-model.

Each crafted model writes a marker file when its code runs (a Python ``lambda`` in a Keras
``Lambda`` layer, or ``tf.io.write_file`` in a SavedModel's signature); the marker must stay
absent through loading, ``assess`` and the model server, and appear only when trusted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from security_helpers import file_writing_savedmodel, save_lambda_model, tiny_images
from serving_helpers import export_tiny

from workbench.models import loading, trust


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "MARKER-model-code-ran"


# ---------------------------------------------------------------- the SavedModel scan


def test_an_exported_model_has_nothing_to_refuse(tmp_path):
    export_tiny(tmp_path, 1)
    assert trust.scan_saved_model(tmp_path / "tiny" / "1") == []
    trust.check_saved_model(tmp_path / "tiny" / "1")  # no error


def test_file_ops_in_the_function_library_are_found(tmp_path, marker):
    folder = file_writing_savedmodel(tmp_path, marker)
    found = trust.scan_saved_model(folder)
    assert {f.op for f in found} == {"WriteFile", "ReadFile"}
    assert all(f.where.startswith("function ") for f in found)
    with pytest.raises(trust.UntrustedModelError, match="WriteFile.*--trust-model"):
        trust.check_saved_model(folder)
    assert not marker.exists()


def test_checkpoint_ops_outside_the_saver_functions_are_found(tmp_path):
    import tensorflow as tf

    class Saver(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            tf.raw_ops.SaveV2(
                prefix=str(tmp_path / "stolen"),
                tensor_names=["x"],
                shape_and_slices=[""],
                tensors=[x],
            )
            return {"y": x}

    module = Saver()
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.serve})
    found = trust.scan_saved_model(tmp_path / "m")
    assert [f.op for f in found] == ["SaveV2"] and "serve" in found[0].where


# ---------------------------------------------------------------- loading for assess / notebooks


@pytest.mark.parametrize("fmt", ["h5", "savedmodel", "keras3"])
def test_a_lambda_is_refused_not_run(tmp_path, marker, fmt):
    path = save_lambda_model(tmp_path, marker, fmt)
    with pytest.raises(loading.ContractError, match="trust-model") as err:
        loading.load_classifier(path)
    print(err.value)
    assert "Lambda" in str(err.value) or "lambda" in str(err.value)
    assert not marker.exists(), "the model's code ran while it was refused"


def test_a_trusted_lambda_runs_with_a_warning(tmp_path, marker):
    path = save_lambda_model(tmp_path, marker, "h5")
    with pytest.warns(UserWarning, match="model file is code"):
        classifier = loading.load_classifier(path, trust_model=True)
    assert marker.exists(), "trusted: tf-keras rebuilt the Lambda and ran it"
    assert classifier.num_classes == 3


def test_a_plain_savedmodel_that_touches_files_is_refused(tmp_path, marker):
    folder = file_writing_savedmodel(tmp_path, marker)
    with pytest.raises(loading.ContractError, match="WriteFile.*ReadFile|ReadFile.*WriteFile"):
        loading.load_classifier(folder)
    assert not marker.exists()


@pytest.mark.slow
def test_assess_refuses_model_code_and_names_the_way_out(tmp_path, marker):
    path = save_lambda_model(tmp_path, marker, "h5")
    np.savez(tmp_path / "data.npz", **tiny_images())
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench",
            "assess",
            "--model",
            str(path),
            "--data",
            str(tmp_path / "data.npz"),
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(run.stderr[-2000:])
    assert run.returncode == 2
    assert "--trust-model" in run.stderr and "Traceback" not in run.stderr
    assert not marker.exists() and not out.exists()


# ---------------------------------------------------------------- the model server


@pytest.mark.slow
def test_the_server_refuses_a_model_that_touches_files_unless_trusted(tmp_path, marker):
    from workbench.cloud import serving

    base = tmp_path / "base"
    export_tiny(base, 1)
    file_writing_savedmodel(base, marker, name="evil")
    images = np.zeros((1, 32, 32, 3), np.uint8)
    with serving.serving(base, poll_seconds=0) as server:
        status = httpx.get(f"{server.url}/v1/models/evil").json()["model_version_status"][0]
        assert status["state"] == "END"
        assert "WriteFile" in status["status"]["error_message"]
        assert "--trust-model" in status["status"]["error_message"]
        assert "evil/1" in httpx.get(f"{server.url}/healthz").json()["load_errors"]
        r = httpx.post(f"{server.url}/v1/models/evil:predict", json={"instances": [[0]]})
        assert r.status_code == 404
        with server.client("tiny") as client:  # the others keep serving
            assert client.predict(images).outputs.shape == (1, 10)
    assert not marker.exists(), "the refused model's graph ran"

    with serving.serving(base, poll_seconds=0, trust_model=True) as server:
        assert "--trust-model" in server.output()
        r = httpx.post(
            f"{server.url}/v1/models/evil:predict",
            json={"instances": images.astype(float).tolist()},
        )
        assert r.status_code == 200
        hostname = Path("/etc/hostname")
        if hostname.exists():  # what the issue saw: this machine's file in a prediction
            assert r.json()["predictions"][0]["host"] == hostname.read_text()
    assert marker.exists(), "trusted: the model ran with the server's rights"
