"""Training as a cloud job: resume, checkpoint errors, atomic exports, MAC counts."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import models, train


@pytest.fixture(scope="module")
def tiny_data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 96)
    return x, y


def _fit(arch, data, directory, epochs):
    x, y = data
    return train.fit(
        arch,
        x,
        y,
        x_val=x[:32],
        y_val=y[:32],
        epochs=epochs,
        batch_size=32,
        checkpoint_dir=directory,
        progress=False,
    )


def test_seed_cnn_is_the_seed_article_cnn():
    m = models.seed_cnn()
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dense",
    ]
    # conv1 32x32x32x(3x3x3) + conv2 16x16x64x(3x3x32) + dense 4096x128 + 128x10
    assert models.count_macs(m) == 884_736 + 4_718_592 + 524_288 + 1_280
    assert m.count_params() == 896 + 18_496 + 524_416 + 1_290


def test_resume_continues_from_the_last_epoch(tiny_data, tmp_path):
    first = _fit("seed_cnn", tiny_data, tmp_path, epochs=1)
    assert first.resumed_from == 0 and len(first.history["loss"]) == 1
    second = _fit("seed_cnn", tiny_data, tmp_path, epochs=2)
    assert second.resumed_from == 1 and second.epochs_run == 1
    assert len(second.history["loss"]) == 2  # history carried across the interruption
    assert int(second.model.optimizer.iterations.numpy()) == 2 * 3  # optimizer state restored
    again = _fit("seed_cnn", tiny_data, tmp_path, epochs=2)
    assert again.epochs_run == 0


def test_checkpoint_of_another_architecture_is_refused_untouched(tiny_data, tmp_path):
    _fit("seed_cnn", tiny_data, tmp_path, epochs=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(train.CheckpointError, match="seed_cnn.*improved_cnn"):
        _fit("improved_cnn", tiny_data, tmp_path, epochs=1)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_corrupt_checkpoint_is_refused_untouched(tiny_data, tmp_path):
    _fit("seed_cnn", tiny_data, tmp_path, epochs=1)
    data_file = next(tmp_path.glob("ckpt-1.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:100])
    with pytest.raises(train.CheckpointError, match="ckpt-1"):
        _fit("seed_cnn", tiny_data, tmp_path, epochs=2)
    assert data_file.stat().st_size == 100


def test_export_is_atomic_and_keeps_the_old_version_on_failure(tiny_data, tmp_path, monkeypatch):
    model = _fit("seed_cnn", tiny_data, tmp_path / "ck", epochs=1).model
    target = train.export_saved_model(model, base=tmp_path / "serving", name="m", version=1)
    assert (target / "saved_model.pb").exists()
    stamp = (target / "saved_model.pb").read_bytes()

    import tensorflow as tf

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", disk_full)
    with pytest.raises(train.ExportError, match="No space left"):
        train.export_saved_model(model, base=tmp_path / "serving", name="m", version=1)
    assert (target / "saved_model.pb").read_bytes() == stamp
    assert [p.name for p in (tmp_path / "serving" / "m").iterdir()] == ["1"]


def test_strategy_is_default_on_cpu(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("GPU present")
    assert "Default" in type(train.select_strategy()).__name__
