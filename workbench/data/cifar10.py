"""CIFAR-10, found, cached, verified or downloaded: the cloud tier's dataset.

CIFAR-10 (:func:`load_cifar10`, a :class:`Cifar10`) is looked for, in order, at

1. an explicit ``path`` argument;
2. the ``WORKBENCH_CIFAR10`` environment variable;
3. the cache ``datasets/cifar10.npz``;
4. the official archive, downloaded (when online) and checked against its sha256.

A path may be the official ``cifar-10-python.tar.gz``, its extracted
``cifar-10-batches-py/`` folder, or an ``.npz`` holding ``x_train, y_train, x_test,
y_test``. The archive and the folder must hold the full dataset (50,000 training and
10,000 test images); an ``.npz`` you name may be a subset, and its ``source`` says so.

Decoding the archive takes seconds, so its decoded arrays are kept in the cache together
with what they were built from (the source's path, size and modification time, the
archive's sha256, the arrays' sha256 and the image counts). The cache is used only for
the source it was built from (or when no source is named) and only after its arrays
match their recorded digest; a cache of another source is never used in its place. An
unchanged archive is therefore not hashed or decoded again. Writing the cache is best
effort: a read-only folder costs a warning, not the load.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from workbench.core import atomic, paths
from workbench.data import datasets

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


CIFAR10_TRAIN_IMAGES = 50_000


CIFAR10_TEST_IMAGES = 10_000


ARCHIVE_NAME = "cifar-10-python.tar.gz"


CACHE_NAME = "cifar10.npz"


CACHE_FORMAT = 2  # 1: arrays only (no record of the source; never used)


ENV_VAR = "WORKBENCH_CIFAR10"


@dataclass(frozen=True, eq=False)
class Cifar10(datasets.ImageDataset):
    """CIFAR-10: an :class:`ImageDataset` of uint8 32x32x3 RGB images in 10 classes."""

    classes: tuple[str, ...] = CIFAR10_CLASSES
    title: ClassVar[str] = "CIFAR-10"

    def _check(self) -> None:
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            if x.shape[1:] != (32, 32, 3):
                raise datasets.DatasetError(
                    f"x_{split} in {self.source} has shape {x.shape}; CIFAR-10 images must be "
                    "(N, 32, 32, 3) uint8 HWC."
                )
            if x.dtype != np.uint8:
                raise datasets.DatasetError(
                    f"x_{split} in {self.source} is {x.dtype}; CIFAR-10 must be uint8 pixels "
                    "0-255 (not scaled floats)."
                )
        if len(self.classes) != 10:
            raise datasets.DatasetError(
                f"CIFAR-10 has 10 classes, not {len(self.classes)} ({self.source})."
            )

    @property
    def is_full(self) -> bool:
        """Whether this is the whole dataset (50,000 training and 10,000 test images)."""
        return (len(self.y_train), len(self.y_test)) == (CIFAR10_TRAIN_IMAGES, CIFAR10_TEST_IMAGES)


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
        cache: read and write the decoded copy of an archive or folder in
            ``datasets/cifar10.npz`` (written atomically, best effort).
        timeout_s: network timeout for the download; offline it fails within it.

    Returns:
        The checked arrays, their source and digest.

    Raises:
        DatasetError: nothing found, or what was found is corrupt, incomplete or malformed.
    """
    if path is not None:
        return _load_source(Path(path), origin="the path you passed", cache=cache)
    env = os.environ.get(ENV_VAR)
    if env:
        return _load_source(Path(env), origin=f"${ENV_VAR}", cache=cache)
    folder, problem = _datasets_folder()
    notes = [problem] if problem else []
    cached = folder / CACHE_NAME if folder else None
    if cache and cached is not None and cached.exists():
        try:
            return _load_cache(cached, origin=f"no path or ${ENV_VAR} given")
        except datasets.DatasetError as err:
            warnings.warn(f"Not using the dataset cache: {err}", stacklevel=2)
            notes.append(str(err))
    archive = folder / ARCHIVE_NAME if folder else None
    if archive is not None and archive.exists():
        return _load_source(archive, origin="the archive downloaded earlier", cache=cache)
    if not download or archive is None:
        reason = "downloading is switched off" if not download else "no folder to download to"
        raise datasets.DatasetError(_nothing_found_message(cached, reason=reason, notes=notes))
    archive = _download(archive, timeout_s=timeout_s, cached=cached, notes=notes)
    return _load_source(archive, origin="the official download", cache=cache)


