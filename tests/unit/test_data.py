"""Datasets: the CIFAR-10 loader and its cache, and the general labelled-image loader.

Every source the loaders accept, every way a file can be wrong, and the cache's promises:
it is used only for the source it was built from, checked against its digest, written
best effort, and it spares decoding (and hashing) an unchanged archive.
"""

from __future__ import annotations

import os
import pickle
import tarfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.data import cifar10, datasets


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


@pytest.fixture
def small_full(monkeypatch):
    """Let a 20/10-image CIFAR-10 pass as the full dataset (the real one is 50,000/10,000)."""
    monkeypatch.setattr(cifar10, "CIFAR10_TRAIN_IMAGES", 20)
    monkeypatch.setattr(cifar10, "CIFAR10_TEST_IMAGES", 10)


def _cache() -> Path:
    return Path(os.environ["WORKBENCH_DATASETS"]) / cifar10.CACHE_NAME


def _batch_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    flat = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # CIFAR stores CHW rows
    return pickle.dumps({b"data": flat, b"labels": [int(v) for v in y], b"batch_label": b"x"})


def _write_batches(folder: Path, a: dict) -> Path:
    folder.mkdir(parents=True)
    xs = np.array_split(a["x_train"], 5)
    ys = np.array_split(a["y_train"], 5)
    for i in range(5):
        (folder / f"data_batch_{i + 1}").write_bytes(_batch_bytes(xs[i], ys[i]))
    (folder / "test_batch").write_bytes(_batch_bytes(a["x_test"], a["y_test"]))
    return folder


def _archive(tmp_path: Path, a: dict, monkeypatch) -> Path:
    """A tar.gz laid out like the official one, accepted as official (size and sha256)."""
    src = _write_batches(tmp_path / "src" / "cifar-10-batches-py", a)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    monkeypatch.setattr(cifar10, "CIFAR10_BYTES", archive.stat().st_size)
    monkeypatch.setattr(cifar10, "CIFAR10_SHA256", datasets.file_digest(archive))
    return archive


# ------------------------------------------------------------------ CIFAR-10 sources


def test_npz_roundtrip_describe_digest_and_read_only(tmp_path):
    a = _arrays()
    np.savez(tmp_path / "d.npz", **a)
    d = cifar10.load_cifar10(tmp_path / "d.npz")
    np.testing.assert_array_equal(d.x_train, a["x_train"])
    assert d.y_train.dtype == np.int64 and d.y_train.ndim == 1
    assert "train: 20 images" in d.describe() and str(tmp_path / "d.npz") in d.source
    assert isinstance(d, datasets.ImageDataset) and d.classes == cifar10.CIFAR10_CLASSES
    assert d.digest == datasets.arrays_digest(d.x_train, d.y_train, d.x_test, d.y_test)
    with pytest.raises(ValueError, match="read-only"):
        d.x_train[0, 0, 0, 0] = 1  # an in-place edit would make the digest a lie


def test_a_subset_npz_loads_and_says_so(tmp_path):
    np.savez(tmp_path / "d.npz", **_arrays())
    d = cifar10.load_cifar10(tmp_path / "d.npz")
    assert "a subset: 20 of 50,000 training and 10 of 10,000 test images" in d.source
    assert not d.is_full


def test_digest_follows_the_arrays():
    a = _arrays()
    d = cifar10.Cifar10(**a, source="test")
    assert d.digest == cifar10.Cifar10(**a, source="other words").digest  # arrays, not the source
    changed = {**a, "x_test": a["x_test"].copy()}
    changed["x_test"][0, 0, 0, 0] ^= 1
    assert cifar10.Cifar10(**changed, source="test").digest != d.digest
    sub = d.subset(5, 3)
    assert isinstance(sub, cifar10.Cifar10) and sub.digest != d.digest
    assert sub.digest == datasets.arrays_digest(sub.x_train, sub.y_train, sub.x_test, sub.y_test)
    assert "first 5 train / 3 test" in sub.source


