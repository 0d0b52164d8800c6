"""The edge runtime: TFLite models run with LiteRT (``ai_edge_litert``), as on a device.

:class:`EdgeModel` loads a ``.tflite`` file or bytes, sets the thread count,
quantizes float inputs and dequantizes outputs for integer models, predicts
batches, evaluates accuracy and benchmarks latency. A corrupt or truncated
file raises :class:`EdgeModelError` naming the file.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np

from workbench.core import atomic, timing
from workbench.models import subject


class EdgeModelError(RuntimeError):
    """A TFLite model cannot be loaded or run. The message names the file and what to do."""


class EdgeModel:
    """A TFLite model on the LiteRT interpreter.

    Args:
        source: path to a ``.tflite`` file, or the flatbuffer bytes.
        num_threads: CPU threads for the interpreter (1 models a small device core).
        name: label used in messages (defaults to the file name).
    """

    def __init__(
        self, source: str | os.PathLike | bytes, *, num_threads: int = 1, name: str | None = None
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(source, bytes | bytearray):
            content, self.path = bytes(source), None
            self.name = name or "<in-memory model>"
        else:
            self.path = Path(source)
            self.name = name or self.path.name
            if not self.path.exists():
                raise EdgeModelError(
                    f"No TFLite model at {self.path}: run notebook 03 to create it."
                )
            content = self.path.read_bytes()
        where = self.path or self.name
        if len(content) < 8 or content[4:8] != b"TFL3":
            raise EdgeModelError(
                f"{where} is not a TFLite model (no 'TFL3' identifier; {len(content)} bytes). It may "
                "be truncated or another file type: re-create it (notebook 03) or copy it again."
            )
        from workbench.core import quiet

        try:
            # LiteRT announces "Created TensorFlow Lite XNNPACK delegate for CPU." on fd 2.
            with quiet.native_output("LiteRT"):
                self._interpreter = Interpreter(model_content=content, num_threads=num_threads)
                self._interpreter.allocate_tensors()
        except Exception as err:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError
            raise EdgeModelError(
                f"LiteRT could not load {where} ({type(err).__name__}: {str(err)[:300]}). The file is "
                "corrupt or truncated: re-create it (notebook 03) or copy it again."
            ) from err
        self.num_threads = num_threads
        self.size_bytes = len(content)
        self.gzip_bytes = len(gzip.compress(content, compresslevel=9))  # what a device downloads
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = int(self._input["shape"][0])

    # -------------------------------------------------------------- properties

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._input["shape"][1:])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    @property
    def output_dtype(self) -> np.dtype:
        return np.dtype(self._output["dtype"])

    @property
    def input_quantization(self) -> tuple[float, int]:
        """(scale, zero_point) of the input; (0.0, 0) for a float input."""
        scale, zero = self._input["quantization"]
        return float(scale), int(zero)

    @property
    def output_quantization(self) -> tuple[float, int]:
        scale, zero = self._output["quantization"]
        return float(scale), int(zero)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "bytes": self.size_bytes,
            "threads": self.num_threads,
            "input_dtype": str(self.input_dtype),
            "input_shape": list(self.input_shape),
            "input_scale": self.input_quantization[0],
            "input_zero_point": self.input_quantization[1],
            "output_dtype": str(self.output_dtype),
        }

    # -------------------------------------------------------------- inference

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float inputs (the model's own scale) to the input tensor's dtype."""
        x = np.asarray(x)
        if self.input_dtype == np.float32:
            return x.astype(np.float32)
        scale, zero = self.input_quantization
        info = np.iinfo(self.input_dtype)
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(self.input_dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        if np.issubdtype(self.output_dtype, np.floating):
            return y.astype(np.float32)
        scale, zero = self.output_quantization
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [batch, *self.input_shape])
            self._interpreter.allocate_tensors()
            self._output = self._interpreter.get_output_details()[0]
            self._batch = batch

    def invoke_raw(self, x_raw: np.ndarray) -> np.ndarray:
        """Run one batch already in the input tensor's dtype; return the raw output tensor."""
        if tuple(x_raw.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.name} expects inputs of shape (batch, {', '.join(map(str, self.input_shape))}), "
                f"got {x_raw.shape}."
            )
        self._resize(len(x_raw))
        self._interpreter.set_tensor(self._input["index"], x_raw)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output["index"])

    def predict(self, x: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Outputs (dequantized to float) for float inputs in the model's scale, in batches."""
        x = np.asarray(x)
        if x.ndim == len(self.input_shape):
            x = x[None]
        outs = [
            self.dequantize_output(self.invoke_raw(self.quantize_input(x[i : i + batch_size])))
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(outs)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Top-1 accuracy on float inputs ``x`` (model scale) and integer labels ``y``."""
        return float(np.mean(self.predict(x).argmax(1) == y))

    def measure(self, x: np.ndarray, y: np.ndarray, *, repeats: int = 200) -> dict:
        """Accuracy on ``x`` (model units) and ``y``, size raw and gzipped, and single-image
        latency (p50 and p95 after warm-up, at this model's thread count)."""
        stats = self.benchmark(x[:1], repeats=repeats)
        return {
            "accuracy": self.accuracy(x, y),
            "bytes": self.size_bytes,
            "gzip_bytes": self.gzip_bytes,
            "p50_ms": stats.p50_ms,
            "p95_ms": stats.p95_ms,
            "threads": self.num_threads,
        }

    def benchmark(
        self,
        x_one: np.ndarray,
        *,
        warmup: int = 20,
        repeats: int = 200,
        max_seconds: float | None = 20.0,
    ) -> timing.LatencyStats:
        """Single-input latency: quantize, set, invoke, read, dequantize; first call timed apart."""
        x_one = np.asarray(x_one)
        if x_one.ndim == len(self.input_shape):
            x_one = x_one[None]
        self._resize(1)
        # Fresh interpreter state for an honest "first inference": re-allocate tensors.
        self._interpreter.allocate_tensors()
        return timing.measure_latency(
            lambda: self.predict(x_one), warmup=warmup, repeats=repeats, max_seconds=max_seconds
        )


# ---------------------------------------------------------------- manifest


MANIFEST = "manifest.json"


def write_manifest(
    folder: Path, entries: list[dict], *, default: str, extra: dict | None = None
) -> Path:
    """Write the edge-model manifest notebooks 04 and 05 read (atomically)."""
    names = [e["variant"] for e in entries]
    if default not in names:
        raise ValueError(f"default edge model {default!r} is not among {names}")
    doc = {"default": default, "models": entries, **(extra or {})}
    return atomic.write_json(Path(folder) / MANIFEST, doc, indent=2)


def read_manifest(folder: Path) -> dict:
    """Read the manifest, with a clear error if notebook 03 has not run."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"No edge manifest at {path}: run notebook 03 first.")
    return json.loads(path.read_text())


def load_from_manifest(
    folder: Path, variant: str | None = None, *, num_threads: int = 1
) -> tuple[EdgeModel, dict]:
    """Load a variant listed in the manifest (its default when ``variant`` is None)."""
    manifest = read_manifest(folder)
    variant = variant or manifest["default"]
    entry = next((e for e in manifest["models"] if e["variant"] == variant), None)
    if entry is None:
        raise KeyError(
            f"{variant!r} is not in {Path(folder) / MANIFEST}; it lists "
            f"{[e['variant'] for e in manifest['models']]}."
        )
    return EdgeModel(Path(folder) / entry["file"], num_threads=num_threads, name=variant), entry


def load_edge_model(
    subject: subject.Subject, folder: Path, variant: str | None = None, *, threads: int = 1
):
    """The edge model notebook 03 wrote for this subject (its manifest's default).

    Raises:
        FileNotFoundError: notebook 03 has not run.
        ValueError: the manifest was written for another model (names both).
    """
    manifest = read_manifest(folder)
    made_from = (manifest.get("model") or {}).get("sha256")
    if made_from and made_from != subject.classifier.sha256:
        raise ValueError(
            f"The edge models in {folder} were made from {manifest['model'].get('file')} "
            f"(sha256 {made_from[:12]}...), not from {subject.classifier.path} "
            f"({subject.classifier.sha256[:12]}...): run notebook 03 with the same model_path."
        )
    return load_from_manifest(folder, variant, num_threads=threads)
