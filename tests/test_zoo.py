"""The zoo: keras.applications families, trained briefly and saved as a user would save them,
through every stage of ``workbench assess`` (:mod:`workbench.assess.zoo`).

For each family and flavour (Keras 3 file, tf-keras file):

- the four post-training variants are built; every other variant is built or skipped with a
  reason; no traceback;
- the float32 TFLite model is as accurate as the Keras model (within 1 point);
- the int8 agreement with the float model is reported and, below 90%, explained by the
  quantization debugger's worst layers (in ``assessment.json`` and on the page);
- every cut point is a real cut: counted here, independently of the workbench, every path
  from the input to the output passes through it (and every such call is a cut point);
- the best split, run for real through the model server, agrees with the full model on at
  least 98% of the test images.

CI runs :data:`workbench.assess.zoo.CI_RUNS`; ``make zoo`` (``WORKBENCH_ZOO=all``) runs every
family in both flavours and writes ``reports/zoo.html``.
"""

from __future__ import annotations

import json
import os

import pytest

from workbench.assess import zoo
from workbench.core import atomic, paths

pytestmark = pytest.mark.slow
EVERYTHING = os.environ.get("WORKBENCH_ZOO") == "all"
RUNS = zoo.all_runs() if EVERYTHING else list(zoo.CI_RUNS)
ROWS: list[dict] = []


@pytest.fixture(scope="module")
def folder(zoo_ahead, tmp_path_factory):
    """Where the zoo's models and assessments go (those started ahead: theirs); ``make zoo``
    writes its table at the end."""
    base = zoo_ahead.folder if zoo_ahead is not None else tmp_path_factory.mktemp("zoo")
    yield base
    if EVERYTHING and ROWS:
        page = zoo.write_table(ROWS, paths.reports_dir("zoo.html"))
        atomic.write_json(paths.reports_dir("zoo.json"), ROWS)
        print(f"\nthe zoo's table: {page}")


@pytest.fixture(scope="module")
def data(zoo_ahead, folder):
    if zoo_ahead is not None:
        return zoo_ahead.data_path
    return zoo.zoo_data(folder / "cifar10-zoo.npz", training=zoo.Training())


# ----------------------------------------------------------------------------- paths, counted


def _graph(model):
    """(input tensor, output tensor, {node id: (name, input tensors, output tensors, op)})
    read from the Keras tensors' history, Keras 3 or tf-keras (independent of the workbench)."""
    inner = getattr(model, "_functional", None)
    model = inner if inner is not None else model
    source, sink = model.inputs[0], model.outputs[0]
    nodes, stack = {}, [sink]
    while stack:
        tensor = stack.pop()
        if tensor is source:
            continue
        op, index, _ = tensor._keras_history
        node = op._inbound_nodes[index]
        if id(node) in nodes:
            continue
        keras3 = hasattr(node, "arguments")  # a Keras 3 node; tf-keras' has call_args
        inputs = list(node.arguments.keras_tensors if keras3 else node.keras_inputs)
        outputs = list(node.outputs) if keras3 else _flat(node.outputs)
        nodes[id(node)] = (op.name, inputs, outputs, op)
        stack += inputs
    return source, sink, nodes


def _flat(x) -> list:
    return [t for item in x for t in _flat(item)] if isinstance(x, list | tuple) else [x]


def _path_counts(model):
    """For every tensor: paths from the input to it, and from it to the output."""
    source, sink, nodes = _graph(model)
    made_by = {id(t): key for key, (_, _, outs, _) in nodes.items() for t in outs}
    readers: dict[int, list] = {}
    for key, (_, ins, _, _) in nodes.items():
        for t in ins:
            readers.setdefault(id(t), []).append(key)
    order, seen = [], set()  # nodes, producers first (depth-first, iterative)

    def visit(key):
        stack = [(key, False)]
        while stack:
            k, done = stack.pop()
            if done:
                order.append(k)
                continue
            if k in seen:
                continue
            seen.add(k)
            stack.append((k, True))
            stack += [(made_by[id(t)], False) for t in nodes[k][1] if id(t) in made_by]

    for key in nodes:
        visit(key)
    into = {id(source): 1}
    for key in order:
        _, ins, outs, _ = nodes[key]
        for t in outs:
            into[id(t)] = sum(into.get(id(u), 0) for u in ins)
    out_of = {id(sink): 1}
    for key in reversed(order):
        for t in nodes[key][2]:
            if t is not sink:
                out_of[id(t)] = sum(out_of.get(id(o), 0) for r in readers.get(id(t), [])
                                    for o in nodes[r][2])  # fmt: skip
    out_of[id(source)] = sum(
        out_of.get(id(o), 0) for r in readers.get(id(source), []) for o in nodes[r][2]
    )
    return source, sink, nodes, into, out_of


