"""Any user's image classifier, loaded from whatever Keras format saved it.

The workbench answers "edge or cloud?" for any Keras image classifier:

- **the model**: a ``.keras`` file saved by Keras 3 (today's default ``keras``) or by tf-keras
  (Keras 2), a legacy ``.h5`` file, or a SavedModel directory; Sequential or functional;
  softmax over N classes, or logits (say so with ``logits=True``);
- **the data**: see :func:`workbench.data.datasets.load_image_dataset` (an ``.npz`` or one folder of
  images per class);
- optionally an **input scale**: the model receives ``pixels * input_scale``. The default
  is none (the model gets the stored pixel values as float32): preprocessing such as a
  ``Rescaling`` layer belongs in the model. Notebook 02's CIFAR-10 CNNs take ``pixels / 255``.

:func:`load_classifier` opens the model whatever saved it, in safe mode: Keras 3 with
``safe_mode=True``, tf-keras under its ``SafeModeScope`` (a ``Lambda`` layer's Python byte code
is refused, not run), and a SavedModel only after :mod:`workbench.models.trust` has read its
graphs for operations that reach files, processes or the network. ``trust_model=True``
(``--trust-model``) lifts these checks for a file you trust as you would trust its author's
code. A Keras 3 model is bridged into tf-keras (:mod:`workbench.models.bridge`) so TensorFlow
Model Optimization can compress it; if that is impossible the model still goes through
everything that does not need tfmot.
:func:`workbench.models.contract.check_pair` then compares model and data before any work.
A model that cannot be used raises :class:`ContractError` naming the file and what to do.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 for tf.keras before TensorFlow loads
from workbench.core import errors
from workbench.models import trust


class ContractError(ValueError):
    """The model, the data, or the pair does not meet the contract. The message says why."""


@dataclass
class ImageClassifier:
    """A user's image classifier as the workbench uses it.

    Attributes:
        path: the file or folder it was loaded from.
        sha256: digest of the file (of every file, for a SavedModel folder).
        saved_by: which library wrote it, e.g. ``"Keras 3.15.1"``, ``"tf-keras 2.21.0"``.
        native: the model as loaded (a Keras 3 model, a tf-keras model, or a SavedModel):
            what predicts, is served, split and converted by the post-training variants.
        keras_model: the tf-keras model that tfmot and fine-tuning use (the loaded one, or
            the bridge of a Keras 3 one); ``None`` when there is none.
        keras_note: how ``keras_model`` was obtained, or why there is none.
        input_shape: (height, width, channels) of one input image.
        num_classes: number of outputs.
        logits: whether the file outputs logits (a softmax was appended on loading).
    """

    path: Path
    sha256: str
    saved_by: str
    native: Any
    keras_model: Any
    keras_note: str
    input_shape: tuple[int, ...]
    num_classes: int
    logits: bool = False
    name: str = "model"
    _signature: Any = field(default=None, repr=False)

    @property
    def tfmot_ready(self) -> bool:
        """Whether there is a tf-keras model for the techniques that need one."""
        return self.keras_model is not None

    def predict(self, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (inference mode) for inputs already in model units."""
        x = np.asarray(x, dtype=np.float32)
        model = self.native  # as it came (a Keras 3 model's bridge serves tfmot alone)
        if self._signature is None:
            return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
        import tensorflow as tf

        outs = []
        name = next(iter(self._signature.structured_input_signature[1]))
        for i in range(0, len(x), batch_size):
            result = self._signature(**{name: tf.constant(x[i : i + batch_size])})
            y = next(iter(result.values())).numpy()
            outs.append(tf.nn.softmax(y).numpy() if self.logits else y)
        return np.concatenate(outs)

    def describe(self) -> dict:
        """What was assessed, for reports: file, digest, writer, shapes, how tfmot sees it."""
        return {
            "file": str(self.path),
            "sha256": self.sha256,
            "saved_by": self.saved_by,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "outputs": "logits (softmax appended)" if self.logits else "probabilities",
            "parameters": _count_params(self.keras_model or self.native),
            "tf_keras": self.keras_note,
        }


def bridge_keras3(classifier: ImageClassifier, *, x_check: np.ndarray | None = None) -> None:
    """Give a Keras 3 classifier its tf-keras twin (:mod:`workbench.models.bridge`), if it has none.

    On failure ``keras_model`` stays ``None`` and ``keras_note`` says why: the techniques
    that need tf-keras are then skipped with that reason, the others run.
    """
    from workbench.models import bridge

    if classifier.keras_model is not None or not bridge.is_keras3_model(classifier.native):
        return
    try:
        classifier.keras_model = bridge.to_tf_keras(classifier.native, x_check=x_check)
        classifier.keras_note = (
            "bridged from Keras 3 (graph rebuilt layer by layer, weights copied, verified on "
            f"{'real' if x_check is not None else 'random'} inputs)"
        )
    except bridge.BridgeError as err:
        classifier.keras_note = f"not available: {err}"


