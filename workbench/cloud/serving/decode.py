"""Requests to checked arrays, and arrays to responses, within limits derived from the model.

Every input goes through the same checks whether it came as JSON (REST) or as a
TensorProto (gRPC): the signature's rank, shape and dtype, a cap on instances per request
(``--max-batch-size``), finite values after the cast to the signature's dtype, and, for
binary strings that are images, the image header (size, channels) before anything is
decoded. JSON bodies are also checked for how many values, lists, objects and strings they
hold *before* they are parsed, so a body can never make the parser build more Python objects
than the largest legitimate request would.

Limits come from the model's signatures (:func:`derive_limits`):

- the **image shape** ``(height, width, channels)`` is the ``serving_default`` signature's
  input shape ``[batch, height, width, channels]`` (else the first signature with such an
  input); an image sent to any signature must have that size and channel count;
- the **body limit** is the largest legitimate request: ``--max-batch-size`` instances in
  the most verbose JSON a client could send (32 bytes a number, base64 strings);
- the **structure budget** is what ``--max-batch-size`` instances contain (values, nested
  lists, objects, strings), plus a little slack.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.cloud.serving.errors import RequestError

DT_NAMES = {
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "float16": "DT_HALF",
    "int8": "DT_INT8",
    "uint8": "DT_UINT8",
    "int16": "DT_INT16",
    "uint16": "DT_UINT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "bool": "DT_BOOL",
    "string": "DT_STRING",
}
JSON_BYTES_PER_NUMBER = 32  # "-1.2345678901234567e-300, " and indentation fit
UNKNOWN_SHAPE_BODY_BYTES = 16 * 2**20  # body limit when a signature has unknown dimensions
MIN_BODY_BYTES = 2**20
BODY_SLACK_BYTES = 64 * 2**10
STRUCTURE_SLACK = 256  # keys such as "instances" and "signature_name"
MAX_UNKNOWN_RANK = 32
IMAGE_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}
MODE_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "F": 1, "LA": 2, "RGB": 3, "YCbCr": 3}
MODE_CHANNELS |= {"RGBA": 4, "CMYK": 4, "PA": 4}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature: name, dtype name and shape (``None`` = any size)."""

    name: str
    dtype: str  # numpy dtype name, or "string"
    shape: tuple[int | None, ...] | None  # None: unknown rank

    @classmethod
    def from_tf(cls, name: str, spec: Any) -> TensorSpec:
        """From a ``tf.TensorSpec``."""
        dims = None if spec.shape.rank is None else tuple(spec.shape.as_list())
        return cls(name, spec.dtype.name, dims)

    @property
    def dt_name(self) -> str:
        return DT_NAMES.get(self.dtype, f"DT_{self.dtype.upper()}")

    @property
    def is_string(self) -> bool:
        return self.dtype == "string"

    def shape_text(self) -> str:
        if self.shape is None:
            return "[unknown rank]"
        return "[" + ", ".join("-1" if d is None else str(d) for d in self.shape) + "]"

    def instance_elements(self) -> int | None:
        """Values in one instance (the dimensions after the batch one); None if unknown."""
        if self.shape is None or any(d is None for d in self.shape[1:]):
            return None
        return math.prod(self.shape[1:])

    def instance_lists(self) -> int | None:
        """JSON lists in one instance: ``[[[r, g, b], ...], ...]`` has 1 + H + H*W."""
        if self.instance_elements() is None:
            return None
        dims = self.shape[1:]
        return sum(math.prod(dims[:k]) for k in range(len(dims)))


Signature = dict[str, TensorSpec]  # input name -> spec


@dataclass(frozen=True)
class Limits:
    """What one request to a model may hold. See the module docstring for how each is derived."""

    max_batch_size: int
    max_body_bytes: int
    max_string_bytes: int
    image_shape: tuple[int, int, int] | None
    max_decoded_image_bytes: int
    max_values: int | None = None  # commas in a JSON body; None: not checked
    max_lists: int | None = None
    max_objects: int | None = None


def image_shape(signatures: dict[str, Signature]) -> tuple[int, int, int] | None:
    """``(height, width, channels)`` of the model's image input, or None if it has none."""
    names = sorted(signatures, key=lambda n: (n != "serving_default", n))
    for name in names:
        inputs = list(signatures[name].values())
        if len(inputs) != 1 or inputs[0].is_string or inputs[0].shape is None:
            continue
        dims = inputs[0].shape
        if len(dims) == 4 and all(d is not None for d in dims[1:]) and 1 <= dims[3] <= 4:
            return (dims[1], dims[2], dims[3])
    return None