def locate_cifar10(
    path: str | os.PathLike | None = None, *, download: bool = True, timeout_s: float = 10.0
) -> str:
    """Say which CIFAR-10 source :func:`load_cifar10` would use, without decoding it.

    Cheap enough to run before any notebook starts (``python -m workbench run`` does): it
    checks that a named path exists and is of a readable kind, that the cache records its
    origin, or that the archive is there; if nothing is, it downloads the archive (when
    allowed). Contents are checked when the data is loaded.

    Returns:
        The source, in words.

    Raises:
        DatasetError: nothing usable, with the message saying what to do.
    """
    given = (Path(path), "the path you passed") if path is not None else None
    if given is None and os.environ.get(ENV_VAR):
        given = (Path(os.environ[ENV_VAR]), f"${ENV_VAR}")
    if given is not None:
        source, origin = given
        if not source.exists():
            raise datasets.DatasetError(_not_found_message(source, origin))
        _source_kind(source)
        return f"{source} (via {origin})"
    folder, problem = _datasets_folder()
    notes = [problem] if problem else []
    cached = folder / CACHE_NAME if folder else None
    if cached is not None and cached.exists():
        meta, reason = _read_cache_meta(cached)
        if meta is not None:
            return f"{meta['built_from']['path']} (via the dataset cache {cached})"
        notes.append(reason)
    archive = folder / ARCHIVE_NAME if folder else None
    if archive is not None and archive.exists():
        return f"{archive} (downloaded earlier)"
    if not download or archive is None:
        reason = "downloading is switched off" if not download else "no folder to download to"
        raise datasets.DatasetError(_nothing_found_message(cached, reason=reason, notes=notes))
    return f"{_download(archive, timeout_s=timeout_s, cached=cached, notes=notes)} (downloaded)"


def _datasets_folder() -> tuple[Path | None, str | None]:
    try:
        return paths.datasets_dir(), None
    except OSError as err:
        return None, f"the dataset folder cannot be created ({err}); set WORKBENCH_DATASETS"


def _nothing_found_message(cached: Path | None, *, reason: str, notes: Sequence[str] = ()) -> str:
    extra = "".join(f" {n}" for n in notes)
    return (
        f"No CIFAR-10 found ({reason}). Looked for: an explicit path, ${ENV_VAR} (unset), "
        f"and the cache {cached}.{extra} Fix: download {CIFAR10_URL} on a machine that is "
        f"online and set {ENV_VAR}=/path/to/cifar-10-python.tar.gz (or its extracted "
        "cifar-10-batches-py/ folder, or an .npz with x_train, y_train, x_test, y_test)."
    )


def _not_found_message(path: Path, origin: str) -> str:
    return (
        f"CIFAR-10 not found at {path} (given by {origin}). Check the path, or unset it "
        f"to use the cache or the download. Accepted: cifar-10-python.tar.gz, its extracted "
        "cifar-10-batches-py/ folder, or an .npz with x_train, y_train, x_test, y_test."
    )


def _source_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if path.name.endswith((".tar.gz", ".tgz")):
        return "archive"
    if path.suffix == ".npz":
        return "npz"
    raise datasets.DatasetError(
        f"Don't know how to read {path}: expected a .tar.gz archive, a cifar-10-batches-py/ "
        "folder or an .npz file."
    )


def _load_source(path: Path, *, origin: str, cache: bool) -> Cifar10:
    if not path.exists():
        raise datasets.DatasetError(_not_found_message(path, origin))
    kind = _source_kind(path)
    if kind == "npz":
        return _load_npz(path, origin=origin)
    if kind == "folder":
        path = _batches_folder(path)
    stamp = _stamp(path, kind)
    folder, problem = _datasets_folder()
    if cache and problem:
        warnings.warn(f"Not caching the decoded dataset: {problem}.", stacklevel=3)
    cached = folder / CACHE_NAME if (cache and folder) else None
    meta = _read_cache_meta(cached)[0] if cached is not None and cached.exists() else None
    if meta is not None and _same_source(meta["built_from"], stamp):
        try:
            return _load_cache(cached, origin=origin)
        except datasets.DatasetError as err:
            warnings.warn(f"Rebuilding the dataset cache: {err}", stacklevel=3)
    if kind == "archive":
        _verify_archive(path, known=meta["built_from"] if meta else None)
        arrays, sha256 = _read_archive(path), CIFAR10_SHA256
        described = "official archive, sha256 verified"
    else:
        arrays, sha256 = _read_batches_dir(path), None
        described = "extracted batches folder"
    _require_full(arrays, path)
    data = Cifar10(**arrays, source=f"{path} ({described}, via {origin})")
    if cached is not None:
        _write_cache(cached, data, built_from={**stamp, "sha256": sha256, "described": described})
    return data


