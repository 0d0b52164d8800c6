"""The device side of ``workbench devices bench``: time TFLite models where they will run.

``workbench.edge.remote`` copies this file's source to the device and runs it there with
the device's own Python, so it stands alone: the standard library, NumPy, and the LiteRT
interpreter (``ai_edge_litert``; ``tflite_runtime`` where LiteRT has no wheel, e.g. 32-bit
Raspberry Pi OS); no ``workbench`` import, and Python 3.6 syntax (JetPack 4 on a Jetson
Nano ships 3.6).

The protocol is the workbench's (:meth:`workbench.edge.runtime.EdgeModel.benchmark` with
:func:`workbench.core.timing.measure_latency`): one input, the first call timed apart,
``warmup`` untimed calls, then up to ``repeats`` timed calls of quantize, set, invoke,
read, dequantize, stopping after ``max_seconds`` (at least 5 samples); percentiles by
NumPy's default (linear) method. The caller passes the protocol's numbers, so there is one
source of them; ``tests/unit/test_devices.py`` checks that both sides time alike.

Prints one line ``WORKBENCH-DEVICE-RESULT {json}`` with the device (machine, board, CPU,
cores, Python, runtime) and one result per model; exits with :data:`EXIT_NO_RUNTIME` (and
the same line, holding ``error``) when NumPy or the interpreter is missing.
"""

import argparse
import json
import os
import platform
import sys
import time

MARKER = "WORKBENCH-DEVICE-RESULT "
EXIT_NO_RUNTIME = 3
INPUT_SEED = 0  # the pseudo-random image timed when no --input is given


def interpreter_class():
    """(Interpreter class, "package version"): LiteRT, else tflite-runtime; ImportError if none."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert " + _version("ai-edge-litert")
    except ImportError:
        pass
    from tflite_runtime.interpreter import Interpreter

    return Interpreter, "tflite-runtime " + _version("tflite-runtime")


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001 - Python 3.6 has no importlib.metadata
        return "?"


def summarize(samples_ms: list, first_ms: float) -> dict:
    """Latency percentiles in ms, as :func:`workbench.core.timing.summarize_ms` computes them."""
    import numpy as np

    a = np.asarray(samples_ms, dtype=float)
    return {
        "first_ms": float(first_ms),
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "min_ms": float(a.min()),
        "n": int(a.size),
    }


def measure_latency(fn, warmup: int, repeats: int, max_seconds: float) -> dict:
    """Time ``fn()`` as :func:`workbench.core.timing.measure_latency` does."""
    t0 = time.perf_counter()
    fn()
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    for i in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
        if max_seconds is not None and i >= 4 and time.perf_counter() - start > max_seconds:
            break
    return summarize(samples, first_ms)


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return ""


def device_info() -> dict:
    """What this device is: machine, board (device tree), CPU model and part numbers, clock."""
    cpu, parts = "", []
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Hardware", "Processor") and not cpu:
            cpu = value
        elif key == "CPU part" and value not in parts:
            parts.append(value)
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    return {
        "machine": platform.machine(),
        "board": _read("/proc/device-tree/model") or None,
        "cpu": cpu or platform.processor() or platform.machine(),
        "cpu_parts": parts,
        "cores": os.cpu_count(),
        "max_clock_ghz": int(max_khz) / 1e6 if max_khz.isdigit() else None,
        "system": platform.platform(),
        "hostname": platform.node(),
        "python": platform.python_version(),
    }


def bench_model(path: str, interpreter, threads: int, protocol: dict, x_one) -> dict:
    """Load one model and time single-input inference under ``protocol``."""
    import numpy as np

    model = interpreter(model_path=path, num_threads=threads)
    model.allocate_tensors()
    inp, out = model.get_input_details()[0], model.get_output_details()[0]
    shape = [1] + [int(d) for d in inp["shape"][1:]]
    if int(inp["shape"][0]) != 1:
        model.resize_tensor_input(inp["index"], shape)
        model.allocate_tensors()
        out = model.get_output_details()[0]
    x = np.asarray(x_one, dtype=np.float32).reshape(shape)
    dtype, (scale, zero) = np.dtype(inp["dtype"]), inp["quantization"]
    out_dtype, (out_scale, out_zero) = np.dtype(out["dtype"]), out["quantization"]

    def once():  # as EdgeModel.predict: quantize, set, invoke, read, dequantize
        if dtype == np.float32:
            raw = x
        else:
            info = np.iinfo(dtype)
            raw = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
        model.set_tensor(inp["index"], raw)
        model.invoke()
        y = model.get_tensor(out["index"])
        if np.issubdtype(out_dtype, np.floating):
            return y.astype(np.float32)
        return ((y.astype(np.float32) - out_zero) * out_scale).astype(np.float32)

    stats = measure_latency(once, protocol["warmup"], protocol["repeats"], protocol["max_seconds"])
    stats.update(input_dtype=str(dtype), input_shape=shape[1:])
    return stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Time TFLite models on this device.")
    parser.add_argument("models", nargs="+", help=".tflite files")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--input", default=None, help=".npy image (default: seeded noise)")
    args = parser.parse_args(argv)
    doc = {"device": device_info()}
    try:
        import numpy as np

        interpreter, runtime = interpreter_class()
    except ImportError as err:
        doc["error"] = f"missing {getattr(err, 'name', None) or 'a module'}: {err}"
        doc["python_executable"] = sys.executable
        print(MARKER + json.dumps(doc), flush=True)
        return EXIT_NO_RUNTIME
    doc["device"]["runtime"] = runtime
    protocol = {"warmup": args.warmup, "repeats": args.repeats, "max_seconds": args.max_seconds}
    doc["protocol"] = dict(protocol, threads=args.threads)
    results = []
    for path in args.models:
        try:
            if args.input:
                x_one = np.load(args.input)
            else:
                shape = interpreter(model_path=path).get_input_details()[0]["shape"][1:]
                x_one = np.random.RandomState(INPUT_SEED).uniform(0, 255, shape)
            result = bench_model(path, interpreter, args.threads, protocol, x_one)
        except Exception as err:  # noqa: BLE001 - report it and time the other models
            result = {"error": f"{type(err).__name__}: {str(err)[:500]}"}
        result["file"] = os.path.basename(path)
        results.append(result)
    doc["results"] = results
    print(MARKER + json.dumps(doc), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
