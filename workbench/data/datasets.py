"""Labelled image datasets: the dataset type, your own images, and iris for the edge tier.

Every image dataset is an :class:`ImageDataset`: train and test images (HWC, 1 or 3
channels, uint8 or float, kept in their stored dtype), 1-D integer labels, class names,
where it came from (``source``) and a ``digest``, the sha256 of its arrays, which says
exactly which data a model was trained on (notebook 02 puts it in its training run id).
Construction checks the arrays and refuses bad ones with a :class:`DatasetError` that
names the file and the problem. The arrays are read-only, so the digest stays true.

:func:`load_image_dataset` reads any labelled image dataset: an ``.npz`` with the same
four arrays, or a folder with one sub-folder of PNG/JPEG images per class (see there).

Data from the wild is sized before it is decoded: an ``.npz``'s array headers (and its zip
members' declared sizes) and an image folder's first image header times its file count must
fit :func:`workbench.data.sizes.max_data_bytes` (a share of this machine's memory, or the
caller's cap), images beyond Pillow's decompression-bomb limit are refused, and anything that
is not a regular file (a FIFO, a socket, a device) is skipped. :func:`peek_image_shape` reads
the image shape from a header alone, so a model can be checked against the data before any of
it is loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from workbench.data import sizes

ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# A class-folder dataset without train/ and test/ sub-folders: this share of each class
# (at least one image of every class with two or more) becomes the test split.
FOLDER_TEST_FRACTION = 0.2


_MODES = {"L": 1, "RGB": 3}  # Pillow image modes accepted from folders, and their channels


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt or malformed. The message says which file and what to do."""


# --------------------------------------------------------------------------- datasets


