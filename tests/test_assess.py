"""``workbench assess`` end to end, on models no notebook uses, and on pairs that do not fit.

- the README's worked example: a Keras 3 CNN with a residual add on scikit-learn's 8x8
  digits, trained and saved in a fresh Python as a user would (the README's code, run as is);
- a tf-keras MobileNetV2 (alpha 0.35) at a non-square 32x40 input, trained briefly on the
  digits scaled up to RGB;
- bad pairs (shape, class count, corrupt file): exit code 2, the message, nothing written.

The command runs in its own process with the smoke profile (``--profile smoke``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import deadlines
import numpy as np
import pytest

from workbench.core import paths

pytestmark = pytest.mark.slow
POST_TRAINING = ("float32", "dynamic_range", "float16", "int8")


def _python(code: str, cwd: Path, *, keras3: bool = False, timeout: int = 600):
    env = dict(os.environ)
    if keras3:  # a user's own Python: Keras 3, no workbench settings
        env.pop("TF_USE_LEGACY_KERAS", None)
    done = deadlines.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
        timeout_s=timeout, what="a user's script that trains and saves a model",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def readme_example() -> str:
    """The Python block of the README's worked example (the one marked ``# example: digits``)."""
    readme = (paths.REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    found = [b for b in blocks if b.startswith("# example: digits")]
    assert len(found) == 1, "the README must hold exactly one '# example: digits' block"
    return found[0]


def assess(model: Path, data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    # a few minutes on 2 cores; under pytest-timeout's 1200 s, so that a hang names itself
    return deadlines.run(
        [
            sys.executable, "-m", "workbench", "assess", "--model", str(model),
            "--data", str(data), "--out", str(out), "--profile", "smoke", "--quiet", *extra,
        ],
        capture_output=True, text=True, timeout_s=900, what=f"`workbench assess` of {model.name}",
    )  # fmt: skip


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("digits")
    _python(readme_example(), folder, keras3=True)
    return folder / "artifacts/examples/digits_cnn.keras", folder / "artifacts/examples/digits.npz"


MOBILENET = """
import numpy as np, workbench, tf_keras as keras
d = np.load("{digits}")
def rgb(x):  # 8x8 grayscale -> 32x40 RGB (scaled up 4x, padded at the sides)
    x = np.kron(x[..., 0], np.ones((4, 4), np.uint8))
    return np.repeat(np.pad(x, ((0, 0), (0, 0), (4, 4)))[..., None], 3, axis=-1)
x_train, x_test = rgb(d["x_train"]), rgb(d["x_test"])
np.savez("digits_rgb.npz", x_train=x_train, y_train=d["y_train"], x_test=x_test, y_test=d["y_test"])
keras.utils.set_random_seed(0)
inputs = keras.Input((32, 40, 3))
scaled = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
model = keras.applications.MobileNetV2(input_tensor=scaled, alpha=0.35, weights=None, classes=10)
for layer in model.layers:  # statistics that follow a short training run
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.9
model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, d["y_train"], epochs=6, batch_size=32, verbose=0)
print("test accuracy", model.evaluate(x_test, d["y_test"], verbose=0)[1])
model.save("mobilenet_v2.keras")
"""


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory, digits) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("mobilenet")
    _python(MOBILENET.format(digits=digits[1]), folder)
    return folder / "mobilenet_v2.keras", folder / "digits_rgb.npz"


def validate_against_shipped_schema(doc: dict) -> None:
    """``assessment.json`` against ``workbench/assess/assessment.schema.json`` as installed."""
    from importlib.resources import files

    import jsonschema

    text = files("workbench.assess").joinpath("assessment.schema.json").read_text()
    jsonschema.Draft202012Validator(json.loads(text)).validate(doc)


def check_assessment(out: Path, model: Path) -> dict:
    """What every assessment must hold (issue 11's checks), and the shipped JSON Schema."""
    doc = json.loads((out / "assessment.json").read_text())
    validate_against_shipped_schema(doc)
    for package in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert"):
        assert doc["packages"][package], (package, doc["packages"])
    variants = {v["variant"]: v for v in doc["variants"]}
    for name in POST_TRAINING:
        assert variants[name]["status"] == "ok", variants[name]
    assert variants["int8"]["agreement_float"] >= 0.95, variants["int8"]
    for v in doc["variants"]:
        assert v["status"] in ("ok", "skipped"), v
        if v["status"] == "skipped":
            assert v["reason"], v
        else:
            assert v["bytes"] > 0 and v["gzip_bytes"] > 0 and v["p50_ms"] > 0
            assert (out / "edge" / v["file"]).exists()
    assessed = doc["assessed"]
    assert assessed["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert assessed["data"]["test_images"] > 0 and assessed["hardware"]["cores"]
    assert {r["faster"] for r in doc["links"]} <= {"edge", "cloud"} and len(doc["links"]) == 6
    splits = doc["splits"]
    assert splits["status"] == "ok" and splits["cut_points"][0] == "input"
    assert splits["run"]["status"] == "ok" and splits["run"]["agreement"] >= 0.98, splits["run"]
    cascade = doc["cascade"]
    assert 0 <= cascade["cloud_fraction"] <= 1 and 0 <= cascade["accuracy"] <= 1
    assert doc["seconds"] > 0
    for name in doc["figures"]:
        assert (out / "figures" / name).stat().st_size > 1000
    page = (out / "index.html").read_text()
    assert "Edge or cloud? Assessment" in page and "int8" in page
    return doc


def test_readme_example_keras3_residual_cnn(digits, tmp_path):
    model, data = digits
    out = tmp_path / "assessment"
    done = assess(model, data, out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Wrote" in done.stdout and "Traceback" not in done.stderr
    doc = check_assessment(out, model)
    assert doc["assessed"]["model"]["saved_by"].startswith("Keras 3")
    assert "bridged from Keras 3" in doc["assessed"]["model"]["tf_keras"]
    cuts = doc["splits"]["cut_points"]
    assert "add" in cuts and "conv2d_1" not in cuts, cuts  # the residual branch is no cut


def test_mobilenet_v2_non_square_tf_keras(mobilenet, tmp_path):
    model, data = mobilenet
    out = tmp_path / "assessment"
    done = assess(model, data, out, "--links", "lan,wifi,5g,4g,3g,satellite")
    assert done.returncode == 0, done.stderr[-3000:]
    doc = check_assessment(out, model)
    assert doc["assessed"]["data"]["image_shape"] == [32, 40, 3]
    cuts = doc["splits"]["cut_points"]
    # MobileNetV2's block 2 is residual: its output (the add) is a cut, its inside is not
    assert "block_2_add" in cuts
    assert not {"block_2_expand", "block_2_depthwise", "block_2_project"} & set(cuts)


def _npz(path: Path, x_train, y_train, x_test, y_test) -> Path:
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def test_bad_pairs_exit_2_with_the_message_and_write_nothing(digits, tmp_path):
    model, data = digits
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (20, 8, 8, 1), dtype=np.uint8)
    twelve = np.arange(20) % 12
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(model.read_bytes()[:2000])
    earlier = tmp_path / "earlier"  # an earlier assessment must survive a failed one intact
    earlier.mkdir()
    record = {
        "earlier": True,
        "written_by": {"tool": "workbench assess", "entries": ["assessment.json"]},
    }
    (earlier / "assessment.json").write_text(json.dumps(record))
    cases = [
        (model, _npz(tmp_path / "rgb.npz", rgb, twelve % 10, rgb, twelve % 10),
         ["(8, 8, 1)", "(32, 32, 3)", "digits_cnn.keras", "rgb"]),
        (model, _npz(tmp_path / "twelve.npz", gray, twelve, gray, twelve),
         ["10 outputs", "12 classes"]),
        (truncated, data, ["truncated.keras", "not a readable .keras"]),
        (model, tmp_path / "missing.npz", ["No dataset at"]),
    ]  # fmt: skip
    for i, (bad_model, bad_data, fragments) in enumerate(cases):
        out = earlier if i % 2 else tmp_path / "new-folder"
        done = assess(bad_model, bad_data, out)
        assert done.returncode == 2, (bad_data, done.stderr[-2000:])
        for fragment in fragments:
            assert fragment in done.stderr, (fragment, done.stderr)
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "new-folder").exists()
        assert json.loads((earlier / "assessment.json").read_text()) == record
        assert sorted(p.name for p in earlier.iterdir()) == ["assessment.json"]


def test_out_folder_with_other_files_is_refused(digits, tmp_path):
    model, data = digits
    (tmp_path / "mine.txt").write_text("keep me")
    done = assess(model, data, tmp_path)
    assert done.returncode == 2 and "mine.txt" in done.stderr  # named, not deleted
    assert (tmp_path / "mine.txt").read_text() == "keep me"