def derive_limits(
    signatures: dict[str, Signature], *, max_batch_size: int, max_body_bytes: int | None = None
) -> Limits:
    """The limits of one model from its signatures and ``--max-batch-size``."""
    shape = image_shape(signatures)
    numeric = [
        s.instance_elements() * np.dtype(s.dtype).itemsize
        for sig in signatures.values()
        for s in sig.values()
        if not s.is_string and s.instance_elements() is not None
    ]
    if shape is not None:
        max_string = 2 * math.prod(shape) + BODY_SLACK_BYTES
    elif numeric:
        max_string = 2 * max(numeric) + BODY_SLACK_BYTES
    else:
        max_string = 2**20
    per_instance = [_instance_budget(sig, max_string) for sig in signatures.values()]
    known = all(b is not None for b in per_instance) and per_instance
    n = max_batch_size
    if known:
        body = max(MIN_BODY_BYTES, n * max(b["bytes"] for b in per_instance) + BODY_SLACK_BYTES)
        budget = {
            key: n * max(b[key] for b in per_instance) + STRUCTURE_SLACK
            for key in ("values", "lists", "objects")
        }
    else:
        body, budget = UNKNOWN_SHAPE_BODY_BYTES, {}
    return Limits(
        max_batch_size=n,
        max_body_bytes=max_body_bytes or body,
        max_string_bytes=max_string,
        image_shape=shape,
        max_decoded_image_bytes=n * math.prod(shape) if shape else 32 * 2**20,
        max_values=budget.get("values"),
        max_lists=budget.get("lists"),
        max_objects=budget.get("objects"),
    )


def _instance_budget(signature: Signature, max_string: int) -> dict[str, int] | None:
    """Bytes and JSON structures in one instance of ``signature``; None if shapes are unknown."""
    out = {"bytes": 0, "values": 0, "lists": 0, "objects": 1}
    for spec in signature.values():
        elements, lists = spec.instance_elements(), spec.instance_lists()
        if elements is None:
            return None
        out["lists"] += lists + 1
        if spec.is_string:
            out["bytes"] += elements * (math.ceil(max_string * 4 / 3) + 16)
            out["objects"] += elements  # {"b64": ...}
        else:
            out["bytes"] += (elements + lists) * JSON_BYTES_PER_NUMBER
        out["values"] += elements + lists + 2
    return out


# ---------------------------------------------------------------- JSON bodies


def check_structure(body: bytes, limits: Limits) -> None:
    """Refuse a JSON body holding more than ``max_batch_size`` instances could, before parsing.

    Counting commas, ``[`` and ``{`` bounds the Python objects the parser would build
    (every string or number but one per container is followed by a comma).
    """
    if limits.max_values is None:
        return
    counts = {
        "values": (body.count(b","), limits.max_values),
        "lists": (body.count(b"["), limits.max_lists),
        "objects": (body.count(b"{"), limits.max_objects),
    }
    for what, (count, limit) in counts.items():
        if count > limit:
            raise RequestError(
                f"The request holds about {count:,} JSON {what}; a request to this model holds "
                f"at most {limit:,} ({limits.max_batch_size} instances, the server's "
                "--max-batch-size): send fewer instances per request"
            )


def parse_json(body: bytes, limits: Limits) -> dict:
    """Parse a predict body as a JSON object (NaN and Infinity refused), or raise 400.

    orjson parses strict JSON fast; on failure the standard parser re-reads the body so the
    error message names the problem (NaN, say) and where it is.
    """
    import orjson

    check_structure(body, limits)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            doc = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as err:
            raise RequestError(f"JSON Parse error: {err}") from None
    if not isinstance(doc, dict):
        raise RequestError("The request body must be a JSON object with 'instances' or 'inputs'")
    return doc


def _reject_constant(name: str):
    raise RequestError(f"{name} is not allowed in tensors (JSON has no NaN or Infinity)")


def decode_json_request(
    doc: dict, signature: Signature, limits: Limits
) -> tuple[dict[str, np.ndarray], str]:
    """Turn a parsed TF Serving predict body into checked input arrays, and say which format."""
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances == has_inputs:
        raise RequestError("Missing 'instances' or 'inputs' key (exactly one is required)")
    columns = _row_columns(doc["instances"], signature) if has_instances else None
    if columns is None:
        columns = _columnar_columns(doc["inputs"], signature)
    arrays = {n: json_to_array(v, signature[n], f"input {n!r}", limits) for n, v in columns.items()}
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) > 1:
        raise RequestError(
            f"Inputs have different batch sizes: { {n: len(a) for n, a in arrays.items()} }"
        )
    return arrays, ("row" if has_instances else "columnar")


