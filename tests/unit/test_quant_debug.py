"""Where int8 loses: TFLite's quantization debugger, layer by layer, and how ``assess`` tells it."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.assess import summary
from workbench.edge import convert


@pytest.fixture(scope="module")
def model_and_images():
    """A Keras 3 model with a wide-ranged layer before a sigmoid gate (what quantizes badly)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="swish", name="conv")(x)
    gate = layers.Conv2D(8, 1, activation="sigmoid", name="gate")(x)
    x = layers.Multiply(name="excite")([x, gate])
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(4, activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    return model, images


def test_the_debugger_ranks_the_model_s_layers_by_their_error(model_and_images):
    model, images = model_and_images
    debug = convert.quantization_debug(model, images, input_scale=None, samples=16, top=4)
    assert "error" not in debug, debug
    layers = debug["layers"]
    assert 0 < len(layers) <= 4 and debug["operations"] >= len(layers)
    errors = [r["rmse_over_scale"] for r in layers]
    assert errors == sorted(errors, reverse=True) and min(errors) >= 0
    names = {"rescaling", "conv", "gate", "excite", "gap", "out", "the model's output"}
    assert all(set(r["layer"].split(", ")) <= names for r in layers), layers
    assert debug["samples"] == 16 and debug["suspect_above"] == convert.SUSPECT_RMSE_OVER_SCALE


def test_a_model_the_debugger_cannot_read_gives_the_reason_not_an_exception(tmp_path):
    debug = convert.quantization_debug(
        tmp_path / "no_saved_model", np.zeros((4, 8, 8, 3), np.uint8), input_scale=None
    )
    assert set(debug) == {"error"} and debug["error"]


def test_tensor_names_give_the_layers_they_come_from():
    known = {"conv_bn", "conv", "re_lu_8", "logits"}
    name = "m_1/conv_bn_1/batchnorm/add_1;m_1/conv_1/convolution;m_1/conv_bn_1/batchnorm/sub1"
    assert convert.layer_of_tensor(name, known) == "conv_bn, conv"
    assert convert.layer_of_tensor("model/logits/BiasAdd") == "logits"
    assert convert.layer_of_tensor("plain") == "plain"
    assert convert.layer_of_tensor("Identity", known) == "the model's output"


def _result(int8: dict) -> dict:
    """The parts of an assessment the summary reads, with a given int8 row."""
    return {
        "assessed": {
            "model": {"file": "m.keras", "sha256": "0" * 64, "saved_by": "Keras 3",
                      "input_shape": [8, 8, 3], "num_classes": 4},
            "data": {"source": "d.npz", "train_images": 40, "validation_images": 4,
                     "test_images": 10},
            "hardware_line": "A test machine.",
        },
        "float_model": {"test_accuracy": 0.5},
        "budget_pp": 1.0,
        "winners": {"smallest": "int8", "fastest": "float32"},
        "variants": [{"variant": "float32", "status": "ok", "agreement_float": 1.0}, int8],
        "links": [{"label": "LAN", "faster": "edge"}],
        "edge_variant": "float32",
        "splits": {"status": "skipped", "reason": "no graph"},
        "cascade": {"threshold": 0.5, "accuracy": 0.5, "cloud_fraction": 0.2},
        "seconds": 1.0,
    }  # fmt: skip


def test_the_summary_says_which_layers_lose_when_int8_disagrees():
    debug = {
        "metric": "rmse/scale (quantization steps)", "samples": 16, "suspect_above": 0.7,
        "suspects": 1, "operations": 5,
        "layers": [{"layer": "excite", "op": "MUL", "rmse_over_scale": 2.5},
                   {"layer": "gate", "op": "LOGISTIC", "rmse_over_scale": 0.4}],
    }  # fmt: skip
    low = {"variant": "int8", "status": "ok", "agreement_float": 0.7, "quant_debug": debug}
    lines = summary.summary_lines(_result(low))
    said = [line for line in lines if line.startswith("int8 agrees")]
    assert len(said) == 1 and "70.0%" in said[0] and "excite (2.50)" in said[0]
    assert lines[-2].startswith("Cascade")  # the page reads the cascade line from there
    high = {"variant": "int8", "status": "ok", "agreement_float": 0.97}
    assert not any(line.startswith("int8 agrees") for line in summary.summary_lines(_result(high)))