def _load_npz(path: Path, *, origin: str) -> Cifar10:
    arrays = datasets.read_npz(path)
    datasets.require_arrays(arrays, path)
    counts = (len(arrays["y_train"]), len(arrays["y_test"]))
    if counts == (CIFAR10_TRAIN_IMAGES, CIFAR10_TEST_IMAGES):
        kind = "npz, full size"
    else:
        kind = (
            f"npz, a subset: {counts[0]:,} of {CIFAR10_TRAIN_IMAGES:,} training and "
            f"{counts[1]:,} of {CIFAR10_TEST_IMAGES:,} test images"
        )
    return Cifar10(
        **{k: arrays[k] for k in datasets.ARRAY_NAMES}, source=f"{path} ({kind}, via {origin})"
    )


def _require_full(arrays: dict[str, np.ndarray], path: Path) -> None:
    counts = (len(arrays["y_train"]), len(arrays["y_test"]))
    if counts != (CIFAR10_TRAIN_IMAGES, CIFAR10_TEST_IMAGES):
        raise datasets.DatasetError(
            f"{path} holds {counts[0]:,} training and {counts[1]:,} test images; the full "
            f"CIFAR-10 has {CIFAR10_TRAIN_IMAGES:,} and {CIFAR10_TEST_IMAGES:,}. It is incomplete "
            "or not CIFAR-10: extract or download it again. (To use a subset on purpose, save it "
            "as an .npz with x_train, y_train, x_test, y_test and pass that file.)"
        )


# ----------------------------------------------------------------- the cache


def _stamp(path: Path, kind: str) -> dict:
    """What identifies a source cheaply: its path, and size and mtime of each file read."""
    resolved = path.resolve()
    if kind == "archive":
        st = resolved.stat()
        files = {resolved.name: [st.st_size, st.st_mtime_ns]}
    else:
        files = {}
        for name in (*_BATCHES, "test_batch"):
            st = (resolved / name).stat() if (resolved / name).exists() else None
            files[name] = [st.st_size, st.st_mtime_ns] if st else None
    return {"kind": kind, "path": str(resolved), "files": files}


def _same_source(built_from: dict, stamp: dict) -> bool:
    return all(built_from.get(k) == stamp[k] for k in ("kind", "path", "files"))


def _read_cache_meta(cached: Path) -> tuple[dict | None, str]:
    """The cache's record of its origin, or None and why it cannot be trusted."""
    try:
        with np.load(cached, allow_pickle=False) as f:
            if "meta" not in f.files:
                return None, (
                    f"The cache {cached} has no record of what it was built from (an older "
                    "workbench wrote it), so it is not used; delete it."
                )
            meta = json.loads(str(f["meta"][()]))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as err:
        return None, f"The cache {cached} is unreadable ({type(err).__name__}: {err}); delete it."
    if meta.get("format") != CACHE_FORMAT or "built_from" not in meta:
        return None, f"The cache {cached} has an unknown format ({meta.get('format')}); delete it."
    return meta, ""


def _load_cache(cached: Path, *, origin: str) -> Cifar10:
    """Load the cache after checking its arrays against their recorded digest and counts."""
    meta, reason = _read_cache_meta(cached)
    if meta is None:
        raise datasets.DatasetError(reason)
    arrays = datasets.read_npz(cached)
    built = meta["built_from"]
    data = Cifar10(
        **{k: arrays[k] for k in datasets.ARRAY_NAMES},
        source=f"{built['path']} ({built.get('described', built['kind'])}; decoded copy from "
        f"the dataset cache {cached}, via {origin})",
    )
    if data.digest != meta.get("arrays_sha256"):
        raise datasets.DatasetError(
            f"The cache {cached} does not match its recorded digest (sha256 {data.digest[:12]} "
            f"instead of {str(meta.get('arrays_sha256'))[:12]}): it is corrupt; delete it."
        )
    _require_full({k: getattr(data, k) for k in datasets.ARRAY_NAMES}, cached)
    return data


