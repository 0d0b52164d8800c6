"""Where models live: a local folder or an object-store URL, both in TF Serving's layout.

A model base holds ``<base>/<name>/<version>/saved_model.pb`` (plus ``variables/`` and
``assets/``). A version counts only once its ``saved_model.pb`` exists, and uploads write that
file last (:func:`upload_saved_model`), so a half-uploaded version is never loaded.

- :class:`LocalBase`: a folder (or ``file://`` URL).
- :class:`RemoteBase`: any fsspec URL, e.g. ``s3://bucket/prefix`` through s3fs (the optional
  "cloud" packages). Credentials and endpoint come from the usual places: ``AWS_*``
  variables (``AWS_ENDPOINT_URL`` for an S3-compatible server such as MinIO), ``~/.aws``,
  or fsspec's ``FSSPEC_S3_*`` variables. TensorFlow cannot read ``s3://`` itself any
  more, so versions are downloaded to a local cache before loading (:meth:`RemoteBase.fetch`).

An object store's keys are strings, not paths: ``m/1/variables/../../../x`` is a valid key. A
download refuses any key that is absolute or has an empty, ``.`` or ``..`` part
(:func:`safe_relative`), and checks that every local path resolves inside the cache folder
before anything is written, so a bucket can never write outside the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

VERSION_RE = re.compile(r"[0-9]{1,18}")  # ASCII digits that fit an int64
SAVED_MODEL = "saved_model.pb"
CLOUD_EXTRA_HINT = (
    'install the optional cloud extra: pip install -e ".[cloud]" (fsspec and s3fs; '
    "`make setup` installs it)"
)


def is_remote(base: str | os.PathLike) -> bool:
    """True for a URL such as ``s3://bucket/prefix`` (``file://`` counts as local)."""
    text = str(base)
    return "://" in text and not text.startswith("file://")


def safe_relative(key: str, *, where: str) -> PurePosixPath:
    """An object key below a prefix as a relative path, refused if it could leave the folder.

    Raises:
        ValueError: the key is absolute, holds ``..``, ``.``, an empty part, a backslash or
            a NUL byte.
    """
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\0" in key
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValueError(
            f"Refusing the object key {key[:200]!r} under {where}: keys must be relative paths "
            "without '..', '.' or empty parts (this one would be written outside its folder)"
        )
    return PurePosixPath(*parts)


def inside(root: Path, path: Path) -> Path:
    """``path``, after checking that it resolves inside ``root`` (links included).

    Raises:
        ValueError: it does not.
    """
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ValueError(f"Refusing to write {path}: it resolves outside {root}")
    return path


def open_base(base: str | os.PathLike) -> LocalBase | RemoteBase:
    """The model base at a folder or URL."""
    return RemoteBase(str(base)) if is_remote(base) else LocalBase(base)


def parse_version(text: str) -> int | None:
    """A version folder name as an int, or None if it is not 1-18 ASCII digits."""
    return int(text) if VERSION_RE.fullmatch(text) else None


class LocalBase:
    """A model base on the local file system."""

    def __init__(self, base: str | os.PathLike) -> None:
        text = str(base)
        self.root = Path(text[len("file://") :] if text.startswith("file://") else text)
        self.url = str(self.root)

    def check(self) -> None:
        """Raise if the base does not exist."""
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"Model base path {self.root} does not exist. Export a model first (notebook 02) "
                "or pass --model-base pointing at a folder laid out as <base>/<name>/<version>/."
            )

    def scan(self) -> dict[str, dict[int, str]]:
        """``{model: {version: fingerprint}}`` of every complete version (saved_model.pb present).

        The fingerprint changes whenever any file of the version changes.
        """
        out: dict[str, dict[int, str]] = {}
        for model_dir in sorted(self.root.iterdir()):
            if not model_dir.is_dir() or model_dir.name.startswith("."):
                continue
            versions = {}
            for version_dir in model_dir.iterdir():
                version = parse_version(version_dir.name)
                if version is not None and (version_dir / SAVED_MODEL).is_file():
                    versions[version] = _local_fingerprint(version_dir)
            out[model_dir.name] = versions
        return out

    def fetch(self, name: str, version: int) -> Path:
        """The folder to load a version from (here: where it is)."""
        return self.root / name / str(version)

    def release(self, name: str, version: int) -> None:
        """Nothing to clean up for a local base."""


