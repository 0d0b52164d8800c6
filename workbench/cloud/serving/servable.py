"""One loaded version (a servable): its signatures, their limits, and how it is called.

:func:`load_saved_model` loads a version folder as TensorFlow Serving does:

- **TensorFlow** (the default): the SavedModel's signatures, after
  :func:`workbench.models.trust.check_saved_model` has read its graphs, main graph and function
  library, for operations that reach files, processes or the network (refused unless the
  server runs with ``--trust-model``: a model file is code).
- **LiteRT** (``--prefer-tflite-model``, TF Serving's ``--prefer_tflite_model``): a
  ``model.tflite`` next to ``saved_model.pb`` is served instead, with the same REST and gRPC
  API: its signature runners become the signatures (``serving_default`` at least, as far as
  the converter kept them), described by the same ``SignatureDef`` protos for ``/metadata``.
  LiteRT here runs TFLite's built-in ops only (no TensorFlow "Flex" delegate), which cannot
  reach files or the network. One interpreter per version runs one call at a time; its
  compute time is measured as TensorFlow's is (``Server-Timing: compute``).

Every version is warmed up (each numeric signature called once on zeros) before it is served.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.cloud.serving.decode import Limits, TensorSpec, derive_limits
from workbench.cloud.serving.errors import RequestError

TFLITE_FILE = "model.tflite"
PREDICT_METHOD = "tensorflow/serving/predict"


@dataclass
class Signature:
    """One callable signature of a loaded model.

    ``fn`` is a SavedModel's concrete function (called with tensors), or, with ``numpy``
    set, any callable from arrays to arrays (a LiteRT signature runner). ``gate``, when set,
    is held around every call (LiteRT's interpreter runs one call at a time).
    """

    name: str
    fn: Any
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    numpy: bool = False
    gate: Any = None

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the model; an input the graph rejects is a caller mistake (400), not a 500."""
        import tensorflow as tf

        try:
            with self.gate if self.gate is not None else contextlib.nullcontext():
                if self.numpy:
                    return {k: np.asarray(v) for k, v in self.fn(**arrays).items()}
                result = self.fn(**{k: tf.constant(v) for k, v in arrays.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RequestError(f"The model rejected the input: {first[:300]}") from None
        return {k: np.asarray(v.numpy()) for k, v in result.items()}


@dataclass
class LoadedModel:
    """One loaded version: its signatures (callable and as SignatureDef protos) and limits."""

    name: str
    version: int
    path: Path
    signatures: dict[str, Signature]
    signature_defs: dict[str, Any]  # name -> tensorflow SignatureDef proto
    limits: Limits
    keepalive: Any = None  # the loaded object; the functions need it alive
    runtime: str = "TensorFlow"  # or "LiteRT" (--prefer-tflite-model)
    batchers: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def signature(self, name: str) -> Signature:
        if not isinstance(name, str):
            raise RequestError("'signature_name' must be a string")
        found = self.signatures.get(name or "serving_default")
        if found is None:
            raise RequestError(
                f'Serving signature name: "{name}" not found in signature def '
                f"(available: {sorted(self.signatures)})"
            )
        return found

    def batcher(self, signature: Signature, make: Callable[[Signature], Any]) -> Any:
        """The batcher of one signature, created on first use."""
        with self._lock:
            if signature.name not in self.batchers:
                self.batchers[signature.name] = make(signature)
            return self.batchers[signature.name]

    def close(self) -> None:
        """Stop the batchers (queued requests finish first)."""
        with self._lock:
            batchers, self.batchers = list(self.batchers.values()), {}
        for b in batchers:
            b.close()


def load_saved_model(
    path: Path,
    name: str,
    version: int,
    *,
    max_batch_size: int,
    max_body_bytes: int | None = None,
    trust_model: bool = False,
    prefer_tflite_model: bool = False,
) -> LoadedModel:
    """Load a SavedModel, describe its signatures and limits, and warm it up.

    Its graphs are read for operations that reach files, processes or the network before
    TensorFlow loads it (:func:`workbench.models.trust.check_saved_model`; refused unless
    ``trust_model``). With ``prefer_tflite_model`` and a ``model.tflite`` in the folder, that
    file is served with LiteRT instead. Warm-up calls every signature with fixed-shape numeric
    inputs once on zeros, so the first request is not slower than the rest and a model that
    cannot run fails here, not later.
    """
    path = Path(path)
    if prefer_tflite_model and (path / TFLITE_FILE).is_file():
        model = load_tflite_model(
            path / TFLITE_FILE,
            name,
            version,
            max_batch_size=max_batch_size,
            max_body_bytes=max_body_bytes,
        )
        for signature in model.signatures.values():
            _warm_up(signature)
        return model
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    from workbench.models import trust

    trust.check_saved_model(path, trust_model=trust_model)  # before anything executes it
    loaded = tf.saved_model.load(str(path))
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    all_defs = proto.meta_graphs[0].signature_def
    signatures = {}
    for sig_name, fn in loaded.signatures.items():
        inputs = {k: TensorSpec.from_tf(k, s) for k, s in fn.structured_input_signature[1].items()}
        outputs = {k: TensorSpec.from_tf(k, s) for k, s in fn.structured_outputs.items()}
        signatures[sig_name] = Signature(sig_name, fn, inputs, outputs)
    model = LoadedModel(
        name=name,
        version=version,
        path=path,
        signatures=signatures,
        signature_defs={k: all_defs[k] for k in signatures if k in all_defs},
        limits=derive_limits(
            {k: s.inputs for k, s in signatures.items()},
            max_batch_size=max_batch_size,
            max_body_bytes=max_body_bytes,
        ),
        keepalive=loaded,
    )
    for signature in signatures.values():
        _warm_up(signature)
    return model


def _warm_up(signature: Signature) -> None:
    specs = list(signature.inputs.values())
    if any(s.is_string or s.instance_elements() is None for s in specs):
        return
    zeros = {s.name: np.zeros((1, *s.shape[1:]), dtype=s.dtype) for s in specs}
    try:
        signature.run(zeros)
    except RequestError:
        pass  # the model refuses zeros: a choice of the model, not a broken one


def load_tflite_model(
    path: Path,
    name: str,
    version: int,
    *,
    max_batch_size: int,
    max_body_bytes: int | None = None,
) -> LoadedModel:
    """A ``model.tflite`` as a servable: one LiteRT interpreter, a runner per signature.

    Raises:
        ValueError: the file is not a TFLite model, or has no signatures to serve.
    """
    from ai_edge_litert.interpreter import Interpreter

    content = Path(path).read_bytes()
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError(f"{path} is not a TFLite model (no 'TFL3' identifier)")
    interpreter = Interpreter(model_content=content, num_threads=os.cpu_count() or 1)
    keys = list(interpreter.get_signature_list())
    if not keys:
        raise ValueError(
            f"{path} has no signatures: convert from the SavedModel "
            "(tf.lite.TFLiteConverter.from_saved_model) so that serving_default is kept"
        )
    gate = threading.RLock()  # one interpreter: one call at a time
    signatures, defs = {}, {}
    for key in keys:
        runner = interpreter.get_signature_runner(key)
        inputs = _tflite_specs(runner.get_input_details())
        outputs = _tflite_specs(runner.get_output_details())
        signatures[key] = Signature(key, runner, inputs, outputs, numpy=True, gate=gate)
        defs[key] = _signature_def(key, inputs, outputs)
    png = _png_signature(signatures.get("serving_default"), gate)
    if png is not None and png.name not in signatures:
        signatures[png.name] = png
        defs[png.name] = _signature_def(png.name, png.inputs, png.outputs)
    return LoadedModel(
        name=name,
        version=version,
        path=Path(path).parent,
        signatures=signatures,
        signature_defs=defs,
        limits=derive_limits(
            {k: s.inputs for k, s in signatures.items()},
            max_batch_size=max_batch_size,
            max_body_bytes=max_body_bytes,
        ),
        keepalive=interpreter,
        runtime="LiteRT",
    )


def _png_signature(default: Signature | None, gate) -> Signature | None:
    """``predict_png`` in front of a LiteRT ``serving_default`` that takes one image tensor
    ``[batch, H, W, C]`` (C 1 or 3): PNG files are decoded here (Pillow), checked for H x W and
    C, and passed on as float32 pixels, as the SavedModel's own ``predict_png`` does in its
    graph. TFLite's built-in operations cannot decode a PNG; the server's Python can."""
    if default is None or len(default.inputs) != 1:
        return None
    ((name, spec),) = default.inputs.items()
    shape = tuple(spec.shape or ())
    if len(shape) != 4 or shape[3] not in (1, 3) or None in shape[1:] or spec.is_string:
        return None
    h, w, c = shape[1:]

    def decode_and_run(image_bytes):
        import io

        from PIL import Image

        images = []
        for i, data in enumerate(np.asarray(image_bytes).ravel()):
            try:
                img = Image.open(io.BytesIO(bytes(data)))
                img.load()
            except Exception as err:  # noqa: BLE001 - Pillow raises many types for bad files
                raise ValueError(f"image {i} is not a readable PNG ({err})") from None
            if img.format != "PNG" or img.size != (w, h):
                raise ValueError(f"predict_png takes {h}x{w} PNG images; image {i} is not one")
            pixels = np.asarray(img.convert("L" if c == 1 else "RGB"), dtype=np.float32)
            images.append(pixels.reshape(h, w, c))
        return default.fn(**{name: np.stack(images)})

    return Signature(
        "predict_png",
        decode_and_run,
        {"image_bytes": TensorSpec("image_bytes", "string", (None,))},
        default.outputs,
        numpy=True,
        gate=gate,
    )


def _tflite_specs(details: dict) -> dict[str, TensorSpec]:
    specs = {}
    for key, d in details.items():
        dims = list(d.get("shape_signature", [])) or list(d["shape"])
        shape = tuple(None if int(x) < 0 else int(x) for x in dims)
        if shape and shape[0] == 1:
            shape = (None, *shape[1:])  # a batch of 1 is resized to each request's
        dtype = "string" if np.dtype(d["dtype"]).kind in "SOU" else np.dtype(d["dtype"]).name
        specs[key] = TensorSpec(key, dtype, shape)
    return specs


def _signature_def(key: str, inputs: dict[str, TensorSpec], outputs: dict[str, TensorSpec]):
    """A TensorFlow ``SignatureDef`` proto describing a LiteRT signature (for /metadata)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    proto = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    for target, specs in ((proto.inputs, inputs), (proto.outputs, outputs)):
        for name, spec in specs.items():
            info = target[name]
            info.name = f"{key}_{name}:0"
            info.dtype = tf.as_dtype(spec.dtype).as_datatype_enum
            for d in spec.shape or ():
                info.tensor_shape.dim.add(size=-1 if d is None else d)
    return proto
