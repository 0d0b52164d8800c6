"""How big data is before it is decoded: array headers, declared sizes, the memory it may take.

Data from the wild can claim anything: a 1 MB ``.npz`` may inflate to gigabytes, a header may
claim hundreds of GiB. The loaders (:mod:`workbench.data.datasets`) size everything from
headers first and refuse what would not fit :func:`max_data_bytes`.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import numpy as np

# Decoded data may take at most this share of the machine's memory (the physical memory, or
# the cgroup's limit when lower, as in a Binder container): training converts and copies the
# images a few times over.
MEMORY_SHARE = 0.25
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def max_data_bytes() -> int:
    """The most bytes of decoded data the loaders accept by default: :data:`MEMORY_SHARE` of
    this machine's memory (the cgroup's limit when it is lower, as in a container)."""
    import psutil

    memory = psutil.virtual_memory().total
    for limit_file in CGROUP_LIMITS:
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            memory = min(memory, int(text))
    return int(memory * MEMORY_SHARE)


def human_bytes(n: int) -> str:
    """``1.20 GiB`` or ``3.4 MiB``."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype, int]]:
    """``{array name: (shape, dtype, declared member bytes)}`` from an ``.npz``'s headers.

    Reads each member's ``.npy`` header (:mod:`numpy.lib.format`), a few hundred bytes, and
    the zip's declared uncompressed size (which also bounds what reading the member can
    inflate): nothing is decompressed beyond the headers.

    Raises:
        zipfile.BadZipFile, OSError, ValueError, EOFError: not a zip of ``.npy`` files.
    """
    out = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(f)
            out[info.filename[: -len(".npy")]] = (tuple(shape), dtype, info.file_size)
    return out


def is_regular_file(path: Path) -> bool:
    """A regular file (or a link to one): never a FIFO, socket or device, which could block."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False