def _row_columns(instances: Any, signature: Signature) -> dict[str, Any]:
    names = list(signature)
    if not isinstance(instances, list):
        raise RequestError("'instances' must be a list")
    if not instances:
        raise RequestError("'instances' is empty; send at least one instance")
    first = instances[0]
    if len(names) == 1 and not (
        isinstance(first, dict) and set(first) == {names[0]} and not _is_b64(first)
    ):
        return {names[0]: instances}
    if not all(isinstance(i, dict) for i in instances):
        raise RequestError(f"Each instance must be an object with the inputs {names}")
    extra = {k for i in instances for k in i} - set(names)
    if extra:
        raise RequestError(f"Unknown input(s) {sorted(extra)}; the signature takes {names}")
    if any(n not in i for i in instances for n in names):
        raise RequestError(f"An instance lacks one of the inputs {names}")
    return {n: [i[n] for i in instances] for n in names}


def _columnar_columns(inputs: Any, signature: Signature) -> dict[str, Any]:
    names = list(signature)
    if isinstance(inputs, dict) and not _is_b64(inputs):
        extra, missing = set(inputs) - set(names), set(names) - set(inputs)
        if extra or missing:
            raise RequestError(
                f"'inputs' must name exactly {names} (unknown {sorted(extra)}, "
                f"missing {sorted(missing)})"
            )
        return dict(inputs)
    if len(names) == 1:
        return {names[0]: inputs}
    raise RequestError(f"'inputs' must be an object naming {names}")


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def json_to_array(value: Any, spec: TensorSpec, what: str, limits: Limits) -> np.ndarray:
    """A JSON value as an array of the signature's dtype and shape, or raise 400."""
    if spec.is_string:
        arr = _string_array(value, spec, what)
    else:
        arr = _numeric_array(value, spec, what)
    return check_array(arr, spec, what, limits)


def _numeric_array(value: Any, spec: TensorSpec, what: str) -> np.ndarray:
    rank = MAX_UNKNOWN_RANK if spec.shape is None else len(spec.shape)
    depth, probe = 0, value
    while isinstance(probe, list) and probe and depth <= rank:
        probe, depth = probe[0], depth + 1
    if depth > rank:
        raise RequestError(
            f"{what}: values are nested more than {rank} levels deep, deeper than the "
            f"signature's shape {spec.shape_text()}"
        )
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, RecursionError) as err:
        raise RequestError(f"{what}: ragged or malformed tensor ({err})") from None
    if arr.dtype == object:
        raise RequestError(
            f"{what}: ragged nested lists or numbers out of range; every row must have the "
            "same length"
        )
    target = np.dtype(spec.dtype)
    if target.kind == "b":
        if arr.dtype.kind != "b":
            raise RequestError(f"{what}: expected true/false values for a DT_BOOL tensor")
        return arr
    if arr.dtype.kind not in "iuf":
        raise RequestError(
            f"{what}: expected numbers for a {spec.dt_name} tensor, got {arr.dtype.kind!r} "
            "values (strings or booleans?)"
        )
    return cast_numbers(arr, target, what)


def cast_numbers(arr: np.ndarray, target: np.dtype, what: str) -> np.ndarray:
    """Cast to ``target``; integers must be whole and in range, floats finite after the cast."""
    if target.kind in "iu":
        if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
            raise RequestError(f"{what}: expected integers for {target.name}")
        info = np.iinfo(target)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise RequestError(
                f"{what}: values outside the {target.name} range [{info.min}, {info.max}]"
            )
        return arr.astype(target)
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(target)
    if out.size and not np.all(np.isfinite(out)):
        raise RequestError(
            f"{what}: values that are not finite as {target.name} (NaN, Infinity, or beyond "
            f"±{float(np.finfo(target).max):.4g})"
        )
    return out


def _string_array(value: Any, spec: TensorSpec, what: str) -> np.ndarray:
    rank = MAX_UNKNOWN_RANK if spec.shape is None else len(spec.shape)

    def convert(v: Any, depth: int) -> Any:
        if isinstance(v, list):
            if depth >= rank:
                raise RequestError(
                    f"{what}: values are nested deeper than the signature's shape "
                    f"{spec.shape_text()}"
                )
            return [convert(x, depth + 1) for x in v]
        if isinstance(v, dict):
            if set(v) != {"b64"} or not isinstance(v["b64"], str):
                raise RequestError(f'{what}: binary values must be {{"b64": "<base64>"}}')
            try:
                return base64.b64decode(v["b64"], validate=True)
            except (binascii.Error, ValueError) as err:
                raise RequestError(f"{what}: invalid base64 ({err})") from None
        if isinstance(v, str):
            return v.encode()
        raise RequestError(f'{what}: expected strings or {{"b64": ...}} values')

    nested = convert(value, 0)
    try:
        arr = np.array(nested, dtype=object)
    except ValueError as err:
        raise RequestError(f"{what}: ragged nested lists ({err})") from None
    if arr.shape != _nested_shape(nested):
        raise RequestError(f"{what}: ragged nested lists; every row must have the same length")
    return arr


