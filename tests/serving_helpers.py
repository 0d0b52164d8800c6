"""Helpers shared by the model server's tests: a tiny CNN, its export, server memory."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest


def tiny_model(seed: int):
    """A tiny untrained CNN on 32x32x3 images (different weights per seed)."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def expected(model, images: np.ndarray) -> np.ndarray:
    """What the served model must answer for uint8 images (the export scales by 1/255)."""
    return model.predict(images.astype(np.float32) / 255.0, verbose=0)


def export_tiny(base: Path, version: int, seed: int | None = None):
    """Export a tiny model as ``<base>/tiny/<version>``; return the Keras model."""
    from workbench.cloud import export

    model = tiny_model(version if seed is None else seed)
    export.export_saved_model(model, base=base, name="tiny", version=version)
    return model


class PeakRss:
    """Sample a process's resident memory every few milliseconds; ``peak - idle`` is growth."""

    def __init__(self, pid: int, interval_s: float = 0.005) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.idle = self.peak = self.process.memory_info().rss
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.1)
        self._stop.set()
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            pytest.fail(f"the memory sampler of process {self.process.pid} did not stop in 30 s")

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.idle) / 2**20


def require(module: str):
    """Import an optional package; skip without it, but fail in CI (a broken set-up)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        message = f'{module} is not installed: pip install -e ".[cloud]" (or make setup)'
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def zero_png(width: int, height: int, channels: int = 3) -> bytes:
    """An all-zero 8-bit PNG written row by row (never the whole image in memory).

    12000 x 12000 x 3 is ~0.4 MB of PNG and 432 MB once decoded: a decompression bomb.
    """
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    packer, row, parts = zlib.compressobj(6), b"\0" * (1 + width * channels), []
    for _ in range(height):
        parts.append(packer.compress(row))
    parts.append(packer.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def wait_until(condition, timeout_s: float, what: str) -> float:
    """Poll ``condition()`` until true; return the seconds it took, fail after ``timeout_s``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start