def load_classifier(
    path: str | Path, *, logits: bool = False, bridge: bool = True, trust_model: bool = False
) -> ImageClassifier:
    """Open an image classifier, whatever saved it, with a tf-keras twin for tfmot if possible.

    Args:
        path: a ``.keras`` file (Keras 3 or tf-keras), an ``.h5`` file, or a SavedModel folder.
        logits: the model outputs logits; a softmax is appended so every later stage sees
            probabilities (accuracy and agreement are unchanged, confidences become meaningful).
        bridge: bridge a Keras 3 model to tf-keras now (verified on random inputs); use
            :func:`open_pair` to verify it on real data instead.
        trust_model: load without the safety checks (Python byte code in ``Lambda`` layers,
            SavedModel ops that reach files, processes or the network): only for a file
            you trust as you would trust a program from its author.

    Raises:
        ContractError: missing, corrupt, unsupported or unsafe file, or not an image
            classifier.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ContractError(
            f"No model at {path}. Pass a .keras file, an .h5 file or a SavedModel folder."
        )
    if trust_model:
        trust.trust_warning(path)
    if path.is_dir():
        classifier = _load_saved_model(path, logits=logits, trust_model=trust_model)
    elif path.suffix == ".keras":
        classifier = _load_keras_file(path, logits=logits, trust_model=trust_model)
    elif path.suffix in (".h5", ".hdf5"):
        model = _load_tf_keras(path, trust_model=trust_model)
        classifier = _from_tf_keras(model, path, "tf-keras (HDF5)", logits)
    else:
        raise ContractError(
            f"{path} is neither a .keras/.h5 file nor a SavedModel folder: don't know how to "
            "open it."
        )
    check_classifier_shapes(classifier)
    if bridge:
        bridge_keras3(classifier)
    return classifier


def keras_file_version(path: Path) -> str:
    """The Keras version recorded in a ``.keras`` archive (its ``metadata.json``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read("metadata.json"))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as err:
        raise ContractError(
            f"{path} is not a readable .keras file ({type(err).__name__}: {err}). It may be "
            "truncated or another file type: save the model again with model.save(path)."
        ) from err
    return str(meta.get("keras_version", "unknown"))


def _load_keras_file(path: Path, *, logits: bool, trust_model: bool) -> ImageClassifier:
    version = keras_file_version(path)
    if not version.startswith("3"):
        model = _load_tf_keras(path, trust_model=trust_model)
        return _from_tf_keras(model, path, f"tf-keras {version}", logits)
    import keras

    try:
        native = keras.saving.load_model(path, compile=False, safe_mode=not trust_model)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for bad files
        _raise_if_unsafe(path, err)
        raise ContractError(
            f"Keras {keras.__version__} could not load {path} ({type(err).__name__}: "
            f"{errors.first_line(err)}). Custom layers must be importable and registered "
            "(keras.saving.register_keras_serializable)."
        ) from err
    if logits:
        native = _append_softmax_keras3(native)
    native.jit_compile = False  # predict() would first compile the graph with XLA (slow)
    shape, classes = _io_shape(native)
    return ImageClassifier(
        path=path,
        sha256=_digest(path),
        saved_by=f"Keras {version}",
        native=native,
        keras_model=None,
        keras_note="Keras 3 model, not bridged to tf-keras yet",
        input_shape=shape,
        num_classes=classes,
        logits=logits,
        name=native.name,
    )


def _load_tf_keras(path: Path, *, trust_model: bool):
    """tf-keras' loader under its safe-mode scope (its ``safe_mode`` argument only reaches the
    ``.keras`` format; the scope also covers ``.h5`` and SavedModel)."""
    import tf_keras
    from tf_keras.src.saving import serialization_lib

    try:
        with serialization_lib.SafeModeScope(not trust_model):
            return tf_keras.models.load_model(path, compile=False, safe_mode=not trust_model)
    except Exception as err:  # noqa: BLE001
        _raise_if_unsafe(path, err)
        raise ContractError(
            f"tf-keras could not load {path} ({type(err).__name__}: {errors.first_line(err)}). The "
            "file is corrupt or holds custom objects tf-keras does not know."
        ) from err


def _raise_if_unsafe(path: Path, err: Exception) -> None:
    """Keras refused Python byte code (safe mode): say so, and how to opt in."""
    text = str(err)
    if "safe_mode" in text or "arbitrary code execution" in text:
        raise ContractError(
            f"Refusing to load {path}: it holds Python byte code (a Lambda layer with a Python "
            f"lambda), which would run on loading. {trust.TRUST_HINT}"
        ) from None