def _nested_shape(nested: Any) -> tuple[int, ...]:
    shape = []
    while isinstance(nested, list):
        shape.append(len(nested))
        if not nested:
            break
        nested = nested[0]
    return tuple(shape)


# ---------------------------------------------------------------- checks shared with gRPC


def check_array(arr: np.ndarray, spec: TensorSpec, what: str, limits: Limits) -> np.ndarray:
    """Shape, batch size, finiteness and (for strings) size and image headers; return ``arr``."""
    if arr.ndim >= 1 and arr.shape[0] == 0:
        raise RequestError(f"{what}: empty batch; send at least one instance")
    expected = spec.shape
    if expected is not None and (
        arr.ndim != len(expected)
        or any(e is not None and e != a for e, a in zip(expected, arr.shape, strict=False))
    ):
        raise RequestError(
            f"{what}: shape {list(arr.shape)} does not match the signature's {spec.shape_text()}"
        )
    if arr.ndim >= 1 and arr.shape[0] > limits.max_batch_size:
        raise RequestError(
            f"{what}: {arr.shape[0]} instances in one request; the server takes at most "
            f"{limits.max_batch_size} (--max-batch-size): split the request"
        )
    if arr.dtype.kind == "f" and arr.size and not np.all(np.isfinite(arr)):
        raise RequestError(f"{what}: NaN or Infinity is not allowed")
    if spec.is_string:
        check_strings(arr, what, limits)
    return arr


def check_strings(arr: np.ndarray, what: str, limits: Limits) -> None:
    """Each string within the size cap; each image's header matching the model's image shape."""
    decoded = 0
    for i, data in enumerate(arr.reshape(-1)):
        decoded += check_image_header(data, f"{what}[{i}]", limits)
        if len(data) > limits.max_string_bytes:
            raise RequestError(
                f"{what}[{i}]: {len(data):,} bytes, more than {limits.max_string_bytes:,} for "
                "one value of this model"
            )
        if decoded > limits.max_decoded_image_bytes:
            raise RequestError(
                f"{what}: the images would take {decoded:,} bytes decoded, more than "
                f"{limits.max_decoded_image_bytes:,}: send smaller or fewer images"
            )


def check_image_header(data: bytes, what: str, limits: Limits) -> int:
    """Read only the header of an image (PNG, JPEG, GIF, BMP) and check it; 0 if not an image.

    Returns:
        the bytes the image takes once decoded (width x height x channels).
    """
    kind = next((k for magic, k in IMAGE_MAGIC.items() if data.startswith(magic)), None)
    if kind is None:
        return 0  # raw tensor bytes, not an image: the model's own checks apply
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                (width, height), mode, info = img.size, img.mode, dict(img.info)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise RequestError(f"{what}: a {kind} whose header cannot be read ({err})") from None
    if mode == "P":
        channels = 4 if "transparency" in info else 3
    else:
        channels = MODE_CHANNELS.get(mode, 4)
    if limits.image_shape is not None:
        h, w, c = limits.image_shape
        if (height, width, channels) != (h, w, c):
            raise RequestError(
                f"{what}: a {width}x{height} {kind} with {channels} channel(s) ({mode}); this "
                f"model takes {w}x{h} images with {c} channel(s): resize or convert it first"
            )
    return width * height * channels


# ---------------------------------------------------------------- responses


def encode_json_response(outputs: dict[str, np.ndarray], fmt: str) -> bytes:
    """TF Serving's response: ``predictions`` for row requests, ``outputs`` for columnar.

    Numbers are written at their own precision (float32 as float32: ``0.1``, not
    ``0.10000000149011612``).
    """
    import orjson

    values = {k: _jsonable(k, v) for k, v in outputs.items()}
    if fmt == "row":
        if len(values) == 1:
            doc: dict = {"predictions": next(iter(values.values()))}
        else:
            sizes = {k: (np.shape(outputs[k]) or (None,))[0] for k in outputs}
            n = next(iter(sizes.values()))
            if n is None or any(size != n for size in sizes.values()):
                raise RequestError(
                    f"The outputs do not share one batch size ({sizes}), which the row format "
                    'needs: send the request in the columnar format ("inputs")'
                )
            doc = {"predictions": [{k: v[i] for k, v in values.items()} for i in range(n)]}
    else:
        doc = {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _jsonable(name: str, arr: np.ndarray) -> Any:
    if arr.dtype != object:
        return np.ascontiguousarray(arr)

    def text(b: bytes) -> Any:
        if name.endswith("_bytes"):
            return {"b64": base64.b64encode(b).decode()}
        try:
            return b.decode()
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(b).decode()}

    flat = [text(b) for b in arr.reshape(-1)]
    return np.array(flat, dtype=object).reshape(arr.shape).tolist() if arr.ndim else flat[0]
