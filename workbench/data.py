"""Datasets: iris for the edge tier, CIFAR-10 for the cloud tier.

One CIFAR-10 loader serves every notebook. :func:`load_cifar10` looks, in order, at

1. an explicit ``path`` argument;
2. the ``WORKBENCH_CIFAR10`` environment variable;
3. the cache ``datasets/cifar10.npz``;
4. the official archive, downloaded (when online) and checked against its sha256.

A path may be the official ``cifar-10-python.tar.gz``, its extracted
``cifar-10-batches-py/`` folder, or an ``.npz`` holding ``x_train, y_train,
x_test, y_test``. Whatever it reads, it returns uint8 HWC images and 1-D int64
labels, checked for shape and range, in a :class:`Cifar10` that says where it
came from.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench import paths

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# Published checksums of the official archive (md5 on the dataset page; sha256 as Keras checks it).
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_BYTES = 170_498_071
CACHE_NAME = "cifar10.npz"
ENV_VAR = "WORKBENCH_CIFAR10"


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt or malformed. The message says which file and what to do."""


@dataclass(frozen=True)
class Cifar10:
    """CIFAR-10 arrays plus where they came from.

    Attributes:
        x_train: uint8 images, shape (N, 32, 32, 3), RGB, HWC.
        y_train: int64 labels 0-9, shape (N,).
        x_test: uint8 images, shape (M, 32, 32, 3).
        y_test: int64 labels 0-9, shape (M,).
        source: a human-readable description of what was loaded.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    classes: tuple[str, ...] = CIFAR10_CLASSES

    def describe(self) -> str:
        """One paragraph: source, images per split, images per class."""
        train_counts = np.bincount(self.y_train, minlength=10)
        test_counts = np.bincount(self.y_test, minlength=10)
        lines = [
            f"CIFAR-10 from {self.source}",
            f"  train: {len(self.y_train):,} images, test: {len(self.y_test):,} images "
            f"({self.x_train.shape[1]}x{self.x_train.shape[2]}x{self.x_train.shape[3]}, "
            f"{self.x_train.dtype})",
        ]
        lines.append(
            "  per class (train/test): "
            + ", ".join(
                f"{name} {tr}/{te}"
                for name, tr, te in zip(self.classes, train_counts, test_counts, strict=True)
            )
        )
        return "\n".join(lines)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Cifar10:
        """Return the first ``n_train`` / ``n_test`` images (``None`` keeps a split whole)."""
        return Cifar10(
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_test=self.x_test[:n_test],
            y_test=self.y_test[:n_test],
            source=self.source
            + (f" (first {n_train} train / {n_test} test)" if n_train or n_test else ""),
        )


# --------------------------------------------------------------------------- iris


def load_iris() -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Iris from scikit-learn (bundled with it, no download).

    Returns:
        ``(x, y, feature_names, class_names)``: 150 x 4 float features, 150 int labels.
    """
    from sklearn.datasets import load_iris as _load

    bunch = _load()
    return bunch.data, bunch.target, list(bunch.feature_names), list(bunch.target_names)


# ------------------------------------------------------------------------ CIFAR-10


def load_cifar10(
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    cache: bool = True,
    timeout_s: float = 10.0,
) -> Cifar10:
    """Load CIFAR-10 from the first source that exists (see the module docstring).

    Args:
        path: an ``.npz``, the official ``.tar.gz`` or its extracted folder.
        download: try the official download when nothing local is found.
        cache: after reading an archive or folder, write ``datasets/cifar10.npz``
            so the next load is fast (written atomically).
        timeout_s: network timeout for the download; offline it fails within it.

    Returns:
        The checked arrays and their source.

    Raises:
        DatasetError: nothing found, or what was found is corrupt or malformed.
    """
    if path is not None:
        return _load_any(Path(path), origin="the path you passed", cache=cache)
    env = os.environ.get(ENV_VAR)
    if env:
        return _load_any(Path(env), origin=f"${ENV_VAR}", cache=cache)
    cached = paths.datasets_dir() / CACHE_NAME
    if cached.exists():
        return _load_any(cached, origin="the dataset cache", cache=False)
    if not download:
        raise DatasetError(_nothing_found_message(cached, reason="downloading is switched off"))
    archive = _download(paths.datasets_dir() / "cifar-10-python.tar.gz", timeout_s=timeout_s)
    return _load_any(archive, origin="the official download", cache=cache)


def _nothing_found_message(cached: Path, reason: str) -> str:
    return (
        f"No CIFAR-10 found ({reason}). Looked for: an explicit path, ${ENV_VAR} (unset), "
        f"and the cache {cached}. Fix: download {CIFAR10_URL} on a machine that is online "
        f"and set {ENV_VAR}=/path/to/cifar-10-python.tar.gz (or its extracted "
        "cifar-10-batches-py/ folder, or an .npz with x_train, y_train, x_test, y_test)."
    )


def _load_any(path: Path, *, origin: str, cache: bool) -> Cifar10:
    if not path.exists():
        raise DatasetError(
            f"CIFAR-10 not found at {path} (given by {origin}). Check the path, or unset it "
            f"to use the cache or the download. Accepted: cifar-10-python.tar.gz, its extracted "
            "cifar-10-batches-py/ folder, or an .npz with x_train, y_train, x_test, y_test."
        )
    if path.is_dir():
        arrays = _read_batches_dir(path)
        kind = "extracted batches folder"
    elif path.name.endswith((".tar.gz", ".tgz")):
        verify_archive(path)
        arrays = _read_archive(path)
        kind = "official archive, sha256 verified"
    elif path.suffix == ".npz":
        arrays = _read_npz(path)
        kind = "npz"
    else:
        raise DatasetError(
            f"Don't know how to read {path}: expected a .tar.gz archive, a cifar-10-batches-py/ "
            "folder or an .npz file."
        )
    data = _validated(arrays, path)
    data = Cifar10(*data, source=f"{path} ({kind}, via {origin})")
    if cache and path.suffix != ".npz":
        save_npz_atomic(paths.datasets_dir() / CACHE_NAME, data)
    return data


