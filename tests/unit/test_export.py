"""Exports: TensorFlow Serving signatures for any image model, atomic versions, Keras files."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from workbench.cloud import export
from workbench.core import atomic


@pytest.fixture(scope="module")
def gray_model():
    """A small grayscale, non-square classifier (8x6x1 -> 3 classes)."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 6, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(buf, "PNG")
    return buf.getvalue()


def _signatures(folder):
    import tensorflow as tf

    return tf.saved_model.load(str(folder)).signatures


@pytest.mark.parametrize("input_scale", [1 / 255, None])
def test_signatures_take_the_datas_units_and_pngs_of_the_models_shape(
    gray_model, tmp_path, input_scale
):
    import tensorflow as tf

    target = export.export_saved_model(
        gray_model, base=tmp_path, name="gray", version=3, input_scale=input_scale
    )
    assert target == tmp_path / "gray" / "3" and (target / "saved_model.pb").exists()
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 1), dtype=np.uint8)
    scaled = pixels.astype(np.float32) * (np.float32(input_scale) if input_scale else 1)
    want = gray_model(scaled, training=False).numpy()
    sigs = _signatures(target)
    got = sigs["serving_default"](images=tf.constant(pixels, tf.float32))["probabilities"]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    pngs = tf.constant([_png(p) for p in pixels])
    got_png = sigs["predict_png"](image_bytes=pngs)["probabilities"]
    np.testing.assert_allclose(got_png.numpy(), want, atol=1e-6)
    wrong = tf.constant([_png(np.zeros((6, 8, 1), np.uint8))])
    with pytest.raises(tf.errors.InvalidArgumentError, match="takes 8x6 PNG images"):
        sigs["predict_png"](image_bytes=wrong)


def test_a_failed_export_keeps_the_old_version(gray_model, tmp_path, monkeypatch):
    target = export.export_saved_model(gray_model, base=tmp_path, name="m", version=1)
    stamp = (target / "saved_model.pb").read_bytes()
    import tensorflow as tf

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", disk_full)
    with pytest.raises(export.ExportError, match="No space left.*previous export"):
        export.export_saved_model(gray_model, base=tmp_path, name="m", version=1)
    assert (target / "saved_model.pb").read_bytes() == stamp
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["1"]


def test_stale_leftovers_do_not_block_an_export(gray_model, tmp_path):
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    target = export.export_saved_model(gray_model, base=tmp_path, name="m", version=1)
    for kind in ("tmp", "old"):  # what an export killed midway leaves
        (target.parent / f".1.{kind}-{atomic._HOST}-{child.pid}-abcd_123").mkdir()
    assert export.export_saved_model(gray_model, base=tmp_path, name="m", version=1) == target
    assert [p.name for p in target.parent.iterdir()] == ["1"]
    assert (target / "saved_model.pb").exists()


def test_export_to_an_object_store_url_uploads_the_version(gray_model):
    fsspec = pytest.importorskip("fsspec")
    pytest.importorskip("workbench.cloud.serving.storage")

    url = export.export_saved_model(gray_model, base="memory://models/", name="m", version=2)
    assert url == "memory://models/m/2"
    fs = fsspec.filesystem("memory")
    assert fs.exists("/models/m/2/saved_model.pb") and fs.exists("/models/m/2/variables")
    fs.rm("/models", recursive=True)


def test_keras_file_roundtrip_atomic_and_clear_errors(gray_model, tmp_path, monkeypatch):
    path = export.save_keras(gray_model, tmp_path / "m.keras")
    x = np.random.default_rng(1).random((2, 8, 6, 1)).astype(np.float32)
    np.testing.assert_allclose(export.load_keras(path).predict(x, verbose=0), gray_model(x))
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gray_model, "save", broken_save)
    with pytest.raises(export.ExportError, match="disk full"):
        export.save_keras(gray_model, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.keras"]
    with pytest.raises(FileNotFoundError, match="notebook 02"):
        export.load_keras(tmp_path / "none.keras")
    (tmp_path / "junk.keras").write_text("junk")
    with pytest.raises(ValueError, match="not a readable Keras model"):
        export.load_keras(tmp_path / "junk.keras")


def test_metadata_is_json_with_strings_for_the_rest(tmp_path):
    path = export.write_metadata(tmp_path / "meta.json", {"a": 1, "where": tmp_path})
    assert json.loads(path.read_text()) == {"a": 1, "where": str(tmp_path)}


@pytest.mark.parametrize(
    ("tf_config", "chief"),
    [
        (None, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
        (
            {
                "cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                "task": {"type": "worker", "index": 0},
            },
            False,
        ),
        (
            {
                "cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                "task": {"type": "chief", "index": 0},
            },
            True,
        ),
    ],
)
def test_who_is_chief(monkeypatch, tmp_path, tf_config, chief):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert export.is_chief() is chief
    path = export.write_metadata(tmp_path / "m.json", {"x": 1})
    assert path.exists() is chief  # a non-chief worker keeps nothing


def test_only_image_models_with_one_input_export():
    import tf_keras as keras

    a, b = keras.Input((4, 4, 3)), keras.Input((4, 4, 3))
    two = keras.Model([a, b], keras.layers.Concatenate()([a, b]))
    with pytest.raises(ValueError, match="has 2 inputs"):
        export.serving_module(two)
    flat = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="takes inputs of shape"):
        export.serving_module(flat)
    four = keras.Sequential([keras.Input((4, 4, 4)), keras.layers.Flatten()])
    with pytest.raises(ValueError, match="takes 4 channels"):
        export.serving_module(four)
