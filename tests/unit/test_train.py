"""Training as a cloud job: resume, checkpoint errors, input pipelines for any image, MACs."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.cloud import train
from workbench.data import pipeline
from workbench.models import architectures, macs


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
    m = architectures.seed_cnn()
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
    assert macs.count_macs(m) == 884_736 + 4_718_592 + 524_288 + 1_280
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


def test_strategy_is_default_on_cpu(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("GPU present")
    assert "Default" in type(train.select_strategy()).__name__


def test_non_chief_workers_write_into_a_scratch_folder_they_remove(tmp_path):
    class Extended:
        should_checkpoint = False

    class Resolver:
        task_type, task_id = "worker", 1

    class WorkerStrategy:
        extended, cluster_resolver = Extended(), Resolver()

    real = tmp_path / "ckpt"
    with train._write_dirs(WorkerStrategy(), real, tmp_path / "tb") as (write_dir, log_dir):
        assert write_dir.is_dir() and tmp_path not in write_dir.parents
        assert "worker1" in str(write_dir) and log_dir is not None and log_dir != tmp_path / "tb"
        scratch = write_dir.parent
    assert not scratch.exists() and not real.exists()
    Extended.should_checkpoint = True
    with train._write_dirs(WorkerStrategy(), real, None) as (write_dir, log_dir):
        assert write_dir == real and real.is_dir() and log_dir is None


@pytest.mark.parametrize("shape", [(12, 20, 1), (32, 32, 3), (9, 9, 3)])
def test_pipeline_scales_and_augments_any_image_size(shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, *shape), dtype=np.uint8)
    y = rng.integers(0, 3, 10)
    plain = next(iter(pipeline.make_dataset(x, y, batch_size=10, training=False)))[0].numpy()
    np.testing.assert_allclose(plain, x.astype(np.float32) / 255, rtol=1e-6)
    raw = next(iter(pipeline.make_dataset(x, y, batch_size=10, training=False, input_scale=None)))
    np.testing.assert_array_equal(raw[0].numpy(), x.astype(np.float32))
    jittered = pipeline.make_dataset(x, y, batch_size=10, training=True, augment=True, seed=1)
    images, labels = next(iter(jittered))
    assert images.shape == (10, *shape) and sorted(labels.numpy()) == sorted(y)
    # each one is an original, maybe flipped, shifted by at most an eighth of its size
    pad_h, pad_w = max(1, round(shape[0] / 8)), max(1, round(shape[1] / 8))
    for got in images.numpy()[:3]:
        assert any(
            np.allclose(got, _shifted(orig[:, ::flip], dy, dx) / 255, atol=1e-6)
            for orig in x.astype(np.float32)
            for flip in (1, -1)
            for dy in range(-pad_h, pad_h + 1)
            for dx in range(-pad_w, pad_w + 1)
        )


def _shifted(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``img`` moved by (dy, dx) pixels, zeros where nothing moved in."""
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_predict_multiplies_by_input_scale():
    import tf_keras as keras

    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten()])
    x = np.arange(8, dtype=np.uint8).reshape(2, 2, 2, 1)
    np.testing.assert_allclose(train.predict(model, x), x.reshape(2, 4) / 255, rtol=1e-6)
    np.testing.assert_array_equal(train.predict(model, x, input_scale=None), x.reshape(2, 4))
    np.testing.assert_allclose(train.predict(model, x, input_scale=0.5), x.reshape(2, 4) / 2)


def test_augmented_pipeline_is_reproducible_from_its_seed():
    """Same seed, same views in the same order (the fair baseline of workbench.edge.distill)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 3, 50)

    def views(seed: int) -> np.ndarray:
        ds = pipeline.make_dataset(x, y, batch_size=16, training=True, augment=True, seed=seed)
        return np.concatenate([b[0].numpy() for b in ds.repeat().take(8)])  # over two epochs

    first = views(1)
    np.testing.assert_array_equal(first, views(1))
    assert not np.array_equal(first, views(2))
