"""How many images a dataset holds, read cheaply (array headers, file names) so that a
plan can price the work before anything is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from workbench.data import datasets

# ===================================================================== the data


@dataclass(frozen=True)
class DataCounts:
    """How many images a dataset holds, and how that was found out."""

    source: str  # where it is, in words (data.locate_cifar10's answer)
    n_train: int | None
    n_test: int | None
    how: str  # "read from the .npz headers", ...

    def describe(self) -> str:
        if self.n_train is None:
            return f"data: {self.source}\n      image counts unknown ({self.how})"
        return (
            f"data: {self.source}\n      {self.n_train:,} training and {self.n_test:,} test "
            f"images ({self.how})"
        )


def data_counts(value: str | None) -> DataCounts:
    """The image counts of the dataset a notebook's data parameter names (``None``: CIFAR-10
    from ``$WORKBENCH_CIFAR10``, the cache or the archive), without decoding any image.

    Raises:
        workbench.data.datasets.DatasetError: nothing usable there (as the runner's data check).
    """
    from workbench.core import paths
    from workbench.data import cifar10

    source = cifar10.locate_cifar10(value, download=False)
    path = Path(value) if value is not None else None
    if path is None and os.environ.get(cifar10.ENV_VAR):
        path = Path(os.environ[cifar10.ENV_VAR])
    if path is None:
        cached = paths.datasets_dir() / cifar10.CACHE_NAME
        path = cached if cached.exists() else paths.datasets_dir() / cifar10.ARCHIVE_NAME
    official = (cifar10.CIFAR10_TRAIN_IMAGES, cifar10.CIFAR10_TEST_IMAGES)
    try:
        if path.suffix == ".npz":
            return DataCounts(source, *_npz_counts(path), "read from the .npz headers")
        if path.name.endswith((".tar.gz", ".tgz")) or (path / "data_batch_1").exists():
            return DataCounts(source, *official, "the official CIFAR-10")
        if (path / "cifar-10-batches-py").is_dir():
            return DataCounts(source, *official, "the official CIFAR-10")
        if path.is_dir():
            return DataCounts(source, *_folder_counts(path))
    except (OSError, ValueError, KeyError) as err:
        return DataCounts(source, None, None, f"could not read {path}: {err}")
    return DataCounts(source, None, None, f"unknown kind of file: {path}")


def _npz_counts(path: Path) -> tuple[int, int]:
    """Lengths of ``y_train`` and ``y_test`` from their ``.npy`` headers inside the zip."""
    import zipfile

    import numpy as np

    counts = []
    with zipfile.ZipFile(path) as archive:
        for name in ("y_train", "y_test"):
            with archive.open(f"{name}.npy") as f:
                version = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape = read(f)[0]
            counts.append(int(shape[0]))
    return counts[0], counts[1]


def _folder_counts(folder: Path) -> tuple[int, int, str]:
    """Image files under a folder of class folders: ``train/`` and ``test/``, or all of them
    split 80/20 (as data.load_image_dataset does)."""

    def images(root: Path) -> int:
        return sum(1 for p in root.rglob("*") if p.suffix.lower() in datasets.IMAGE_SUFFIXES)

    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return images(folder / "train"), images(folder / "test"), "image files counted"
    total = images(folder)
    n_test = round(0.2 * total)
    return total - n_test, n_test, "image files counted, about 80/20 split"
