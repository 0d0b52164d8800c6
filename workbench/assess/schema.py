"""The format of ``assessment.json``: a version number, pydantic models, and the JSON Schema
generated from them and shipped beside this module (``assessment.schema.json``).

``SCHEMA_VERSION`` goes up whenever a field changes meaning, type or unit, or goes away;
adding a field does not raise it (every object allows more properties than it names, so an
older reader keeps working). The models name what a reader can rely on: the figures and
how they were obtained (the model's sha256, the data, the hardware, the settings, and the
versions of every package that shaped the figures: :func:`package_versions`).

``python -m workbench.assess.schema`` (``make schema``) rewrites the shipped schema from the
models; a test fails when the two differ, and the tests validate the ``assessment.json`` files
they produce against it.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("assessment.schema.json")
SCHEMA_ID = "https://github.com/edge-cloud-workbench/workbench/blob/main/workbench/assess/assessment.schema.json"
# The distributions whose versions change the figures: training and conversion (TensorFlow and
# both Kerases), compression (tfmot), the edge runtime (LiteRT), the arithmetic (NumPy,
# scikit-learn), and the server and client on the cloud side.
FIGURE_PACKAGES = (
    "edge-cloud-workbench",
    "tensorflow",
    "tf-keras",
    "keras",
    "tensorflow-model-optimization",
    "ai-edge-litert",
    "numpy",
    "scikit-learn",
    "h5py",
    "protobuf",
    "fastapi",
    "uvicorn",
    "httptools",
    "uvloop",
    "grpcio",
    "tensorflow-serving-api",
    "httpx",
    "orjson",
)


def package_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`FIGURE_PACKAGES` (None: not installed); the
    workbench's own from the code running, which an editable install's metadata may not be."""
    from workbench import __version__

    versions: dict[str, str | None] = {"edge-cloud-workbench": __version__}
    for name in FIGURE_PACKAGES[1:]:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class Part(BaseModel):
    """An object of the format: the fields named here, and possibly more."""

    model_config = ConfigDict(extra="allow")


Number = float | None  # a figure that a skipped or failed step leaves empty


class Model(Part):
    """The model assessed."""

    file: str
    sha256: str = Field(description="sha256 of the model file (or of a SavedModel folder's files)")
    input_shape: list[int] = Field(description="one image: height, width, channels")
    num_classes: int
    parameters: int


class Data(Part):
    """The labelled images it was assessed on."""

    source: str
    train_images: int
    validation_images: int = Field(
        description="held out from training; variants are chosen on them"
    )
    test_images: int
    image_shape: list[int]
    dtype: str
    classes: list[str]


class Assessed(Part):
    """What was assessed, where and how."""

    model: Model
    data: Data
    input_scale: float | None = Field(description="pixels are multiplied by this; None: as stored")
    hardware: dict[str, Any] = Field(description="CPU, cores, RAM, OS, Python, TensorFlow, GPUs")
    hardware_line: str
    settings: dict[str, Any] = Field(description="the profile's settings, as run")


class FloatModel(Part):
    """The model as given (Keras, float32)."""

    test_accuracy: float
    validation_accuracy: float | None


class Variant(Part):
    """One edge variant: a TFLite model measured on LiteRT (figures empty when skipped)."""

    variant: str
    recipe: str
    status: Literal["ok", "skipped", "failed"]
    reason: str | None = None
    accuracy: Number = Field(None, description="top-1 on the test images, 0-1")
    delta_pp: Number = Field(None, description="accuracy minus the float model's, in points")
    val_accuracy: Number = None
    val_delta_pp: Number = None
    val_noise_pp: Number = None
    bytes: int | None = None
    gzip_bytes: int | None = None
    first_ms: Number = None
    p50_ms: Number = Field(None, description="single-image latency, median, milliseconds")
    p95_ms: Number = None
    macs: int | None = Field(None, description="multiply-accumulates per image")
    sparsity: Number = None
    file: str | None = Field(None, description="the TFLite file, under edge/")


class Winners(Part):
    """The variants picked within the accuracy budget (on the validation images)."""

    smallest: str | None
    fastest: str | None


class Encoding(Part):
    """One way of sending an image to the served float model, measured."""

    encoding: str
    protocol: str
    request_bytes: int
    loopback_p50_ms: float
    overhead_p50_ms: float | None = None


class Cloud(Part):
    """The float model behind the workbench's model server."""

    accuracy: float
    encodings: list[Encoding]
    best_encoding: str
    server_overhead_ms: float


class LinkRow(Part):
    """The edge variant against the cloud over one link."""

    link: str = Field(description="the link's key (lan, wifi, 5g, 4g, 3g, satellite)")
    label: str
    edge_p50_ms: float
    cloud_p50_ms: float
    cloud_p95_ms: float
    faster: Literal["edge", "cloud"]
    speed_ratio: float


class Splits(Part):
    """Split computing: cut points, their times, the best cut per device and link, one split
    run for real."""

    status: Literal["ok", "skipped"]
    reason: str | None = None
    cut_points: list[str] | None = None
    measured: list[dict[str, Any]] | None = None
    devices: dict[str, float] | None = Field(
        default=None, description="each device class's slowdown against this CPU (its peak)"
    )
    best_per_device_link: list[dict[str, Any]] | None = None
    run: dict[str, Any] | None = None


class Cascade(Part):
    """Edge first, the cloud when the edge is unsure: the threshold chosen and the sweep."""

    edge_variant: str
    target_accuracy: float
    threshold: float
    accuracy: float
    cloud_fraction: float = Field(description="share of images sent to the cloud, 0-1")
    edge_accuracy: float
    cloud_accuracy: float
    sweep: list[dict[str, Any]]


class Assessment(Part):
    """``assessment.json``, written by ``workbench assess`` (and ``workbench.assess.flow.assess``)."""

    model_config = ConfigDict(
        extra="allow",
        title="assessment.json of the edge-cloud workbench",
        json_schema_extra={"$id": SCHEMA_ID},
    )

    schema_version: Literal[1] = Field(description="raised when a field changes or goes away")
    packages: dict[str, str | None] = Field(
        description="version of every package that shaped the figures (None: not installed)"
    )
    assessed: Assessed
    float_model: FloatModel
    variants: list[Variant]
    budget_pp: float = Field(description="accuracy a variant may lose, percentage points")
    winners: Winners
    edge_variant: str = Field(description="the variant compared with the cloud")
    cloud: Cloud
    links: list[LinkRow]
    splits: Splits
    cascade: Cascade
    figures: list[str]
    seconds: float = Field(description="the assessment's run time")


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) generated from :class:`Assessment`."""
    schema = Assessment.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    """The shipped file's exact text: the schema, keys in a stable order."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_FILE) -> Path:
    """Write the schema file (``make schema``)."""
    from workbench.core import atomic

    return atomic.write_text(path, schema_text())


if __name__ == "__main__":
    print(write_schema())