def _validated(
    arrays: dict[str, np.ndarray], path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check shapes, dtypes and label ranges; return (x_train, y_train, x_test, y_test)."""
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DatasetError(
            f"{path} lacks the arrays {missing}. An .npz must hold x_train, y_train, x_test, y_test."
        )
    out = []
    for split in ("train", "test"):
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        if y.ndim == 2 and y.shape[1] == 1:  # Keras' (N, 1) labels
            y = y[:, 0]
        if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            raise DatasetError(
                f"x_{split} in {path} has shape {x.shape}; CIFAR-10 images must be (N, 32, 32, 3) "
                "uint8 HWC. If yours are (N, 3, 32, 32), transpose them with x.transpose(0, 2, 3, 1)."
            )
        if x.dtype != np.uint8:
            raise DatasetError(
                f"x_{split} in {path} is {x.dtype}; expected uint8 pixels 0-255 (not scaled floats)."
            )
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetError(
                f"y_{split} in {path} has shape {y.shape} for {len(x)} images; expected ({len(x)},)."
            )
        if len(x) == 0:
            raise DatasetError(f"The {split} split in {path} is empty.")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9:
            raise DatasetError(
                f"y_{split} in {path} holds labels outside 0-9 (min {y.min()}, max {y.max()}, "
                f"dtype {y.dtype}); the file is not CIFAR-10 or is corrupt."
            )
        out += [x, y.astype(np.int64)]
    return tuple(out)  # type: ignore[return-value]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise DatasetError(
            f"{path} is not a readable .npz ({type(err).__name__}: {err}). It may be truncated; "
            "delete it and load again, or point at another copy."
        ) from err


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_archive(path: Path) -> None:
    """Check the official archive's size and sha256; raise :class:`DatasetError` on mismatch."""
    size = path.stat().st_size
    if size != CIFAR10_BYTES:
        raise DatasetError(
            f"{path} is {size:,} bytes; the official cifar-10-python.tar.gz is {CIFAR10_BYTES:,}. "
            "It is truncated or a different file: delete it and download it again."
        )
    digest = file_digest(path)
    if digest != CIFAR10_SHA256:
        raise DatasetError(
            f"{path} has sha256 {digest}, expected {CIFAR10_SHA256}. The file is corrupt or "
            "not the official archive: delete it and download it again."
        )


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only builds what CIFAR batches contain (no arbitrary code)."""

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def _parse_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except Exception as err:  # noqa: BLE001 - any parse failure means a corrupt batch
        raise DatasetError(
            f"CIFAR-10 batch {name} is corrupt or not a CIFAR batch ({type(err).__name__}: {err}). "
            "Download the archive again."
        ) from err
    return np.ascontiguousarray(images), labels


_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def _assemble(read) -> dict[str, np.ndarray]:
    xs, ys = zip(*(_parse_batch(read(b), b) for b in _BATCHES), strict=True)
    x_test, y_test = _parse_batch(read("test_batch"), "test_batch")
    return {
        "x_train": np.concatenate(xs),
        "y_train": np.concatenate(ys),
        "x_test": x_test,
        "y_test": y_test,
    }


def _read_batches_dir(folder: Path) -> dict[str, np.ndarray]:
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"

    def read(name: str) -> bytes:
        file = folder / name
        if not file.exists():
            raise DatasetError(
                f"{file} is missing; a cifar-10-batches-py/ folder holds data_batch_1..5 and "
                "test_batch. Extract the archive again."
            )
        return file.read_bytes()

    return _assemble(read)


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    try:
        with tarfile.open(path, "r:gz") as tar:

            def read(name: str) -> bytes:
                member = tar.extractfile(f"cifar-10-batches-py/{name}")
                if member is None:
                    raise DatasetError(f"{path} has no cifar-10-batches-py/{name}.")
                return member.read()

            return _assemble(read)
    except (tarfile.TarError, EOFError, OSError, KeyError) as err:
        raise DatasetError(
            f"Could not read {path} ({type(err).__name__}: {err}); delete it and download again."
        ) from err


def save_npz_atomic(target: Path, data: Cifar10) -> Path:
    """Write the arrays to ``target`` via a temporary file and a rename (never half-written)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                x_train=data.x_train,
                y_train=data.y_train,
                x_test=data.x_test,
                y_test=data.y_test,
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _download(target: Path, *, timeout_s: float) -> Path:
    """Download the official archive to ``target`` (verified, atomic); clear error offline."""
    if target.exists():
        verify_archive(target)
        return target
    tmp = target.with_name(target.name + ".part")
    try:
        with (
            urllib.request.urlopen(CIFAR10_URL, timeout=timeout_s) as response,
            open(tmp, "wb") as out,
        ):
            _copy_with_progress(response, out, total=CIFAR10_BYTES)
        verify_archive(tmp)
        os.replace(tmp, target)
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise DatasetError(
            _nothing_found_message(
                paths.datasets_dir() / CACHE_NAME,
                reason=f"the download of {CIFAR10_URL} failed: {err}",
            )
        ) from err
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _copy_with_progress(src, dst, *, total: int) -> None:
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, desc="CIFAR-10") as bar:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            dst.write(chunk)
            bar.update(len(chunk))