def test_keras_style_labels_are_flattened(tmp_path):
    a = _arrays()
    a["y_train"] = a["y_train"][:, None]
    np.savez(tmp_path / "d.npz", **a)
    assert cifar10.load_cifar10(tmp_path / "d.npz").y_train.shape == (20,)


def test_env_var_is_used(tmp_path, monkeypatch):
    np.savez(tmp_path / "d.npz", **_arrays())
    monkeypatch.setenv("WORKBENCH_CIFAR10", str(tmp_path / "d.npz"))
    assert "$WORKBENCH_CIFAR10" in cifar10.load_cifar10().source


def test_batches_folder_matches_arrays_and_is_cached(tmp_path, small_full):
    a = _arrays()
    _write_batches(tmp_path / "cifar-10-batches-py", a)
    d = cifar10.load_cifar10(tmp_path)  # parent folder works too
    np.testing.assert_array_equal(d.x_train, a["x_train"])
    np.testing.assert_array_equal(d.y_test, a["y_test"])
    assert _cache().exists() and not [p for p in _cache().parent.iterdir() if ".tmp-" in p.name]
    plain = cifar10.load_cifar10()
    assert "dataset cache" in plain.source and str(tmp_path / "cifar-10-batches-py") in plain.source
    assert plain.digest == d.digest


def test_an_incomplete_folder_is_refused_and_never_cached(tmp_path):
    _write_batches(tmp_path / "b", _arrays())  # 20/10 images, not 50,000/10,000
    with pytest.raises(datasets.DatasetError, match="full CIFAR-10 has 50,000 and 10,000"):
        cifar10.load_cifar10(tmp_path / "b")
    assert not _cache().exists()
    with pytest.raises(datasets.DatasetError, match="No CIFAR-10 found"):
        cifar10.load_cifar10(download=False)  # the 20 images never stand in for CIFAR-10


def test_a_cache_of_another_source_is_not_used(tmp_path, monkeypatch, small_full):
    a, b = _arrays(seed=1), _arrays(seed=2)
    _write_batches(tmp_path / "a", a)
    _write_batches(tmp_path / "b", b)
    cifar10.load_cifar10(tmp_path / "a")
    from_b = cifar10.load_cifar10(tmp_path / "b")
    np.testing.assert_array_equal(from_b.x_train, b["x_train"])
    assert "dataset cache" not in from_b.source
    monkeypatch.setenv("WORKBENCH_CIFAR10", str(tmp_path / "a"))
    np.testing.assert_array_equal(cifar10.load_cifar10().x_train, a["x_train"])


def test_a_changed_source_is_read_again(tmp_path, small_full):
    a, b = _arrays(seed=1), _arrays(seed=2)
    folder = _write_batches(tmp_path / "a", a)
    cifar10.load_cifar10(folder)
    changed = folder / "test_batch"
    changed.write_bytes(_batch_bytes(b["x_test"], b["y_test"]))  # same size: the mtime tells
    os.utime(changed, ns=(time.time_ns(), changed.stat().st_mtime_ns + 10**9))
    np.testing.assert_array_equal(cifar10.load_cifar10(folder).x_test, b["x_test"])


def test_an_unchanged_archive_is_neither_hashed_nor_decoded_nor_rewritten_again(
    tmp_path, monkeypatch, small_full
):
    a = _arrays()
    archive = _archive(tmp_path, a, monkeypatch)
    first = cifar10.load_cifar10(archive)
    assert "sha256 verified" in first.source
    written = _cache().stat().st_mtime_ns

    def no_hashing(*args, **kwargs):
        raise AssertionError("the archive was hashed again")

    with monkeypatch.context() as m:
        m.setattr(cifar10.datasets, "file_digest", no_hashing)
        m.setattr(cifar10, "_read_archive", no_hashing)
        m.setenv("WORKBENCH_CIFAR10", str(archive))
        again = cifar10.load_cifar10()
    assert "decoded copy from the dataset cache" in again.source and again.digest == first.digest
    assert _cache().stat().st_mtime_ns == written, "a cache that was read must not be rewritten"
    os.utime(archive, ns=(time.time_ns(), archive.stat().st_mtime_ns + 10**9))
    assert "sha256 verified" in cifar10.load_cifar10(archive).source  # touched: checked again


