"""Atomic writes: whoever reads a file (or folder) sees the old version or the new one, never half.

Every file one step of the flow writes and another reads (recorded results, the report,
``runs.json``, manifests, checkpoint state, models, exports, the dataset cache, downloads)
goes through this module. The recipe, in one place:

1. write the new content to a temporary file *beside* the target, with a unique name
   (:mod:`tempfile`), so that two writers never share a temporary file and the final
   rename stays on one file system;
2. flush and ``fsync`` it, so its bytes are on disk before its name is;
3. :func:`os.replace` it over the target (atomic on POSIX and Windows), then ``fsync``
   the folder so that the rename itself survives a power cut.

On any error (an exception, an interrupt) the temporary file is removed and the target
is left as it was. A writer that is killed outright leaves its temporary file behind;
the next write to the same target removes it (:func:`clean_stale`).

Which function for which writer:

- :func:`write_bytes`, :func:`write_text`, :func:`write_json`: content already in memory.
- :func:`open_file`: streaming writers that take a file object (``np.savez``, skops).
- :func:`temp_path`: writers that insist on a path (Keras ``model.save`` wants the
  ``.keras`` suffix, which the temporary name keeps), or content to check before it
  counts (a download verified against its checksum).
- :func:`temp_dir`: folders (``tf.saved_model.save``). The previous folder stays in place
  until the new one is complete; on Linux the two are swapped in one atomic step
  (``renameat2(RENAME_EXCHANGE)``), elsewhere by two renames a moment apart.

Temporary names are ``.<target name>.tmp-<host>-<pid>-<random><suffix>`` (and ``.old-``
for a folder being replaced), which is how leftovers of dead writers are recognised.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "clean_stale",
    "open_file",
    "temp_dir",
    "temp_path",
    "write_bytes",
    "write_json",
    "write_text",
]

_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


# ------------------------------------------------------------------ whole content


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; return the target's path."""
    with open_file(target, "wb") as f:
        f.write(data)
    return Path(target)


def write_text(target: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``target`` atomically; return the target's path."""
    with open_file(target, "w", encoding=encoding) as f:
        f.write(text)
    return Path(target)


def write_json(
    target: str | os.PathLike,
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    default: Any = None,
) -> Path:
    """Serialise ``obj`` as JSON (newline-terminated) and write it atomically.

    The object is serialised before anything is written, so an object that cannot be
    serialised leaves no trace on disk.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n"
    return write_text(target, text)


# ------------------------------------------------------------------ streaming files


@contextlib.contextmanager
def open_file(
    target: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None
) -> Iterator[IO]:
    """A file object whose content replaces ``target`` when the ``with`` block ends cleanly.

    Args:
        target: the file to (re)place.
        mode: ``"wb"`` or ``"w"`` (text; pass ``encoding``).
        encoding: the text encoding for ``"w"``.

    Example:
        >>> with open_file("arrays.npz") as f:  # doctest: +SKIP
        ...     np.savez(f, x=x)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"open_file writes a new file: mode must be 'w' or 'wb', not {mode!r}")
    with temp_path(target) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def temp_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``target`` (same suffix) that replaces it on a clean exit.

    The file exists (empty) when the block starts; the writer overwrites it. Raise
    inside the block (for example when a download fails its checksum) and the target
    is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    fd, name = tempfile.mkstemp(
        prefix=_prefix(target, "tmp"), suffix=target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, _mode_for(target, directory=False))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


# ------------------------------------------------------------------ folders


@contextlib.contextmanager
def temp_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``target`` that replaces it when the block ends cleanly.

    The previous ``target`` (if any) stays in place, complete, until the new folder is
    complete and synced; then the two are exchanged atomically where the kernel allows
    it (Linux ``renameat2``), else by renaming the old one aside and the new one in.
    On an error inside the block the temporary folder is removed and ``target`` is
    unchanged. Leftovers of writers that died are removed first (:func:`clean_stale`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = Path(
        tempfile.mkdtemp(prefix=_prefix(target, "tmp"), suffix=target.suffix, dir=target.parent)
    )
    try:
        yield tmp
        os.chmod(tmp, _mode_for(target, directory=True))
        _fsync_tree(tmp)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the complete folder ``tmp`` at ``target``; remove the previous ``target``."""
    if not target.exists() and not target.is_symlink():
        os.replace(tmp, target)
        return
    if not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder; remove it first.")
    if _exchange(tmp, target):  # target now holds the new folder, tmp the old one
        _fsync_dir(target.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    # No atomic exchange here: rename the old folder aside, the new one in, and put the
    # old one back if the second rename fails. A crash between the two leaves the old
    # folder as `.old-...`, which clean_stale restores.
    old = Path(
        tempfile.mkdtemp(prefix=_prefix(target, "old"), suffix=target.suffix, dir=target.parent)
    )
    os.replace(target, old)  # onto an empty folder: allowed on POSIX
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where unsupported."""
    import ctypes
    import errno
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # not glibc, or glibc older than 2.28
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False  # this file system or kernel cannot exchange: fall back
    raise OSError(err, os.strerror(err), str(b))


# ------------------------------------------------------------------ leftovers


def clean_stale(target: str | os.PathLike) -> list[Path]:
    """Remove temporary files and folders that dead writers left beside ``target``.

    Only leftovers written on this host by a process that no longer runs are touched;
    a live writer's temporary file is left alone. If ``target`` is missing and a dead
    writer left the previous version of a folder aside (``.old-...``, the moment between
    its two renames), that version is put back instead of being removed.

    Returns:
        The leftovers removed or restored.
    """
    target = Path(target)
    pattern = re.compile(
        rf"^\.{re.escape(target.name)}\.(?P<kind>tmp|old)-(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-"
        rf"[a-z0-9_]+{re.escape(target.suffix)}$"
    )
    try:
        entries = list(target.parent.iterdir())
    except OSError:  # no folder yet, or unreadable: nothing to clean
        return []
    cleaned = []
    for entry in sorted(entries):
        match = pattern.match(entry.name)
        if not match or match["host"] != _HOST or _alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and entry.is_dir() and not target.exists():
            os.replace(entry, target)
            warnings.warn(
                f"restored {target} from {entry.name}, left by a writer that died while "
                "replacing it",
                stacklevel=3,
            )
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        cleaned.append(entry)
    return cleaned


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:  # e.g. Windows: cannot tell, so assume it runs
        return True
    return True


# ------------------------------------------------------------------ helpers


def _prefix(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-{_HOST}-{os.getpid()}-"


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # read it the portable way (set and restore)
    os.umask(mask)
    return mask


def _mode_for(target: Path, *, directory: bool) -> int:
    """The permission bits the new file/folder gets: the old target's, else the umask's.

    ``tempfile`` creates private (0600/0700) entries; without this, a model folder that a
    server running as another user reads would become unreadable after the first update.
    """
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return (0o777 if directory else 0o666) & ~_umask()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                _fsync_file(path)
        _fsync_dir(Path(folder))