def arrays_digest(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> str:
    """sha256 over the four arrays: names, dtypes, shapes and bytes (about 1 GB/s)."""
    h = hashlib.sha256()
    for name, array in zip(ARRAY_NAMES, (x_train, y_train, x_test, y_test), strict=True):
        array = np.ascontiguousarray(array)
        h.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        h.update(array.reshape(-1).view(np.uint8))
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image classification dataset, checked on construction.

    Images are HWC with 1 or 3 channels, uint8 or float, in their stored dtype (no
    scaling here). Construction accepts grayscale ``(N, H, W)`` images (a channel axis is
    added) and ``(N, 1)`` or integral-float labels (flattened to 1-D int64), then checks
    everything else and raises :class:`DatasetError` naming ``source`` and the problem.

    Attributes:
        x_train: images, shape (N, H, W, C).
        y_train: int64 labels in ``0 .. len(classes) - 1``, shape (N,).
        x_test: images, shape (M, H, W, C), same H, W, C and dtype as ``x_train``.
        y_test: int64 labels, shape (M,).
        source: where the data came from, in words (first the file, then how it was read).
        classes: one name per class; label ``i`` is ``classes[i]``.
        digest: sha256 of the four arrays (:func:`arrays_digest`), computed when not given.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    classes: tuple[str, ...]
    digest: str = ""

    title: ClassVar[str] = "Image dataset"

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        arrays = checked_arrays(
            {name: getattr(self, name) for name in ARRAY_NAMES}, classes, where=self.source
        )
        for name, array in arrays.items():
            view = array.view()
            view.flags.writeable = False  # in-place edits would make the digest a lie
            object.__setattr__(self, name, view)
        object.__setattr__(self, "classes", classes)
        self._check()
        if not self.digest:
            object.__setattr__(self, "digest", arrays_digest(*arrays.values()))

    def _check(self) -> None:
        """Checks a subclass adds to the general ones (CIFAR-10's shape and dtype)."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of every image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def describe(self) -> str:
        """One paragraph: source, images per split, images per class, digest."""
        n = len(self.classes)
        train_counts = np.bincount(self.y_train, minlength=n)
        test_counts = np.bincount(self.y_test, minlength=n)
        h, w, c = self.image_shape
        return "\n".join(
            [
                f"{self.title} from {self.source}",
                f"  train: {len(self.y_train):,} images, test: {len(self.y_test):,} images "
                f"({h}x{w}x{c}, {self.x_train.dtype}), {n} classes, sha256 {self.digest[:12]}",
                "  per class (train/test): "
                + ", ".join(
                    f"{name} {tr}/{te}"
                    for name, tr, te in zip(self.classes, train_counts, test_counts, strict=True)
                ),
            ]
        )

    def subset(self, n_train: int | None = None, n_test: int | None = None):
        """The first ``n_train`` / ``n_test`` images (``None`` keeps a split whole).

        The result has its own digest (of the arrays it holds).
        """
        if n_train is None and n_test is None:
            return self
        return dataclasses.replace(
            self,
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_test=self.x_test[:n_test],
            y_test=self.y_test[:n_test],
            source=f"{self.source} (first {n_train} train / {n_test} test)",
            digest="",
        )


def checked_arrays(
    arrays: dict[str, Any], classes: tuple[str, ...], *, where: str
) -> dict[str, np.ndarray]:
    """Normalise (channel axis, 1-D int64 labels) and check the four arrays."""
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        x = _checked_images(np.asarray(arrays[f"x_{split}"]), f"x_{split}", where)
        y = _checked_labels(np.asarray(arrays[f"y_{split}"]), f"y_{split}", len(x), where)
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    if out["x_train"].shape[1:] != out["x_test"].shape[1:] or (
        out["x_train"].dtype != out["x_test"].dtype
    ):
        raise DatasetError(
            f"The splits in {where} differ: x_train is {out['x_train'].shape[1:]} "
            f"{out['x_train'].dtype}, x_test is {out['x_test'].shape[1:]} {out['x_test'].dtype}; "
            "both must hold images of one shape and dtype."
        )
    if not classes:
        raise DatasetError(f"No class names for {where}: give one name per class.")
    if len(set(classes)) != len(classes):
        raise DatasetError(f"The class names of {where} repeat a name: {list(classes)}.")
    top = max(int(out["y_train"].max()), int(out["y_test"].max()))
    if top >= len(classes):
        shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
        raise DatasetError(
            f"The labels in {where} go up to {top}, outside 0-{len(classes) - 1} for the "
            f"{len(classes)} class names ({shown}). Give one class name per label, in label "
            "order, or fix the labels."
        )
    return out


def _checked_images(x: np.ndarray, name: str, where: str) -> np.ndarray:
    if x.dtype == object:
        raise DatasetError(
            f"{name} in {where} is an array of Python objects, which happens when images of "
            "different shapes are stacked (ragged). All images must share one shape: resize them."
        )
    if x.ndim == 3:  # grayscale (N, H, W)
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise DatasetError(
            f"{name} in {where} has shape {x.shape} ({x.ndim} dimensions); images must be "
            "(N, H, W, C) with C 1 or 3, or grayscale (N, H, W)."
        )
    if x.shape[-1] not in (1, 3):
        hint = (
            " It looks channels-first (N, C, H, W): transpose it with x.transpose(0, 2, 3, 1)."
            if x.shape[1] in (1, 3)
            else ""
        )
        raise DatasetError(
            f"{name} in {where} has shape {x.shape}: {x.shape[-1]} channels, but images must have "
            f"1 (grayscale) or 3 (RGB) channels last (HWC).{hint}"
        )
    if len(x) == 0:
        raise DatasetError(f"{name} in {where} is empty: the split holds no images.")
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise DatasetError(
            f"{name} in {where} is {x.dtype}; images must be uint8 (0-255) or floating point."
        )
    if np.issubdtype(x.dtype, np.floating):
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        if bad:
            images = int(np.count_nonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1)))
            raise DatasetError(
                f"{name} in {where} holds {bad:,} non-finite pixel values (NaN or infinity) in "
                f"{images:,} of its {len(x):,} images; fix or drop those images."
            )
    return x


def _checked_labels(y: np.ndarray, name: str, n_images: int, where: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:  # Keras' (N, 1) labels
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n_images:
        raise DatasetError(
            f"{name} in {where} has shape {y.shape} for {n_images} images; expected "
            f"({n_images},): one integer label per image."
        )
    if y.dtype == bool or not (
        np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
    ):
        raise DatasetError(f"{name} in {where} is {y.dtype}; labels must be integers 0, 1, 2, ...")
    if np.issubdtype(y.dtype, np.floating):
        fractional = ~np.isfinite(y) | (np.mod(y, 1) != 0)
        if fractional.any():
            raise DatasetError(
                f"{name} in {where} holds {int(fractional.sum()):,} labels that are not whole "
                f"numbers (e.g. {y[fractional][0]!r}); labels must be integers 0, 1, 2, ... "
                "(one-hot labels: take y.argmax(axis=1))."
            )
    if y.min() < 0:
        raise DatasetError(
            f"{name} in {where} holds negative labels (min {y.min()}); labels must be 0, 1, 2, ..."
        )
    return y.astype(np.int64)


# --------------------------------------------------------------------------- iris


def load_iris() -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Iris from scikit-learn (bundled with it, no download).

    Returns:
        ``(x, y, feature_names, class_names)``: 150 x 4 float features, 150 int labels.
    """
    from sklearn.datasets import load_iris as _load

    bunch = _load()
    # plain str, not numpy's: printed, a list shows ['setosa', ...], not [np.str_('setosa'), ...]
    names = [str(name) for name in bunch.target_names]
    return bunch.data, bunch.target, [str(name) for name in bunch.feature_names], names


# ------------------------------------------------------------------ your own images


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(fit, validation)`` of ``n`` training images: a seeded random ``fraction``
    held out. Notebook 02 holds out these images when it trains the cloud model, and
    notebooks 03-05 judge compressed models on them (same seed, fraction and count)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the validation fraction must be in [0, 1), not {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(fraction * n))
    return order[n_val:], order[:n_val]


def load_image_dataset(
    path: str | os.PathLike,
    *,
    class_names: list[str] | tuple[str, ...] | None = None,
    test_fraction: float = FOLDER_TEST_FRACTION,
    seed: int = 0,
    max_bytes: int | None = None,
) -> ImageDataset:
    """Load a labelled image dataset from an ``.npz`` or a folder of class folders.

    - An ``.npz`` holding ``x_train, y_train, x_test, y_test``: images (N, H, W, C) with
      C 1 or 3, or grayscale (N, H, W); uint8 or float; labels 1-D integers or (N, 1).
      Class names come from ``class_names``, else a ``classes`` array in the file, else
      ``"0", "1", ...``.
    - A folder with one sub-folder of PNG/JPEG images per class (the sub-folder's name is
      the class name), either directly or under ``train/`` and ``test/``. Without those,
      a deterministic stratified split puts ``test_fraction`` of each class (at least one
      image of every class that has two) into the test split. All images must share one
      size and mode (``L``: grayscale, ``RGB``); other files are skipped and counted in
      ``source``. Images come in a fixed shuffled order (``seed``), so that
      :meth:`ImageDataset.subset` takes every class. With ``class_names``, they must be
      the folder names; their order sets the labels. Only regular files are read.

    Images keep their stored dtype (no scaling). Nothing is decoded before its size is known
    to fit ``max_bytes`` (default :func:`~workbench.data.sizes.max_data_bytes`).

    Raises:
        DatasetError: naming the file and the problem (missing arrays, ragged or wrong
            shapes, channels other than 1 or 3, non-finite pixels, negative or fractional
            labels, an empty split, class names that do not fit the labels, images of
            different sizes or modes, unreadable images, more data than ``max_bytes``,
            decompression bombs).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(
            f"No dataset at {path}. Pass an .npz with x_train, y_train, x_test, y_test, or a "
            "folder with one sub-folder of images per class."
        )
    if path.is_dir():
        arrays, names, source = _read_class_folders(
            path,
            class_names=class_names,
            test_fraction=test_fraction,
            seed=seed,
            max_bytes=max_bytes or sizes.max_data_bytes(),
        )
    elif path.suffix == ".npz":
        arrays = read_npz(path, max_bytes=max_bytes)
        require_arrays(arrays, path)
        names = _npz_class_names(arrays, class_names, path)
        source = f"{path} (npz)"
    else:
        raise DatasetError(
            f"Don't know how to read {path}: expected an .npz file or a folder with one "
            "sub-folder of images per class."
        )
    return ImageDataset(**{k: arrays[k] for k in ARRAY_NAMES}, source=source, classes=names)


def require_arrays(arrays: dict[str, np.ndarray], path: Path) -> None:
    missing = [k for k in ARRAY_NAMES if k not in arrays]
    if missing:
        raise DatasetError(
            f"{path} lacks the arrays {missing} (it holds {sorted(arrays)}). An .npz must hold "
            "x_train, y_train, x_test, y_test."
        )


def _npz_class_names(
    arrays: dict[str, np.ndarray], class_names: Any, path: Path
) -> tuple[str, ...]:
    if class_names is not None:
        return tuple(str(c) for c in class_names)
    if "classes" in arrays:
        return tuple(str(c) for c in np.asarray(arrays["classes"]).reshape(-1))
    labels = [np.asarray(arrays[k]) for k in ("y_train", "y_test")]
    if any(y.size == 0 or not np.issubdtype(y.dtype, np.number) for y in labels):
        return ()  # the checks on construction say what is wrong
    top = max(int(np.nanmax(np.where(np.isfinite(y), y, 0))) for y in labels)
    return tuple(str(i) for i in range(max(top, 0) + 1))


def _read_class_folders(
    root: Path, *, class_names: Any, test_fraction: float, seed: int, max_bytes: int
) -> tuple[dict[str, np.ndarray], tuple[str, ...], str]:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie between 0 and 1, not {test_fraction}")
    splits = [root / s for s in ("train", "test")]
    if any(s.is_dir() for s in splits) and not all(s.is_dir() for s in splits):
        have, lack = (splits if splits[0].is_dir() else splits[::-1])[:2]
        raise DatasetError(
            f"{root} has {have.name}/ but no {lack.name}/: give both (each with one sub-folder "
            "per class), or neither (then the test split is drawn from the class folders)."
        )
    skipped: list[Path] = []
    rng = np.random.default_rng(seed)
    if all(s.is_dir() for s in splits):
        train_files = _class_files(splits[0], skipped)
        test_files = _class_files(splits[1], skipped)
        unknown = sorted(set(test_files) - set(train_files))
        if unknown:
            raise DatasetError(
                f"{splits[1]} has class folders {unknown} that {splits[0]} lacks; both splits "
                "must use the same classes."
            )
        names = _folder_class_names(list(train_files), class_names, splits[0])
        how = "train/ and test/ folders"
    else:
        files = _class_files(root, skipped)
        names = _folder_class_names(list(files), class_names, root)
        train_files, test_files = {}, {}
        for name in names:
            chosen = files[name]
            n_test = round(len(chosen) * test_fraction)
            n_test = min(max(n_test, 1), len(chosen) - 1) if len(chosen) >= 2 else 0
            order = rng.permutation(len(chosen))
            test_files[name] = [chosen[i] for i in sorted(order[:n_test])]
            train_files[name] = [chosen[i] for i in sorted(order[n_test:])]
        how = f"test split: {test_fraction:g} of each class, seed {seed}"
    arrays: dict[str, np.ndarray] = {}
    reference: list = []  # (first file, size, mode), shared by both splits
    n_files = sum(len(v) for files in (train_files, test_files) for v in files.values())
    first = next(f for c in names for f in train_files.get(c, []) + test_files.get(c, []))
    _check_folder_size(first, n_files, max_bytes)
    for split, by_class in (("train", train_files), ("test", test_files)):
        listed = [(f, names.index(c)) for c in names for f in by_class.get(c, [])]
        if not listed:
            raise DatasetError(f"The {split} split of {root} holds no images.")
        x = _read_images([f for f, _ in listed], reference)
        y = np.array([label for _, label in listed], dtype=np.int64)
        order = rng.permutation(len(y))
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[order], y[order]
    note = f"; skipped {len(skipped)} non-image files, e.g. {skipped[0]}" if skipped else ""
    return arrays, names, f"{root} (image folders, {len(names)} classes, {how}{note})"


def _class_files(folder: Path, skipped: list[Path]) -> dict[str, list[Path]]:
    """{class folder name: its image files, sorted}; non-image files go to ``skipped``."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(
            f"{folder} has no class sub-folders: put the images of each class in a sub-folder "
            "named after the class (e.g. cats/001.png, dogs/001.png)."
        )
    out = {}
    for cls in classes:
        files = []
        for f in sorted(cls.iterdir()):
            if f.name.startswith(".") or f.is_dir():
                continue
            image = f.suffix.lower() in IMAGE_SUFFIXES and sizes.is_regular_file(f)
            (files if image else skipped).append(f)
        if not files:
            raise DatasetError(
                f"The class folder {cls} holds no PNG or JPEG images ({', '.join(IMAGE_SUFFIXES)})."
            )
        out[cls.name] = files
    return out


