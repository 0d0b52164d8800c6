"""The format of ``assessment.json``: the shipped JSON Schema is the one the pydantic models
generate, it is a valid schema, it ships in the package, and it tells a well-formed assessment
from a broken one. (tests/test_assess.py validates the real ``assessment.json`` files it
produces against it.)"""

from __future__ import annotations

import copy
import json
import tomllib
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from workbench.assess import schema

ROOT = Path(__file__).resolve().parents[2]


def shipped() -> dict:
    return json.loads(files("workbench.assess").joinpath("assessment.schema.json").read_text())


def test_shipped_schema_is_the_generated_one():
    assert schema.SCHEMA_FILE.read_text() == schema.schema_text(), (
        "workbench/assess/assessment.schema.json differs from the pydantic models in "
        "workbench/assess/schema.py: run `make schema` and commit the file"
    )


def test_shipped_schema_is_valid_and_declared_as_package_data():
    jsonschema.Draft202012Validator.check_schema(shipped())
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    assert "*.schema.json" in package_data["workbench.assess"]
    assert "workbench/assess/*.schema.json" in (ROOT / "MANIFEST.in").read_text()


def test_package_versions_name_what_shaped_the_figures():
    versions = schema.package_versions()
    for name in ("tensorflow", "tf-keras", "keras", "tensorflow-model-optimization"):
        assert versions[name], name
    assert versions["ai-edge-litert"] and versions["numpy"]
    from workbench import __version__

    assert versions["edge-cloud-workbench"] == __version__


def _assessment() -> dict:
    """A small assessment with every field the models require (values made up, shapes real)."""
    variant = {
        "variant": "int8",
        "recipe": "TFLite int8",
        "status": "ok",
        "accuracy": 0.9,
        "delta_pp": -0.5,
        "bytes": 1000,
        "gzip_bytes": 800,
        "p50_ms": 0.1,
        "macs": 1000,
        "file": "int8.tflite",
    }
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "packages": schema.package_versions(),
        "assessed": {
            "model": {
                "file": "m.keras",
                "sha256": "0" * 64,
                "input_shape": [8, 8, 1],
                "num_classes": 10,
                "parameters": 100,
            },
            "data": {
                "source": "d.npz",
                "train_images": 10,
                "validation_images": 2,
                "test_images": 5,
                "image_shape": [8, 8, 1],
                "dtype": "uint8",
                "classes": [str(i) for i in range(10)],
            },
            "input_scale": None,
            "hardware": {"cpu": "x", "cores": 2},
            "hardware_line": "Measured on x",
            "settings": {},
        },
        "float_model": {"test_accuracy": 0.9, "validation_accuracy": 0.9},
        "variants": [
            variant,
            {"variant": "qat", "recipe": "QAT", "status": "skipped", "reason": "r"},
        ],
        "budget_pp": 1.0,
        "winners": {"smallest": "int8", "fastest": None},
        "edge_variant": "int8",
        "cloud": {
            "accuracy": 0.9,
            "encodings": [
                {"encoding": "json", "protocol": "rest", "request_bytes": 9, "loopback_p50_ms": 2}
            ],
            "best_encoding": "json",
            "server_overhead_ms": 1.0,
        },
        "links": [
            {
                "link": "lan",
                "label": "Wired LAN",
                "edge_p50_ms": 0.1,
                "cloud_p50_ms": 2.0,
                "cloud_p95_ms": 3.0,
                "faster": "edge",
                "speed_ratio": 20.0,
            }
        ],
        "splits": {"status": "skipped", "reason": "no cut"},
        "cascade": {
            "edge_variant": "int8",
            "target_accuracy": 0.89,
            "threshold": 0.5,
            "accuracy": 0.9,
            "cloud_fraction": 0.1,
            "edge_accuracy": 0.9,
            "cloud_accuracy": 0.9,
            "sweep": [],
        },
        "figures": [],
        "seconds": 1.0,
        "something_new": "allowed: adding a field does not change the version",
    }


def _broken(path: str, value=None, *, delete: bool = False) -> dict:
    doc = copy.deepcopy(_assessment())
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if delete:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return doc


def test_a_well_formed_assessment_validates():
    jsonschema.Draft202012Validator(shipped()).validate(_assessment())
    schema.Assessment.model_validate(_assessment())  # the models agree with their schema


@pytest.mark.parametrize(
    ("path", "value", "delete"),
    [
        ("schema_version", None, True),  # unversioned
        ("schema_version", 2, False),  # a version this schema does not describe
        ("packages", None, True),
        ("variants.0.status", "great", False),
        ("variants.0.p50_ms", "fast", False),
        ("links.0.faster", "both", False),
        ("assessed.model.sha256", None, True),
        ("cascade.cloud_fraction", "some", False),
        ("splits.status", "maybe", False),
    ],
)
def test_a_broken_assessment_is_refused(path, value, delete):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(shipped()).validate(_broken(path, value, delete=delete))