def _from_tf_keras(model, path: Path, saved_by: str, logits: bool) -> ImageClassifier:
    from workbench.models import bridge

    if logits:
        import tf_keras

        model = tf_keras.Model(
            model.inputs[0], tf_keras.layers.Softmax(name="softmax_of_logits")(model.outputs[0])
        )
    bridge.reserve_layer_names(model)
    shape, classes = _io_shape(model)
    return ImageClassifier(
        path=path,
        sha256=_digest(path),
        saved_by=saved_by,
        native=model,
        keras_model=model,
        keras_note="loaded as saved (tf-keras)",
        input_shape=shape,
        num_classes=classes,
        logits=logits,
        name=model.name,
    )


def _load_saved_model(path: Path, *, logits: bool, trust_model: bool) -> ImageClassifier:
    import tensorflow as tf

    if not (path / "saved_model.pb").exists():
        raise ContractError(
            f"{path} is a folder without saved_model.pb: not a SavedModel. Point at the folder "
            "that holds saved_model.pb (for TF Serving layouts, <base>/<name>/<version>/)."
        )
    try:
        trust.check_saved_model(path, trust_model=trust_model)  # before anything executes it
    except trust.UntrustedModelError as err:
        raise ContractError(str(err)) from None
    except ValueError as err:
        raise ContractError(f"{path} is not a readable SavedModel: {err}.") from None
    if (path / "keras_metadata.pb").exists():  # a tf-keras SavedModel: the full Keras model
        model = _load_tf_keras(path, trust_model=trust_model)
        return _from_tf_keras(model, path, "tf-keras (SavedModel)", logits)
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as err:  # noqa: BLE001
        raise ContractError(
            f"TensorFlow could not load the SavedModel {path} ({errors.first_line(err)})."
        ) from err
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise ContractError(f"{path} has no 'serving_default' signature to call.")
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1 or len(signature.structured_outputs) != 1:
        raise ContractError(
            f"{path}'s serving_default takes {list(inputs)} and returns "
            f"{list(signature.structured_outputs)}: an image classifier takes one image tensor "
            "and returns one tensor of class scores."
        )
    spec = next(iter(inputs.values()))
    out = next(iter(signature.structured_outputs.values()))
    dims = spec.shape.as_list()
    classifier = ImageClassifier(
        path=path,
        sha256=_digest(path),
        saved_by="SavedModel (no Keras metadata)",
        native=loaded,
        keras_model=None,
        keras_note=(
            "not available: a plain SavedModel has no Keras layers (re-save the model as .keras "
            "for pruning, clustering, quantization-aware training and split computing)"
        ),
        input_shape=tuple(dims[1:]),
        num_classes=out.shape.as_list()[-1],
        logits=logits,
        name=path.parent.name if path.name.isdigit() else path.name,
        _signature=signature,
    )
    if spec.dtype != tf.float32:
        raise ContractError(
            f"{path}'s serving_default takes {spec.dtype.name} images; the workbench feeds float32."
        )
    return classifier


def _append_softmax_keras3(model):
    import keras

    return keras.Model(
        model.inputs[0], keras.layers.Softmax(name="softmax_of_logits")(model.outputs[0])
    )


def _io_shape(model) -> tuple[tuple, int]:
    inputs, outputs = list(model.inputs), list(model.outputs)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ContractError(
            f"{model.name!r} has {len(inputs)} inputs and {len(outputs)} outputs; an image "
            "classifier has one image input and one output of class scores."
        )
    return tuple(inputs[0].shape[1:]), outputs[0].shape[-1]


def scale_inputs(x: np.ndarray, input_scale: float | None) -> np.ndarray:
    """Images in model units: float32 pixels, times ``input_scale`` when one is given."""
    x = np.asarray(x, dtype=np.float32)
    return x * np.float32(input_scale) if input_scale is not None else x


# ----------------------------------------------------------------------------- helpers


def _digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _count_params(model) -> int | None:
    try:
        return int(model.count_params())
    except (AttributeError, ValueError):
        return None


def check_classifier_shapes(c: ImageClassifier) -> None:
    shape = c.input_shape
    if len(shape) != 3 or any(d is None for d in shape):
        raise ContractError(
            f"{c.path}: the model takes inputs of shape (batch, {', '.join(map(str, shape))}); "
            "the workbench needs fixed (height, width, channels) images. Re-save it with "
            "keras.Input((H, W, C))."
        )
    if shape[-1] not in (1, 3):
        raise ContractError(
            f"{c.path}: the model takes {shape[-1]} channels per pixel; images have 1 (grayscale) "
            "or 3 (RGB), channels last."
        )
    if c.num_classes is None or c.num_classes < 2:
        raise ContractError(
            f"{c.path}: the model's output has {c.num_classes} units; a classifier has one per "
            "class (at least 2)."
        )
