"""The CIFAR-10 loader: every source it accepts and every way a file can be wrong."""

from __future__ import annotations

import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from workbench import data


def _arrays(n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train),
        x_test=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test),
    )


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATASETS", str(tmp_path / "cache"))
    monkeypatch.delenv("WORKBENCH_CIFAR10", raising=False)


def _batch_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    flat = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # CIFAR stores CHW rows
    return pickle.dumps({b"data": flat, b"labels": [int(v) for v in y], b"batch_label": b"x"})


def _write_batches(folder: Path, a: dict) -> None:
    folder.mkdir(parents=True)
    xs = np.array_split(a["x_train"], 5)
    ys = np.array_split(a["y_train"], 5)
    for i in range(5):
        (folder / f"data_batch_{i + 1}").write_bytes(_batch_bytes(xs[i], ys[i]))
    (folder / "test_batch").write_bytes(_batch_bytes(a["x_test"], a["y_test"]))


def test_npz_roundtrip_and_describe(tmp_path):
    a = _arrays()
    np.savez(tmp_path / "d.npz", **a)
    d = data.load_cifar10(tmp_path / "d.npz")
    np.testing.assert_array_equal(d.x_train, a["x_train"])
    assert d.y_train.dtype == np.int64 and d.y_train.ndim == 1
    assert "train: 20 images" in d.describe() and str(tmp_path / "d.npz") in d.source


def test_keras_style_labels_are_flattened(tmp_path):
    a = _arrays()
    a["y_train"] = a["y_train"][:, None]
    np.savez(tmp_path / "d.npz", **a)
    assert data.load_cifar10(tmp_path / "d.npz").y_train.shape == (20,)


def test_env_var_is_used(tmp_path, monkeypatch):
    np.savez(tmp_path / "d.npz", **_arrays())
    monkeypatch.setenv("WORKBENCH_CIFAR10", str(tmp_path / "d.npz"))
    assert "$WORKBENCH_CIFAR10" in data.load_cifar10().source


def test_batches_folder_matches_arrays_and_is_cached(tmp_path):
    a = _arrays()
    _write_batches(tmp_path / "cifar-10-batches-py", a)
    d = data.load_cifar10(tmp_path)  # parent folder works too
    np.testing.assert_array_equal(d.x_train, a["x_train"])
    np.testing.assert_array_equal(d.y_test, a["y_test"])
    cached = Path(os.environ["WORKBENCH_DATASETS"]) / data.CACHE_NAME
    assert cached.exists()
    assert "dataset cache" in data.load_cifar10().source
    assert not list(cached.parent.glob("*.tmp"))


def test_archive_is_read_after_checksum(tmp_path, monkeypatch):
    a = _arrays()
    _write_batches(tmp_path / "src" / "cifar-10-batches-py", a)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with pytest.raises(data.DatasetError, match="truncated or a different file"):
        data.load_cifar10(archive)
    monkeypatch.setattr(data, "CIFAR10_BYTES", archive.stat().st_size)
    with pytest.raises(data.DatasetError, match="sha256"):
        data.load_cifar10(archive)
    monkeypatch.setattr(data, "CIFAR10_SHA256", data.file_digest(archive))
    d = data.load_cifar10(archive)
    np.testing.assert_array_equal(d.x_test, a["x_test"])
    assert "sha256 verified" in d.source


def test_truncated_npz_names_the_file(tmp_path):
    np.savez(tmp_path / "d.npz", **_arrays())
    raw = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "bad.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(data.DatasetError, match="bad.npz"):
        data.load_cifar10(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(x_train=a["x_train"].transpose(0, 3, 1, 2)), "transpose"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float32) / 255), "uint8"),
        (lambda a: a.update(y_test=a["y_test"] + 10), "outside 0-9"),
        (lambda a: a.update(y_train=a["y_train"][:5]), "expected \\(20,\\)"),
        (lambda a: a.pop("y_test"), "lacks the arrays"),
    ],
)
def test_malformed_arrays_are_refused(tmp_path, change, message):
    a = _arrays()
    change(a)
    np.savez(tmp_path / "d.npz", **a)
    with pytest.raises(data.DatasetError, match=message):
        data.load_cifar10(tmp_path / "d.npz")


def test_missing_path_says_what_to_do(tmp_path):
    with pytest.raises(data.DatasetError, match="not found at .*nope.npz"):
        data.load_cifar10(tmp_path / "nope.npz")


def test_corrupt_batch_is_refused_and_nothing_cached(tmp_path):
    a = _arrays()
    _write_batches(tmp_path / "b", a)
    (tmp_path / "b" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(data.DatasetError, match="data_batch_3"):
        data.load_cifar10(tmp_path / "b")
    assert not (Path(os.environ["WORKBENCH_DATASETS"]) / data.CACHE_NAME).exists()


def test_malicious_pickle_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    a = _arrays()
    _write_batches(tmp_path / "b", a)
    (tmp_path / "b" / "test_batch").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(data.DatasetError, match="refusing to load"):
        data.load_cifar10(tmp_path / "b")


def test_offline_download_fails_fast_with_clear_error(monkeypatch):
    monkeypatch.setattr(data, "CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    start = time.perf_counter()
    with pytest.raises(data.DatasetError, match="WORKBENCH_CIFAR10"):
        data.load_cifar10(timeout_s=3)
    assert time.perf_counter() - start < 10
    assert not list(Path(os.environ["WORKBENCH_DATASETS"]).glob("*.part"))


def test_download_switched_off():
    with pytest.raises(data.DatasetError, match="switched off"):
        data.load_cifar10(download=False)


def test_iris():
    x, y, features, classes = data.load_iris()
    assert x.shape == (150, 4) and len(classes) == 3 and len(features) == 4


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    d = data.Cifar10(**_arrays(), source="test")
    target = tmp_path / "c.npz"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        data.save_npz_atomic(target, d)
    assert not target.exists() and not list(tmp_path.iterdir())