def test_archive_checks_size_and_sha256(tmp_path, monkeypatch, small_full):
    a = _arrays()
    archive = _archive(tmp_path, a, monkeypatch)
    monkeypatch.setattr(cifar10, "CIFAR10_BYTES", 170_498_071)
    with pytest.raises(datasets.DatasetError, match="truncated or a different file"):
        cifar10.load_cifar10(archive, cache=False)
    monkeypatch.setattr(cifar10, "CIFAR10_BYTES", archive.stat().st_size)
    monkeypatch.setattr(cifar10, "CIFAR10_SHA256", "0" * 64)
    with pytest.raises(datasets.DatasetError, match="sha256"):
        cifar10.load_cifar10(archive, cache=False)


def test_a_corrupt_cache_is_detected_and_rebuilt(tmp_path, small_full):
    a = _arrays()
    folder = _write_batches(tmp_path / "a", a)
    cifar10.load_cifar10(folder)
    with np.load(_cache()) as f:
        stored = {k: f[k] for k in f.files}
    stored["x_train"] = stored["x_train"].copy()
    stored["x_train"][0] = 0  # same record of origin, other pixels
    np.savez(_cache(), **stored)
    with pytest.raises(datasets.DatasetError, match="recorded digest"):
        with pytest.warns(UserWarning, match="Not using the dataset cache"):
            cifar10.load_cifar10(download=False)
    with pytest.warns(UserWarning, match="Rebuilding the dataset cache"):
        d = cifar10.load_cifar10(folder)
    np.testing.assert_array_equal(d.x_train, a["x_train"])
    assert cifar10.load_cifar10().digest == d.digest  # rebuilt


def test_a_cache_without_a_record_of_its_origin_is_not_used(tmp_path):
    _cache().parent.mkdir(parents=True)
    np.savez(_cache(), **_arrays())  # what an older workbench wrote
    with pytest.warns(UserWarning, match="no record of what it was built from"):
        with pytest.raises(datasets.DatasetError, match="no record of what it was built from"):
            cifar10.load_cifar10(download=False)


def test_a_cache_that_cannot_be_written_only_warns(tmp_path, monkeypatch, small_full):
    a = _arrays()
    folder = _write_batches(tmp_path / "a", a)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(cifar10.atomic, "open_file", read_only)
        with pytest.warns(UserWarning, match="Could not write the dataset cache"):
            d = cifar10.load_cifar10(folder)
    np.testing.assert_array_equal(d.x_train, a["x_train"])
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("WORKBENCH_DATASETS", str(tmp_path / "a-file" / "cache"))
    with pytest.warns(UserWarning, match="dataset folder cannot be created"):
        np.testing.assert_array_equal(cifar10.load_cifar10(folder).x_test, a["x_test"])


def test_a_read_only_cache_folder_only_warns(tmp_path, monkeypatch, small_full):
    """On a really read-only file system (a tmpfs mounted read-only; needs root)."""
    import subprocess

    folder = _write_batches(tmp_path / "a", _arrays())
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
        capture_output=True,
        check=False,
        timeout=30,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        monkeypatch.setenv("WORKBENCH_DATASETS", str(ro))
        with pytest.warns(UserWarning, match="Read-only file system"):
            d = cifar10.load_cifar10(folder)
        assert d.y_train.shape == (20,) and list(ro.iterdir()) == []
    finally:
        subprocess.run(["umount", str(ro)], check=False, timeout=30)