def check_cuts(model, cut_names: list[str]) -> None:
    """Every cut point carries every path from the input to the output, and every call whose
    output does so (called once, one output) is a cut point."""
    source, sink, nodes, into, out_of = _path_counts(model)
    total = into[id(sink)]
    assert total > 0 and out_of[id(source)] == total
    by_name = {name: outs for name, _, outs, _ in nodes.values()}
    assert cut_names[0] == "input" and by_name[cut_names[-1]] == [sink], cut_names[-1]
    for name in cut_names[1:-1]:
        (t,) = by_name[name]
        assert into[id(t)] * out_of[id(t)] == total, (name, into[id(t)], out_of[id(t)], total)
    calls: dict[int, int] = {}
    for _, _, _, op in nodes.values():
        calls[id(op)] = calls.get(id(op), 0) + 1
    through_all = [
        name
        for name, _, outs, op in nodes.values()
        if len(outs) == 1 and calls[id(op)] == 1 and outs[0] is not sink
        and into[id(outs[0])] * out_of[id(outs[0])] == total
    ]  # fmt: skip
    assert sorted(through_all) == sorted(cut_names[1:-1])


def _load(path, flavour):
    if flavour == zoo.KERAS3:
        import keras

        return keras.saving.load_model(path, compile=False)
    import tf_keras

    return tf_keras.models.load_model(path, compile=False)


# ----------------------------------------------------------------------------- the zoo


@pytest.mark.timeout(4 * 3600)  # two at a time, each child process has an hour (run_family)
@pytest.mark.parametrize(("family", "flavour"), RUNS, ids=[zoo.run_id(*r) for r in RUNS])
def test_family_goes_through_every_stage(family, flavour, folder, data, zoo_ahead):
    """(Started with the session by conftest's ``zoo_ahead``; run last.)"""
    if zoo_ahead is not None:
        run = zoo_ahead.result(family, flavour, timeout_s=4 * 3600 - 60)
    else:
        run = zoo.run_family(family, flavour, folder, data_path=data)
    ROWS.append(run.row)
    if run.built is None:
        assert EVERYTHING and flavour == zoo.TF_KERAS, run.row  # CI's runs must all build
        pytest.skip(run.row["status"])
    assert run.built["test_accuracy"] > 0.15, run.built  # better than chance (0.10)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    doc = run.assessment
    variants = {v["variant"]: v for v in doc["variants"]}
    for name in zoo.POST_TRAINING:
        assert variants[name]["status"] == "ok", variants[name]
    for v in doc["variants"]:
        assert v["status"] == "ok" or (v["status"] == "skipped" and v["reason"]), v
    assert abs(variants["float32"]["delta_pp"]) <= 1.0, variants["float32"]
    int8 = variants["int8"]
    assert 0 <= int8["agreement_float"] <= 1
    page = (run.out / "index.html").read_text()
    if int8["agreement_float"] < 0.9:
        debug = int8["quant_debug"]
        assert debug.get("layers"), debug
        assert all(r["rmse_over_scale"] >= 0 and r["layer"] for r in debug["layers"])
        assert "Where int8 loses" in page and debug["layers"][0]["layer"] in page
    splits = doc["splits"]
    assert splits["status"] == "ok", splits
    check_cuts(_load(run.model, flavour), splits["cut_points"])
    assert splits["run"]["status"] == "ok" and splits["run"]["agreement"] >= 0.98, splits["run"]


def test_a_model_the_bridge_refuses_goes_through_everything_else(folder, data):
    """A Keras 3 layer with weights and no tf-keras twin (RMSNormalization): only pruning,
    clustering and quantization-aware training are skipped, each with the reason; the
    post-training variants, the server, the splits and the cascade run on the Keras 3 model."""
    import subprocess
    import sys

    import keras
    import numpy as np

    images = np.load(data)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="hard_silu")(x)
    x = keras.layers.RMSNormalization(name="rms")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images["x_train"][:640], images["y_train"][:640], batch_size=32, verbose=0)
    path = folder / "rms.keras"
    model.save(path)
    out = folder / "rms-assessment"
    done = subprocess.run(
        [sys.executable, "-m", "workbench", "assess", "--model", str(path), "--data", str(data),
         "--out", str(out), "--profile", "smoke", "--quiet"],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    doc = json.loads((out / "assessment.json").read_text())
    assert "RMSNormalization" in doc["assessed"]["model"]["tf_keras"]
    for v in doc["variants"]:
        if v["variant"] in zoo.POST_TRAINING:
            assert v["status"] == "ok", v
        else:
            assert v["status"] == "skipped" and "RMSNormalization" in v["reason"], v
    assert doc["splits"]["status"] == "ok" and "rms" in doc["splits"]["cut_points"]
    assert doc["splits"]["run"]["agreement"] >= 0.98, doc["splits"]["run"]
    assert doc["cascade"]["cloud_fraction"] is not None


def test_the_table_lists_what_was_skipped_and_why(tmp_path):
    rows = [
        {"family": "A", "flavour": zoo.KERAS3, "status": "ok", "parameters": 10,
         "variants_ok": "float32, int8", "variants_skipped": "qat: needs tf-keras"},
        {"family": "B", "flavour": zoo.TF_KERAS, "status": "does not build: too small"},
    ]  # fmt: skip
    assert zoo.reasons(rows) == {"needs tf-keras": [f"A ({zoo.KERAS3}, qat)"]}
    text = zoo.write_table(rows, tmp_path / "zoo.html", hardware="a test machine").read_text()
    assert "does not build: too small" in text and "needs tf-keras" in text