def _write_cache(cached: Path, data: Cifar10, *, built_from: dict) -> None:
    """Write the decoded arrays and their origin; a failure only warns (best effort)."""
    meta = {
        "format": CACHE_FORMAT,
        "built_from": built_from,
        "arrays_sha256": data.digest,
        "counts": {"train": len(data.y_train), "test": len(data.y_test)},
    }
    try:
        with atomic.open_file(cached) as f:
            # Uncompressed: CIFAR's pixels do not compress, and reading stays fast.
            np.savez(
                f,
                **{k: getattr(data, k) for k in datasets.ARRAY_NAMES},
                meta=np.array(json.dumps(meta)),
            )
    except OSError as err:
        warnings.warn(
            f"Could not write the dataset cache {cached} ({type(err).__name__}: {err}). The data "
            "loaded fine; the next load decodes the source again. Set WORKBENCH_DATASETS to a "
            "writable folder to cache it.",
            stacklevel=4,
        )


def verify_archive(path: Path) -> None:
    """Check the official archive's size and sha256; raise :class:`DatasetError` on mismatch."""
    _verify_archive(path, known=None)


def _verify_archive(path: Path, *, known: dict | None) -> None:
    """As :func:`verify_archive`; skips hashing when ``known`` (a cache's record of this
    very file: same path, size and mtime) says it was verified before."""
    size = path.stat().st_size
    if size != CIFAR10_BYTES:
        raise datasets.DatasetError(
            f"{path} is {size:,} bytes; the official cifar-10-python.tar.gz is {CIFAR10_BYTES:,}. "
            "It is truncated or a different file: delete it and download it again."
        )
    if (
        known
        and known.get("sha256") == CIFAR10_SHA256
        and _same_source(known, _stamp(path, "archive"))
    ):
        return
    digest = datasets.file_digest(path)
    if digest != CIFAR10_SHA256:
        raise datasets.DatasetError(
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
        raise datasets.DatasetError(
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


def _batches_folder(folder: Path) -> Path:
    return folder / "cifar-10-batches-py" if (folder / "cifar-10-batches-py").is_dir() else folder


def _read_batches_dir(folder: Path) -> dict[str, np.ndarray]:
    def read(name: str) -> bytes:
        file = folder / name
        if not file.exists():
            raise datasets.DatasetError(
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
                    raise datasets.DatasetError(f"{path} has no cifar-10-batches-py/{name}.")
                return member.read()

            return _assemble(read)
    except (tarfile.TarError, EOFError, OSError, KeyError) as err:
        raise datasets.DatasetError(
            f"Could not read {path} ({type(err).__name__}: {err}); delete it and download again."
        ) from err


def _download(target: Path, *, timeout_s: float, cached: Path | None, notes: list[str]) -> Path:
    """Download the official archive to ``target`` (verified, atomic); clear error offline."""
    import httpx  # the package's one HTTP client (proxies from the environment are honoured)

    try:
        with atomic.temp_path(target) as tmp:
            with (
                httpx.stream(
                    "GET", CIFAR10_URL, timeout=timeout_s, follow_redirects=True
                ) as response,
                open(tmp, "wb") as out,
            ):
                response.raise_for_status()
                _copy_with_progress(response.iter_bytes(1 << 20), out, total=CIFAR10_BYTES)
            try:
                verify_archive(tmp)
            except datasets.DatasetError as err:
                raise datasets.DatasetError(
                    f"The download of {CIFAR10_URL} failed its check: {err}"
                ) from None
    except (httpx.HTTPError, OSError) as err:
        raise datasets.DatasetError(
            _nothing_found_message(
                cached, reason=f"the download of {CIFAR10_URL} failed: {err}", notes=notes
            )
        ) from err
    return target


def _copy_with_progress(chunks, dst, *, total: int) -> None:
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, desc="CIFAR-10") as bar:
        for chunk in chunks:
            dst.write(chunk)
            bar.update(len(chunk))
            if bar.n > total:  # never more than the official archive's size
                raise OSError(f"the server sent more than the archive's {total:,} bytes")