def test_truncated_npz_names_the_file(tmp_path):
    np.savez(tmp_path / "d.npz", **_arrays())
    raw = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "bad.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(datasets.DatasetError, match="bad.npz"):
        cifar10.load_cifar10(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(x_train=a["x_train"].transpose(0, 3, 1, 2)), "transpose"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float32) / 255), "uint8"),
        (lambda a: a.update(x_train=a["x_train"][:, :28, :28]), "32, 32, 3"),
        (lambda a: a.update(y_test=a["y_test"] + 10), "outside 0-9"),
        (lambda a: a.update(y_train=a["y_train"][:5]), "expected \\(20,\\)"),
        (lambda a: a.pop("y_test"), "lacks the arrays"),
    ],
)
def test_malformed_arrays_are_refused(tmp_path, change, message):
    a = _arrays()
    change(a)
    np.savez(tmp_path / "d.npz", **a)
    with pytest.raises(datasets.DatasetError, match=message):
        cifar10.load_cifar10(tmp_path / "d.npz")


def test_missing_path_says_what_to_do(tmp_path):
    with pytest.raises(datasets.DatasetError, match="not found at .*nope.npz"):
        cifar10.load_cifar10(tmp_path / "nope.npz")


def test_corrupt_batch_is_refused_and_nothing_cached(tmp_path, small_full):
    _write_batches(tmp_path / "b", _arrays())
    (tmp_path / "b" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(datasets.DatasetError, match="data_batch_3"):
        cifar10.load_cifar10(tmp_path / "b")
    assert not _cache().exists()


def test_malicious_pickle_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    _write_batches(tmp_path / "b", _arrays())
    (tmp_path / "b" / "test_batch").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(datasets.DatasetError, match="refusing to load"):
        cifar10.load_cifar10(tmp_path / "b")


def test_offline_download_fails_fast_with_clear_error(monkeypatch):
    monkeypatch.setattr(cifar10, "CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    start = time.perf_counter()
    with pytest.raises(datasets.DatasetError, match="WORKBENCH_CIFAR10"):
        cifar10.load_cifar10(timeout_s=3)
    assert time.perf_counter() - start < 10
    assert not [p for p in _cache().parent.iterdir()], "no partial download left"


def test_download_switched_off():
    with pytest.raises(datasets.DatasetError, match="switched off"):
        cifar10.load_cifar10(download=False)


def test_locate_says_what_would_be_used_without_decoding(tmp_path, monkeypatch, small_full):
    with pytest.raises(datasets.DatasetError, match="switched off"):
        cifar10.locate_cifar10(download=False)
    with pytest.raises(datasets.DatasetError, match="not found at"):
        cifar10.locate_cifar10(tmp_path / "nope.npz")
    (tmp_path / "cifar.txt").write_text("x")
    with pytest.raises(datasets.DatasetError, match="Don't know how to read"):
        cifar10.locate_cifar10(tmp_path / "cifar.txt")
    np.savez(tmp_path / "d.npz", **_arrays())
    assert str(tmp_path / "d.npz") in cifar10.locate_cifar10(tmp_path / "d.npz")
    folder = _write_batches(tmp_path / "a", _arrays())
    cifar10.load_cifar10(folder)
    monkeypatch.setattr(cifar10.datasets, "read_npz", None)  # locating must not read the arrays
    assert "dataset cache" in cifar10.locate_cifar10()


def test_iris():
    x, y, features, classes = datasets.load_iris()
    assert x.shape == (150, 4) and len(classes) == 3 and len(features) == 4


# ------------------------------------------------------------------ any labelled images


def _images(n_train=12, n_test=6, shape=(8, 6), channels=None, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    tail = shape if channels is None else (*shape, channels)
    make = (
        (lambda n: rng.integers(0, 256, (n, *tail), dtype=np.uint8))
        if dtype == np.uint8
        else (lambda n: rng.random((n, *tail)).astype(dtype))
    )
    return dict(
        x_train=make(n_train),
        y_train=rng.integers(0, 3, n_train),
        x_test=make(n_test),
        y_test=rng.integers(0, 3, n_test),
    )


def test_npz_grayscale_gets_a_channel_axis_and_keeps_its_dtype(tmp_path):
    a = _images(channels=None, dtype=np.float64)  # (N, 8, 6) float64, like sklearn's digits
    a["y_test"] = a["y_test"][:, None].astype(np.float32)  # (N, 1), integral floats
    np.savez(tmp_path / "g.npz", **a)
    d = datasets.load_image_dataset(tmp_path / "g.npz")
    assert d.x_train.shape == (12, 8, 6, 1) and d.x_train.dtype == np.float64
    assert d.image_shape == (8, 6, 1) and d.y_test.dtype == np.int64 and d.y_test.ndim == 1
    np.testing.assert_array_equal(d.x_train[..., 0], a["x_train"])  # not scaled
    assert d.classes == ("0", "1", "2") and "Image dataset from" in d.describe()


def test_npz_class_names_from_the_file_or_the_caller(tmp_path):
    a = _images(channels=3)
    np.savez(tmp_path / "c.npz", **a, classes=np.array(["cat", "dog", "emu"]))
    assert datasets.load_image_dataset(tmp_path / "c.npz").classes == ("cat", "dog", "emu")
    named = datasets.load_image_dataset(tmp_path / "c.npz", class_names=["a", "b", "c", "d"])
    assert named.classes == ("a", "b", "c", "d")  # a class with no images is allowed


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("x_test"), r"lacks the arrays \['x_test'\]"),
        (lambda a: a.update(x_train=a["x_train"].reshape(12, -1)), r"2 dimensions"),
        (lambda a: a.update(x_train=np.zeros((12, 8, 6, 4), np.uint8)), "4 channels"),
        (lambda a: a.update(x_test=np.zeros((6, 8, 7, 3), np.uint8)), "splits .* differ"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.int32)), "int32"),
        (lambda a: a.update(y_train=a["y_train"] - 5), "negative labels"),
        (lambda a: a.update(y_train=a["y_train"] + 0.5), "not whole numbers"),
        (lambda a: a.update(y_train=a["y_train"][:4]), r"expected \(12,\)"),
        (lambda a: a.update(x_test=a["x_test"][:0], y_test=a["y_test"][:0]), "x_test .* is empty"),
    ],
)
def test_npz_problems_name_the_file_and_the_problem(tmp_path, change, message):
    a = _images(channels=3)
    change(a)
    np.savez(tmp_path / "bad.npz", **a)
    with pytest.raises(datasets.DatasetError, match=message) as err:
        datasets.load_image_dataset(tmp_path / "bad.npz")
    assert "bad.npz" in str(err.value)