def _folder_class_names(found: list[str], class_names: Any, folder: Path) -> tuple[str, ...]:
    if class_names is None:
        return tuple(found)
    names = tuple(str(c) for c in class_names)
    if sorted(names) != sorted(found):
        raise DatasetError(
            f"class_names {list(names)} ({len(names)}) do not match the class folders of {folder} "
            f"{found} ({len(found)}): give exactly the folder names, in label order."
        )
    return names


def _read_images(files: list[Path], reference: list) -> np.ndarray:
    """Decode ``files`` into one uint8 array; all must match the first image's size and mode.

    Each header is checked (size, mode, Pillow's decompression-bomb limit) before its pixels
    are decoded.
    """
    out: np.ndarray | None = None
    for i, file in enumerate(files):
        with _open_image(file) as img:
            size, mode = img.size, img.mode
            if mode not in _MODES:
                raise DatasetError(
                    f"{file} has image mode {mode!r}; images must be 8-bit grayscale ('L') or "
                    "RGB. Convert them, e.g. Image.open(f).convert('RGB').save(f)."
                )
            if not reference:
                reference.extend([file, size, mode])
            elif (size, mode) != (reference[1], reference[2]):
                first, (w0, h0), m0 = reference
                raise DatasetError(
                    f"Images differ: {first} is {w0}x{h0} {m0}, {file} is {size[0]}x{size[1]} "
                    f"{mode}. All images must share one size and mode: resize/convert them first."
                )
            if out is None:
                out = np.empty((len(files), size[1], size[0], _MODES[mode]), dtype=np.uint8)
            out[i] = _decoded(img, file).reshape(out.shape[1:])
    assert out is not None
    return out


