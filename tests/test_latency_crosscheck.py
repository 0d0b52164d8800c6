"""The edge latency benchmark (:meth:`workbench.edge.runtime.EdgeModel.benchmark`) against two
references, on the same TFLite model in the same run:

- LiteRT's own benchmark tool, shipped in the ``ai-edge-litert`` wheel
  (``python -m ai_edge_litert.tools.benchmark_litert_model``, the Python twin of LiteRT's
  C++ ``benchmark_litert_model``): its median over its runs, CPU only, one thread, through
  LiteRT's ``CompiledModel`` API, random inputs;
- a plain timing loop of the LiteRT interpreter (``set_tensor``, ``invoke``, ``get_tensor``).

The workbench's p50 includes what a caller pays around ``invoke`` (the input cast, setting
and reading the tensors), so it may sit a little above both. No wall-clock assertion: only
ratios of medians measured side by side, in alternating rounds (the median ratio of three),
within generous bounds that a broken benchmark (timing the wrong thing, a lost warm-up,
another thread count) falls outside of, but machine load does not.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest

from workbench.edge import convert, runtime
from workbench.models import architectures

pytestmark = pytest.mark.slow
ROUNDS = 3
RUNS = 300
WARMUP = 20
# EdgeModel p50 / reference median: the workbench may add its Python-side work around invoke
LOOP_BOUNDS = (0.67, 1.5)  # against the interpreter loop: the same runtime and calls
TOOL_BOUNDS = (0.5, 2.0)  # against LiteRT's tool: another API (CompiledModel) over the same kernels


def interpreter_loop_ms(blob: bytes, x: np.ndarray) -> float:
    """Median milliseconds of set_tensor + invoke + get_tensor, one thread, after warm-up."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=blob, num_threads=1)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]
    batch = x[None].astype(np.float32)
    times = []
    for i in range(WARMUP + RUNS):
        start = time.perf_counter()
        interpreter.set_tensor(source, batch)
        interpreter.invoke()
        interpreter.get_tensor(target)
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def litert_tool(model_file, out_json) -> dict:
    """LiteRT's benchmark tool on ``model_file``: its result JSON."""
    done = subprocess.run(
        [
            sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model",
            "--model", str(model_file), "--num_runs", str(RUNS), "--warmup_runs", str(WARMUP),
            "--num_threads", "1", "--result_json", str(out_json),
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out_json.read_text())


def test_edge_benchmark_agrees_with_litert_tool_and_a_plain_loop(tmp_path):
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    # the improved CIFAR CNN: a median of a few tenths of a millisecond, well above the
    # tool's 0.01 ms rounding
    blob = convert.to_tflite(architectures.improved_cnn(), "float32", input_scale=None)
    model_file = tmp_path / "improved_cnn.tflite"
    model_file.write_bytes(blob)
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.float32)
    edge = runtime.EdgeModel(blob, num_threads=1)

    loop_ratios, tool_ratios, rows = [], [], []
    for r in range(ROUNDS):
        ours = edge.benchmark(x, warmup=WARMUP, repeats=RUNS, max_seconds=None).p50_ms
        loop = interpreter_loop_ms(blob, x)
        tool = litert_tool(model_file, tmp_path / f"tool-{r}.json")
        assert tool["accelerators"] == ["CPU"] and tool["num_threads"] == 1, tool
        assert tool["latency"]["num_runs"] == RUNS
        tool_ms = tool["latency"]["median_ms"]
        assert tool_ms > 0, f"the tool's median rounds to 0 ms on this machine: {tool}"
        loop_ratios.append(ours / loop)
        tool_ratios.append(ours / tool_ms)
        rows.append(f"round {r}: workbench p50 {ours:.3f} ms, loop {loop:.3f}, tool {tool_ms:.2f}")
    report = "\n".join(rows)
    print(report)
    loop_ratio, tool_ratio = statistics.median(loop_ratios), statistics.median(tool_ratios)
    assert LOOP_BOUNDS[0] <= loop_ratio <= LOOP_BOUNDS[1], f"loop ratio {loop_ratio:.2f}\n{report}"
    assert TOOL_BOUNDS[0] <= tool_ratio <= TOOL_BOUNDS[1], f"tool ratio {tool_ratio:.2f}\n{report}"