def test_non_finite_pixels_are_counted_per_split(tmp_path):
    a = _images(channels=3, dtype=np.float32)
    a["x_test"][1, 0, 0, 0] = np.nan
    a["x_test"][4, 2, 1, :] = np.inf
    np.savez(tmp_path / "nan.npz", **a)
    with pytest.raises(
        datasets.DatasetError, match=r"x_test .* 4 non-finite .* in 2 of its 6 images"
    ):
        datasets.load_image_dataset(tmp_path / "nan.npz")


def test_ragged_images_are_refused(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)
    a = _images(channels=3)
    np.savez(tmp_path / "r.npz", **(a | {"x_train": ragged}))  # pickled object array
    with pytest.raises(datasets.DatasetError, match="x_train in .*r.npz .*ragged"):
        datasets.load_image_dataset(tmp_path / "r.npz")


def test_class_names_must_cover_the_labels(tmp_path):
    a = _images(channels=3)
    a["y_train"][0] = 5
    np.savez(tmp_path / "c.npz", **a)
    with pytest.raises(
        datasets.DatasetError, match="go up to 5, outside 0-2 for the 3 class names"
    ):
        datasets.load_image_dataset(tmp_path / "c.npz", class_names=["a", "b", "c"])


def _png(path: Path, size=(6, 8), mode="RGB", value=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    pixels = np.full((size[1], size[0], channels), value, np.uint8).squeeze()
    Image.fromarray(pixels, mode=None).convert(mode).save(path)


def test_class_folders_split_deterministically_and_stratified(tmp_path):
    for cls, n in (("cat", 10), ("dog", 5), ("emu", 2)):
        for i in range(n):
            _png(tmp_path / "imgs" / cls / f"{i:03}.png", value=40 * i % 256)
    (tmp_path / "imgs" / "cat" / "notes.txt").write_text("not an image")
    d = datasets.load_image_dataset(tmp_path / "imgs")
    again = datasets.load_image_dataset(tmp_path / "imgs")
    assert d.digest == again.digest  # deterministic
    assert d.classes == ("cat", "dog", "emu") and d.image_shape == (8, 6, 3)
    assert np.bincount(d.y_test, minlength=3).tolist() == [2, 1, 1]  # 0.2 each, at least one
    assert np.bincount(d.y_train, minlength=3).tolist() == [8, 4, 1]
    assert "skipped 1 non-image files" in d.source and "notes.txt" in d.source
    assert len(set(d.y_train[:6].tolist())) > 1, "shuffled, so that subset() takes every class"
    reordered = datasets.load_image_dataset(tmp_path / "imgs", class_names=["emu", "dog", "cat"])
    assert reordered.classes == ("emu", "dog", "cat")
    assert np.bincount(reordered.y_train, minlength=3).tolist() == [1, 4, 8]


def test_train_and_test_folders_and_grayscale_jpeg(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                path = tmp_path / "ds" / split / cls / f"{i}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((5, 7), 100 * i, np.uint8), mode="L").save(path)
    d = datasets.load_image_dataset(tmp_path / "ds")
    assert d.x_train.shape == (6, 5, 7, 1) and d.x_test.shape == (4, 5, 7, 1)
    assert "train/ and test/ folders" in d.source


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda root: _png(root / "b" / "x.png", size=(7, 8)),
            r"Images differ: .*\.png is 6x8 RGB, .*x\.png is 7x8 RGB",
        ),
        (lambda root: _png(root / "b" / "x.png", mode="L"), r"Images differ: .* 6x8 L"),
        (lambda root: _png(root / "b" / "x.png", mode="RGBA"), r"x\.png has image mode 'RGBA'"),
        (
            lambda root: (root / "b" / "x.png").write_bytes(b"not a png"),
            r"x\.png is not a readable image",
        ),
        (lambda root: (root / "c").mkdir(), r"class folder .*c holds no PNG or JPEG"),
        (lambda root: (root / "train").mkdir(), r"has train/ but no test/"),
    ],
)
def test_folder_problems_name_the_files(tmp_path, make, message):
    root = tmp_path / "ds"
    for cls in ("a", "b"):
        for i in range(3):
            _png(root / cls / f"{i}.png")
    make(root)
    with pytest.raises(datasets.DatasetError, match=message):
        datasets.load_image_dataset(root)


def test_folder_class_names_must_be_the_folders(tmp_path):
    for cls in ("a", "b"):
        for i in range(2):
            _png(tmp_path / "ds" / cls / f"{i}.png")
    with pytest.raises(
        datasets.DatasetError, match=r"do not match the class folders .*\['a', 'b'\]"
    ):
        datasets.load_image_dataset(tmp_path / "ds", class_names=["a", "c"])
    with pytest.raises(datasets.DatasetError, match="no class sub-folders"):
        datasets.load_image_dataset(tmp_path / "ds" / "a")


def test_unknown_paths_and_kinds(tmp_path):
    with pytest.raises(datasets.DatasetError, match="No dataset at"):
        datasets.load_image_dataset(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(datasets.DatasetError, match="Don't know how to read"):
        datasets.load_image_dataset(tmp_path / "x.csv")


def test_no_warnings_on_a_plain_load(tmp_path):
    np.savez(tmp_path / "d.npz", **_arrays())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cifar10.load_cifar10(tmp_path / "d.npz")