@contextlib.contextmanager
def _open_image(file: Path) -> Iterator[Any]:
    """``Image.open`` (the header only), every failure a :class:`DatasetError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(file)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DatasetError(_bomb_message(file, err)) from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DatasetError(
            f"{file} is not a readable image ({type(err).__name__}: {err})."
        ) from None
    with image:
        yield image


def _decoded(img, file: Path) -> np.ndarray:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            return np.asarray(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DatasetError(_bomb_message(file, err)) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise DatasetError(
            f"{file} is not a readable image ({type(err).__name__}: {err})."
        ) from None


def _bomb_message(file: Path, err: Exception) -> str:
    return (
        f"{file} is refused as a decompression bomb: {err} Images for a classifier are far "
        "smaller; resize it, or remove it from the folder."
    )


def _check_folder_size(first: Path, n_files: int, max_bytes: int) -> None:
    """Refuse a folder whose images would decode to more than ``max_bytes`` (from one header)."""
    with _open_image(first) as img:
        (width, height), channels = img.size, _MODES.get(img.mode, 3)
    total = n_files * width * height * channels
    if total > max_bytes:
        raise DatasetError(
            f"{first.parent.parent} holds {n_files:,} images of {width}x{height}x{channels} (the "
            f"size of {first.name}): {sizes.human_bytes(total)} decoded, over the limit of "
            f"{sizes.human_bytes(max_bytes)} ({_limit_source(max_bytes)}). Resize the images, "
            "use fewer, or raise the limit (--max-data-bytes / max_bytes)."
        )


def peek_image_shape(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """(height, width, channels) of a dataset's images from a header alone, or None.

    For an ``.npz``, ``x_train``'s ``.npy`` header (grayscale ``(N, H, W)`` gets 1 channel);
    for a folder of class folders, the first image's header. Nothing is decoded, so a model
    can be checked against the data before the data is loaded. ``None`` when it cannot tell
    (the loader then says what is wrong).
    """
    path = Path(path)
    try:
        if path.suffix == ".npz" and path.is_file():
            shape = npz_headers(path).get("x_train", ((), None, 0))[0]
            if len(shape) == 3:
                return (int(shape[1]), int(shape[2]), 1)
            return tuple(int(d) for d in shape[1:]) if len(shape) == 4 else None
        if path.is_dir():
            root = path / "train" if (path / "train").is_dir() else path
            first = next(iter(_class_files(root, []).values()))[0]
            with _open_image(first) as img:
                return (img.size[1], img.size[0], _MODES.get(img.mode, len(img.getbands())))
    except (DatasetError, OSError, ValueError, StopIteration, zipfile.BadZipFile):
        return None
    return None


# ------------------------------------------------------------- reading sources


def npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype, int]]:
    """:func:`workbench.data.sizes.npz_headers`, a bad file raising :class:`DatasetError`."""
    try:
        return sizes.npz_headers(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise DatasetError(
            f"{path} is not a readable .npz ({type(err).__name__}: {err}). It may be truncated; "
            "delete it and load again, or point at another copy."
        ) from err


def _limit_source(max_bytes: int) -> str:
    if max_bytes == sizes.max_data_bytes():
        return f"{sizes.MEMORY_SHARE:.0%} of this machine's memory"
    return "the limit given"


def _check_npz_sizes(path: Path, max_bytes: int) -> None:
    """Refuse an ``.npz`` whose arrays would take more than ``max_bytes``, before inflating."""
    total = 0
    for name, (shape, dtype, member_bytes) in npz_headers(path).items():
        if dtype.hasobject:
            continue  # refused by the load itself (allow_pickle=False), with its own message
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > member_bytes:
            raise DatasetError(
                f"{name} in {path} claims shape {shape} of {dtype} "
                f"({sizes.human_bytes(nbytes)}), but its member holds {member_bytes:,} bytes: "
                "the file is corrupt or crafted."
            )
        total += nbytes
        if total > max_bytes:
            raise DatasetError(
                f"{path} holds arrays of {sizes.human_bytes(total)} or more once decompressed "
                f"({name}: shape {shape}, {dtype}), over the limit of "
                f"{sizes.human_bytes(max_bytes)} ({_limit_source(max_bytes)}). Use a subset, or "
                "raise the limit (--max-data-bytes / max_bytes)."
            )


def read_npz(path: Path, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``, after checking from their headers that they fit ``max_bytes``
    (default :func:`~workbench.data.sizes.max_data_bytes`)."""
    _check_npz_sizes(path, max_bytes or sizes.max_data_bytes())
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {}
            for key in f.files:
                try:
                    out[key] = f[key]
                except ValueError as err:
                    if "allow_pickle" not in str(err):
                        raise
                    raise DatasetError(
                        f"{key} in {path} is an array of Python objects, which happens when "
                        "images of different shapes are stacked (ragged). All images must share "
                        "one shape: resize them, then save plain numeric arrays."
                    ) from err
            return out
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise DatasetError(
            f"{path} is not a readable .npz ({type(err).__name__}: {err}). It may be truncated; "
            "delete it and load again, or point at another copy."
        ) from err


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()