def _local_fingerprint(folder: Path) -> str:
    digest = hashlib.sha1()
    for path in sorted(folder.rglob("*")):
        try:
            st = path.stat()
        except FileNotFoundError:  # removed while we looked: the next scan sees it
            continue
        digest.update(f"{path.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()


class RemoteBase:
    """A model base behind an fsspec URL (``s3://bucket/prefix``), downloaded to a local cache."""

    def __init__(self, url: str, *, cache_dir: Path | None = None) -> None:
        try:
            from fsspec.core import url_to_fs
        except ImportError as err:
            raise RuntimeError(f"Serving from {url} needs fsspec: {CLOUD_EXTRA_HINT}.") from err
        self.url = url.rstrip("/")
        try:
            self.fs, self.root = url_to_fs(self.url)
        except (ImportError, ValueError) as err:
            raise RuntimeError(
                f"Cannot open {url} ({type(err).__name__}: {err}): {CLOUD_EXTRA_HINT}."
            ) from err
        self.root = self.root.rstrip("/")
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="workbench-models-"))

    def check(self) -> None:
        """Raise if the base cannot be listed (wrong bucket, no credentials, server down)."""
        try:
            self.fs.invalidate_cache()
            if not self.fs.isdir(self.root):
                raise FileNotFoundError(f"nothing at {self.url}")
        except Exception as err:  # noqa: BLE001 - fsspec backends raise many kinds
            raise FileNotFoundError(
                f"Model base {self.url} cannot be listed ({type(err).__name__}: {err}). Check "
                "the bucket and prefix, credentials (AWS_ACCESS_KEY_ID, ...) and, for an "
                "S3-compatible server, AWS_ENDPOINT_URL."
            ) from err

    def _files(self) -> dict[str, dict]:
        self.fs.invalidate_cache()
        found = self.fs.find(self.root, detail=True)
        return {path[len(self.root) + 1 :]: info for path, info in found.items()}

    def scan(self) -> dict[str, dict[int, str]]:
        """As :meth:`LocalBase.scan`, from one listing of the bucket prefix."""
        per_version: dict[tuple[str, int], list[str]] = {}
        complete: set[tuple[str, int]] = set()
        models: set[str] = set()
        for rel, info in sorted(self._files().items()):
            parts = rel.split("/")
            if len(parts) < 3 or parts[0].startswith("."):
                continue
            models.add(parts[0])
            version = parse_version(parts[1])
            if version is None:
                continue
            key = (parts[0], version)
            stamp = info.get("ETag") or info.get("LastModified") or info.get("mtime") or ""
            per_version.setdefault(key, []).append(f"{rel}:{info.get('size')}:{stamp}")
            if parts[2:] == [SAVED_MODEL]:
                complete.add(key)
        out: dict[str, dict[int, str]] = {m: {} for m in models}
        for key in complete:
            digest = hashlib.sha1(";".join(per_version[key]).encode()).hexdigest()
            out[key[0]][key[1]] = digest
        return out

    def fetch(self, name: str, version: int) -> Path:
        """Download a version into the cache (once) and return the local folder."""
        target = inside(self.cache_dir, self.cache_dir / safe_relative(name, where=self.url))
        target = target / str(version)
        if not target.is_dir():
            download_saved_model(f"{self.url}/{name}/{version}", target)
        return target

    def release(self, name: str, version: int) -> None:
        """Delete a version's cached copy (after it is unloaded)."""
        shutil.rmtree(self.cache_dir / name / str(version), ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.cache_dir, ignore_errors=True)


def download_saved_model(url: str, target: str | os.PathLike) -> Path:
    """Download the SavedModel folder at ``url`` to the local folder ``target`` (atomically).

    Files land in a temporary sibling folder that is renamed to ``target`` once complete.
    """
    from fsspec.core import url_to_fs

    fs, prefix = url_to_fs(url.rstrip("/"))
    prefix = prefix.rstrip("/")
    remote = sorted(p for p in fs.find(prefix) if not p.endswith("/"))
    if f"{prefix}/{SAVED_MODEL}" not in remote:
        raise FileNotFoundError(f"{url} is not a SavedModel (no {SAVED_MODEL})")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        local = [inside(tmp, tmp / safe_relative(p[len(prefix) + 1 :], where=url)) for p in remote]
        for path in local:
            path.parent.mkdir(parents=True, exist_ok=True)
            inside(tmp, path.parent)  # no link planted by an earlier key leads out
        fs.get(remote, [str(p) for p in local])
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def upload_saved_model(local_dir: str | os.PathLike, url: str) -> str:
    """Upload a SavedModel folder to ``url`` (e.g. ``s3://bucket/models/cnn/3``).

    ``saved_model.pb`` goes last, and an older copy at ``url`` is made invisible first (its
    ``saved_model.pb`` deleted before anything else), so a server polling the base never
    loads a half-uploaded version.

    Returns:
        the URL written.
    """
    from fsspec.core import url_to_fs

    local = Path(local_dir)
    if not (local / SAVED_MODEL).is_file():
        raise FileNotFoundError(f"{local} is not a SavedModel folder (no {SAVED_MODEL})")
    fs, root = url_to_fs(url.rstrip("/"))
    if fs.exists(f"{root}/{SAVED_MODEL}"):
        fs.rm(f"{root}/{SAVED_MODEL}")
    if fs.exists(root):
        fs.rm(root, recursive=True)
    files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != SAVED_MODEL)
    for path in [*files, local / SAVED_MODEL]:
        fs.put_file(str(path), f"{root}/{path.relative_to(local).as_posix()}")
    fs.invalidate_cache()
    return url
