"""Edge device classes: what a model would cost on a Raspberry Pi, a phone or a microcontroller.

The catalog (``devices.json`` beside this module) lists device classes with their peak
float32 and int8 multiply-accumulate (MAC) rates, derived from clock x vector pipes x lanes
and each figure's source, and their memory. This module:

- loads and checks it (:func:`load_catalog`: every peak is recomputed from its inputs);
- **estimates** a model's latency on a class from the efficiency this CPU reached with the
  same file and format: ``efficiency = achieved MAC rate here / this CPU's peak`` (the
  figures :func:`workbench.core.machine.achieved_mac_rate` computes), then
  ``estimated_ms = MACs / (device peak x efficiency)`` (:func:`estimate`). Every such row
  says ``source: "estimated"``. The assumption: the device's kernels (XNNPACK on Arm,
  CMSIS-NN on a microcontroller) reach the same share of their peak as XNNPACK here;
- checks memory (:func:`memory_fit`): the weights (the TFLite file) plus the activations
  alive at the busiest step of the graph (:func:`activation_memory`) against the RAM; on a
  microcontroller the weights stay in flash and the activations need one contiguous block;
- keeps the rows ``workbench devices bench`` **measured** on real devices
  (:func:`record_measured`, :func:`read_measured`) in ``reports/results/devices.json``, and
  joins both into one table per device and variant (:func:`device_table`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from workbench.core import atomic, machine, paths

CATALOG = Path(__file__).with_name("devices.json")
RESULTS_NAME = "devices.json"  # under reports/results/
FORMATS = ("float32", "float16", "dynamic_range", "int8")
KERNELS = ("float32", "int8")


class CatalogError(ValueError):
    """The device catalog is malformed or its numbers disagree; the message names the entry."""


class ResultsError(ValueError):
    """``reports/results/devices.json`` cannot be read; the message says what to do."""


# ===================================================================== the catalog


@dataclass(frozen=True)
class DeviceClass:
    """One class of edge device from the catalog (see ``devices.json`` for each figure's source).

    ``float32`` and ``int8`` hold the peak derivation: ``pipes``, ``macs_per_lane``,
    ``macs_per_cycle_per_core``, ``gmacs_per_core``, ``gmacs_cores_for_model``,
    ``derivation``, ``source`` and ``unsure``; ``memory`` holds ``ram_bytes``,
    ``flash_bytes`` (microcontrollers), ``largest_contiguous_ram_bytes``, ``note``, ``source``.
    """

    id: str
    name: str
    kind: str
    cpu: str
    cores: int
    cores_for_model: int
    clock_ghz: float
    vector_bits: int
    formats: tuple[str, ...]
    runtime: str
    float32: dict = field(repr=False)
    int8: dict = field(repr=False)
    memory: dict = field(repr=False)
    device_tree_models: tuple[str, ...] = ()
    entry: dict = field(default_factory=dict, repr=False, compare=False)

    def peak_gmacs(self, kernels: str, *, cores: int = 1) -> float:
        """Peak G MAC/s of ``cores`` cores (1: the workbench's single-thread protocol)."""
        if kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {KERNELS}, not {kernels!r}")
        return float(getattr(self, kernels)["gmacs_per_core"]) * cores

    @property
    def ram_bytes(self) -> int:
        return int(self.memory["ram_bytes"])

    @property
    def flash_bytes(self) -> int | None:
        flash = self.memory.get("flash_bytes")
        return None if flash is None else int(flash)

    @property
    def arena_limit_bytes(self) -> int:
        """The most activation memory one block can hold (a microcontroller's largest SRAM)."""
        block = self.memory.get("largest_contiguous_ram_bytes")
        return int(block) if block else self.ram_bytes

    @property
    def unsure(self) -> list[str]:
        """The figures the catalog marks as unsure, each with what is unsure."""
        return [f"{k}: {getattr(self, k)['unsure']}" for k in KERNELS if getattr(self, k)["unsure"]]


def load_catalog(path: str | os.PathLike | None = None) -> list[DeviceClass]:
    """The device classes of ``path`` (default: the catalog shipped with the package).

    Every peak is recomputed (``(vector_bits / 32) x macs_per_lane x pipes`` MACs per cycle,
    x ``clock_ghz``, x ``cores_for_model``) and compared with the number written in the file,
    so an edit that changes one figure and forgets another is caught here.

    Raises:
        CatalogError: a missing field, an unknown format or a number that disagrees with
            its derivation; the message names the device and the field.
    """
    path = Path(path) if path is not None else CATALOG
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CatalogError(f"Cannot read the device catalog {path}: {err}") from err
    entries = doc.get("devices") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CatalogError(f"{path} holds no 'devices' list.")
    out, seen = [], set()
    for i, entry in enumerate(entries):
        device = _device_from(entry, where=f"{path}, device {i} ({entry.get('id', '?')!r})")
        if device.id in seen:
            raise CatalogError(f"{path}: device id {device.id!r} appears twice.")
        seen.add(device.id)
        out.append(device)
    return out


def _device_from(entry: dict, *, where: str) -> DeviceClass:
    def need(d: dict, key: str, kind: type | tuple, what: str = ""):
        value = d.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CatalogError(f"{where}: {what}{key!r} is missing or not a {kind}.")
        return value

    clock = float(need(entry, "clock_ghz", (int, float)))
    bits = need(entry, "vector_bits", int)
    cores, for_model = need(entry, "cores", int), need(entry, "cores_for_model", int)
    if not 1 <= for_model <= cores:
        raise CatalogError(f"{where}: cores_for_model must be between 1 and cores ({cores}).")
    formats = tuple(need(entry, "formats", list))
    if unknown := [f for f in formats if f not in FORMATS]:
        raise CatalogError(f"{where}: unknown formats {unknown}; known: {FORMATS}.")
    need(entry, "clock_source", str)
    for kernels in KERNELS:
        peak = need(entry, kernels, dict)
        for key in ("derivation", "source"):
            need(peak, key, str, f"{kernels}.")
        per_cycle = (bits // 32) * need(peak, "macs_per_lane", int, f"{kernels}.")
        per_cycle *= need(peak, "pipes", int, f"{kernels}.")
        derived = {
            "macs_per_cycle_per_core": per_cycle,
            "gmacs_per_core": per_cycle * clock,
            "gmacs_cores_for_model": per_cycle * clock * for_model,
        }
        for key, value in derived.items():
            written = need(peak, key, (int, float), f"{kernels}.")
            if not math.isclose(written, value, rel_tol=1e-6):
                raise CatalogError(
                    f"{where}: {kernels}.{key} says {written}, but its inputs give {value:g} "
                    f"({bits // 32} lanes x {peak['macs_per_lane']} MACs per lane x "
                    f"{peak['pipes']} pipes, x {clock} GHz, x {for_model} cores): fix one of them."
                )
    memory = need(entry, "memory", dict)
    need(memory, "ram_bytes", int, "memory.")
    need(memory, "source", str, "memory.")
    return DeviceClass(
        id=need(entry, "id", str),
        name=need(entry, "name", str),
        kind=need(entry, "kind", str),
        cpu=need(entry, "cpu", str),
        cores=cores,
        cores_for_model=for_model,
        clock_ghz=clock,
        vector_bits=bits,
        formats=formats,
        runtime=need(entry, "runtime", str),
        float32=entry["float32"],
        int8=entry["int8"],
        memory=memory,
        device_tree_models=tuple(entry.get("device_tree_models") or ()),
        entry=entry,
    )


def find(device_id: str, devices: Iterable[DeviceClass] | None = None) -> DeviceClass:
    """The class with this id; a KeyError lists the ids there are."""
    devices = list(devices) if devices is not None else load_catalog()
    for d in devices:
        if d.id == device_id:
            return d
    raise KeyError(f"No device class {device_id!r}; the catalog has {[d.id for d in devices]}.")


def select(device_ids: Iterable[str] | None) -> list[DeviceClass] | None:
    """The classes named (a KeyError lists the ids there are), or None for all of them."""
    if device_ids is None:
        return None
    catalog = load_catalog()
    return [find(i, catalog) for i in device_ids]


def match_device_tree(
    model: str | None, devices: Iterable[DeviceClass] | None = None
) -> str | None:
    """The catalog id whose ``device_tree_models`` names this board (its device-tree model)."""
    if not model:
        return None
    devices = list(devices) if devices is not None else load_catalog()
    for d in devices:
        if any(model.startswith(prefix) for prefix in d.device_tree_models):
            return d.id
    return None


def catalog_rows(devices: Iterable[DeviceClass] | None = None) -> list[dict]:
    """The catalog as table rows: peaks per core and for the cores a model would use, memory."""
    devices = list(devices) if devices is not None else load_catalog()
    return [
        {
            "device": d.id,
            "name": d.name,
            "cpu": d.cpu,
            "clock_ghz": d.clock_ghz,
            "cores_for_model": d.cores_for_model,
            "float32_gmacs_per_core": d.float32["gmacs_per_core"],
            "int8_gmacs_per_core": d.int8["gmacs_per_core"],
            "float32_gmacs_all": d.float32["gmacs_cores_for_model"],
            "int8_gmacs_all": d.int8["gmacs_cores_for_model"],
            "ram_bytes": d.ram_bytes,
            "flash_bytes": d.flash_bytes,
            "formats": list(d.formats),
            "unsure": d.unsure,
        }
        for d in devices
    ]


# ===================================================================== activation memory


@dataclass(frozen=True)
class ActivationMemory:
    """Activation memory of a TFLite model's main graph, in bytes.

    ``peak_bytes``: the most bytes of tensors alive at once, taking the operators in the
    file's execution order (a tensor lives from the operator that writes it, or the start
    for a model input, to the last operator that reads it, or the end for a model output).
    Any arena planner needs at least this; alignment, scratch buffers and the runtime's own
    bookkeeping come on top. ``largest_op_bytes``: the largest single operator's activation
    inputs + outputs (a weaker lower bound). ``total_bytes``: every activation tensor with
    no reuse at all (an upper bound).
    """

    peak_bytes: int
    largest_op_bytes: int
    total_bytes: int
    busiest_op: str  # the operator running at the peak, e.g. "CONV_2D #0"


_ITEMSIZE = {  # tflite.TensorType -> bytes per element (INT4: packed two per byte)
    0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4,
    16: 2, 17: 0.5, 18: 2,
}  # fmt: skip


def activation_memory(source: str | os.PathLike | bytes) -> ActivationMemory:
    """Activation memory of a ``.tflite`` file or flatbuffer bytes (its first subgraph).

    Read from the flatbuffer with the schema LiteRT ships (``ai_edge_litert.
    schema_py_generated``): no interpreter is built, so no delegate rewrites the graph.
    Tensors with data in the file (weights, biases, quantization constants) are not
    activations; an unknown dimension counts as 1 (a batch of one).
    """
    from ai_edge_litert import schema_py_generated as schema

    blob = source if isinstance(source, bytes | bytearray) else Path(source).read_bytes()
    where = "the model bytes" if isinstance(source, bytes | bytearray) else str(source)
    if len(blob) < 8 or blob[4:8] != b"TFL3":
        raise ValueError(f"{where} is not a TFLite model (no 'TFL3' identifier).")
    model = schema.Model.GetRootAs(blob, 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}

    def is_constant(t) -> bool:
        index = t.Buffer()
        if index <= 0 or index >= model.BuffersLength():
            return False
        buffer = model.Buffers(index)
        return buffer.DataLength() > 0 or buffer.Size() > 0

    size = {}
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        if is_constant(t):
            continue
        shape = t.ShapeAsNumpy() if t.ShapeLength() else []
        elements = math.prod(max(1, int(d)) for d in shape)
        size[i] = math.ceil(elements * _ITEMSIZE.get(t.Type(), 4))
    n_ops = graph.OperatorsLength()
    first = {i: -1 for i in graph.InputsAsNumpy().tolist() if i in size}
    last = {i: n_ops for i in graph.OutputsAsNumpy().tolist() if i in size}
    ops = []
    for k in range(n_ops):
        op = graph.Operators(k)
        ins = [i for i in (op.InputsAsNumpy().tolist() if op.InputsLength() else []) if i in size]
        outs = [
            i for i in (op.OutputsAsNumpy().tolist() if op.OutputsLength() else []) if i in size
        ]
        for i in ins:
            first.setdefault(i, -1)
            last[i] = max(last.get(i, k), k)
        for i in outs:
            first.setdefault(i, k)
            last.setdefault(i, k)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ops.append((f"{name} #{k}", sum(size[i] for i in dict.fromkeys(ins + outs))))
    live = [
        (sum(size[i] for i in first if first[i] <= k <= last.get(i, first[i])), k)
        for k in range(n_ops)
    ]
    peak, at = max(live, default=(sum(size.values()), -1))
    return ActivationMemory(
        peak_bytes=int(peak),
        largest_op_bytes=int(max((b for _, b in ops), default=0)),
        total_bytes=int(sum(size.values())),
        busiest_op=ops[at][0] if at >= 0 else "none",
    )


def memory_fit(
    device: DeviceClass, *, weight_bytes: int, activation_bytes: int | None
) -> tuple[bool | None, str]:
    """Does a model fit the class's memory? ``(fits, why)``; ``fits`` is None when unknown.

    Devices with flash (microcontrollers): the weights stay in flash, the activations need
    one contiguous block of SRAM. Others: weights and activations share the RAM (the
    operating system's share is not subtracted: a model close to the limit may still fail).
    """
    flash, ram = device.flash_bytes, device.ram_bytes
    if weight_bytes > (flash if flash is not None else ram):
        where = "flash" if flash is not None else "RAM"
        limit = flash if flash is not None else ram
        return False, f"weights {_kib(weight_bytes)} exceed the {_kib(limit)} of {where}"
    if activation_bytes is None:
        return None, "activation memory unknown (no TFLite file to read it from)"
    if flash is not None:
        limit = device.arena_limit_bytes
        block = "the largest contiguous SRAM block" if limit < ram else "the SRAM"
        if activation_bytes > limit:
            return False, (
                f"activations need at least {_kib(activation_bytes)}, more than {block} "
                f"({_kib(limit)})"
            )
        return True, (
            f"weights {_kib(weight_bytes)} in {_kib(flash)} of flash, activations "
            f"{_kib(activation_bytes)} in {block} ({_kib(limit)})"
        )
    need = weight_bytes + activation_bytes
    if need > ram:
        return False, f"weights + activations {_kib(need)} exceed the {_kib(ram)} of RAM"
    return True, f"weights + activations {_kib(need)} of {_kib(ram)} RAM"


def _kib(n: int) -> str:
    """Bytes in KiB, MiB or GiB, whichever reads best."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1024:.0f} KiB"


# ===================================================================== the variants


@dataclass(frozen=True)
class EdgeVariant:
    """What an estimate needs about one edge model: its work, format, size and speed here."""

    variant: str
    macs: int | None  # multiply-accumulates per image
    format: str  # float32, float16, dynamic_range or int8 (the TFLite conversion)
    p50_ms: float | None  # median single-image latency on THIS CPU, 1 thread
    weight_bytes: int  # the TFLite file's size
    activation_bytes: int | None  # ActivationMemory.peak_bytes

    @property
    def kernels(self) -> str:
        """Which peak applies: int8 models and dynamic-range ones (activations quantized at
        run time, int8 x int8 products) use int8 kernels; float16 weights are widened to float32."""
        return "int8" if self.format in ("int8", "dynamic_range") else "float32"


def format_of(recipe: str | None, input_dtype: str | None = None) -> str:
    """The TFLite format from a variant's recipe ("... -> TFLite int8") or its input dtype."""
    if recipe and "TFLite " in recipe:
        fmt = recipe.rsplit("TFLite ", 1)[1].strip()
        if fmt in FORMATS:
            return fmt
    return "int8" if input_dtype in ("int8", "uint8") else "float32"


def edge_variant(
    source: str | os.PathLike | bytes,
    *,
    variant: str,
    macs: int | None,
    p50_ms: float | None,
    recipe: str | None = None,
    input_dtype: str | None = None,
) -> EdgeVariant:
    """An :class:`EdgeVariant` from a TFLite file (or its bytes) and what was measured here."""
    blob = source if isinstance(source, bytes | bytearray) else Path(source).read_bytes()
    return EdgeVariant(
        variant=variant,
        macs=int(macs) if macs else None,
        format=format_of(recipe, input_dtype),
        p50_ms=p50_ms,
        weight_bytes=len(blob),
        activation_bytes=activation_memory(bytes(blob)).peak_bytes,
    )


def from_variants(found: Iterable, folder: str | os.PathLike | None = None) -> list[EdgeVariant]:
    """Edge variants from notebook 03's :class:`~workbench.edge.variants.Variant` objects
    (the ``ok`` ones), read from their bytes in memory or ``folder / v.file``."""
    folder = Path(folder) if folder is not None else paths.edge_dir()
    return [_of(v.blob if v.blob is not None else folder / v.file, v.row()) for v in found if v.ok]


def variants_from_manifest(folder: str | os.PathLike | None = None) -> list[EdgeVariant]:
    """The edge models notebook 03 listed in its manifest (``artifacts/edge`` by default)."""
    from workbench.edge import runtime

    folder = Path(folder) if folder is not None else paths.edge_dir()
    entries = runtime.read_manifest(folder)["models"]
    for e in entries:
        if not (folder / e["file"]).exists():
            raise FileNotFoundError(
                f"{folder / runtime.MANIFEST} lists {e['file']}, which is not there: run notebook "
                "03 again (or copy the folder whole)."
            )
    return [_of(folder / e["file"], e) for e in entries]


def _of(source, row: dict) -> EdgeVariant:
    keys = ("variant", "macs", "p50_ms", "recipe", "input_dtype")
    return edge_variant(source, **{k: row.get(k) for k in keys})


# ===================================================================== estimates


def estimate_ms(macs: int, *, device: DeviceClass, kernels: str, efficiency: float) -> float:
    """Estimated single-thread latency: ``MACs / (device peak per core x efficiency)``, in ms."""
    if not efficiency > 0:
        raise ValueError(f"efficiency must be positive, not {efficiency}")
    return macs / (device.peak_gmacs(kernels) * 1e9 * efficiency) * 1e3


def estimate(
    variants: Iterable[EdgeVariant],
    *,
    devices: Iterable[DeviceClass] | None = None,
    peak: machine.PeakMacRate | None = None,
) -> list[dict]:
    """One estimated row per device class and variant.

    The efficiency is the share of this CPU's peak (``peak``, default
    :func:`~workbench.core.machine.peak_mac_rate`) the variant reached here at one thread;
    the estimate assumes the device reaches the same share of its own one-core peak.

    Returns:
        Rows of ``device`` (catalog id), ``device_name``, ``source`` ("estimated"),
        ``variant``, ``format``, ``kernels``, ``macs``, ``p50_ms`` (estimated; None when it
        cannot be: no MAC count, no latency here, or a format the device's runtime does not
        run), ``efficiency``, ``device_peak_gmacs`` (one core), ``here_p50_ms``,
        ``here_peak_gmacs``, ``weight_bytes``, ``activation_bytes``, ``fits_memory``
        (True, False or None: unknown), ``memory_why`` and ``note``.
    """
    devices = list(devices) if devices is not None else load_catalog()
    peak = peak or machine.peak_mac_rate()
    rows = []
    for v in variants:
        here_peak = peak.gmacs(v.kernels)
        note, eff = "", None
        if not v.macs or not v.p50_ms:
            note = "no MAC count or latency measured here for this variant"
        elif not here_peak:
            note = "this CPU's clock is unknown, so neither its peak nor the efficiency is"
        else:
            eff = machine.achieved_mac_rate(v.macs, v.p50_ms, dtype=v.kernels, peak=peak)[
                "share_of_peak"
            ]
        for d in devices:
            fits, why = memory_fit(
                d, weight_bytes=v.weight_bytes, activation_bytes=v.activation_bytes
            )
            runs = v.format in d.formats
            cannot_run = (
                f"{d.runtime.split(',')[0]} does not run {v.format} files (only "
                f"{', '.join(d.formats)})"
            )
            ms = (
                estimate_ms(v.macs, device=d, kernels=v.kernels, efficiency=eff)
                if eff and runs
                else None
            )
            rows.append(
                {
                    "device": d.id,
                    "device_name": d.name,
                    "source": "estimated",
                    "variant": v.variant,
                    "format": v.format,
                    "kernels": v.kernels,
                    "macs": v.macs,
                    "p50_ms": ms,
                    "efficiency": eff,
                    "device_peak_gmacs": d.peak_gmacs(v.kernels),
                    "here_p50_ms": v.p50_ms,
                    "here_peak_gmacs": here_peak,
                    "weight_bytes": v.weight_bytes,
                    "activation_bytes": v.activation_bytes,
                    "fits_memory": fits,
                    "memory_why": why,
                    "note": note or ("" if runs else cannot_run),
                }
            )
    return rows


def slowdowns(
    devices: Iterable[DeviceClass] | None = None,
    *,
    kernels: str = "float32",
    peak: machine.PeakMacRate | None = None,
) -> dict[str, float]:
    """How many times longer each class takes than one core of this CPU for the same work.

    The estimate's assumption (:func:`estimate`): a file reaches the same share of the
    device's one-core peak as it reached of this CPU's, so any time measured here scales by
    the ratio of the peaks. Used for split computing, where a model's first layers run on the
    device: their time measured here times this factor.

    Raises:
        ValueError: this CPU's peak is unknown (its clock could not be read).
    """
    devices = list(devices) if devices is not None else load_catalog()
    here = (peak or machine.peak_mac_rate()).gmacs(kernels)
    if not here:
        raise ValueError("this CPU's clock is unknown, so its peak (and any slowdown) is too")
    return {d.id: here / d.peak_gmacs(kernels) for d in devices}


# ===================================================================== recorded results


def results_path() -> Path:
    """``reports/results/devices.json`` (under ``WORKBENCH_REPORTS`` when set)."""
    return paths.reports_dir("results") / RESULTS_NAME


def read_results(path: str | os.PathLike | None = None) -> dict:
    """``{"measured": [...], "estimated": [...], ...}``; empty lists when nothing is recorded."""
    path = Path(path) if path is not None else results_path()
    if not path.exists():
        return {"measured": [], "estimated": []}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultsError(
            f"{path} is not valid JSON ({err}): it was not written by the workbench or was "
            "edited; move it aside and run `python -m workbench devices bench` again."
        ) from err
    if not isinstance(doc, dict):
        raise ResultsError(f"{path} should hold a JSON object with 'measured' rows; move it aside.")
    doc.setdefault("measured", [])
    doc.setdefault("estimated", [])
    return doc


def read_measured(path: str | os.PathLike | None = None) -> list[dict]:
    """The rows measured on real devices (``source: "measured"``), oldest first."""
    return list(read_results(path)["measured"])


def record_measured(rows: list[dict], path: str | os.PathLike | None = None) -> Path:
    """Add measured rows; a new row replaces an earlier one of the same device and variant."""
    path = Path(path) if path is not None else results_path()
    doc = read_results(path)
    new = {(r["device"], r["variant"]) for r in rows}
    doc["measured"] = [r for r in doc["measured"] if (r.get("device"), r.get("variant")) not in new]
    doc["measured"] += [{**r, "source": "measured"} for r in rows]
    return atomic.write_json(path, doc)


def record_estimated(
    rows: list[dict], path: str | os.PathLike | None = None, *, hardware: str | None = None
) -> Path:
    """Replace the estimated rows (and say which CPU's efficiency they scale)."""
    path = Path(path) if path is not None else results_path()
    doc = read_results(path)
    doc["estimated"] = [{**r, "source": "estimated"} for r in rows]
    doc["estimated_from"] = hardware or machine.describe_hardware()
    return atomic.write_json(path, doc)


def device_table(
    variants: Iterable[EdgeVariant],
    *,
    measured: list[dict] | None = None,
    devices: Iterable[DeviceClass] | None = None,
    peak: machine.PeakMacRate | None = None,
) -> list[dict]:
    """One row per device and variant: measured where a device was benchmarked, else estimated.

    A measured row replaces the estimate of the same catalog class (``device_class``, set by
    ``workbench devices bench`` from ``--name`` or the board's device-tree model) and
    variant; measured rows of devices outside the catalog are added as they are.

    Returns:
        Rows of ``device``, ``device_name``, ``source`` ("measured" or "estimated"),
        ``variant``, ``p50_ms``, ``p95_ms`` (measured only, else None), ``fits_memory``
        (measured: True, it ran), ``memory_why`` and ``note`` (why there is no estimate,
        e.g. a format the device's runtime does not run; empty otherwise).
    """
    measured = read_measured() if measured is None else measured
    by_key = {(m.get("device_class") or m["device"], m["variant"]): m for m in measured}
    table, used = [], set()
    for e in estimate(variants, devices=devices, peak=peak):
        m = by_key.get((e["device"], e["variant"]))
        if m is not None:
            used.add((e["device"], e["variant"]))
            table.append(_measured_row(m, device=e["device"]))
        else:
            keys = ("device", "device_name", "source", "variant", "p50_ms", "fits_memory")
            table.append(
                {
                    **{k: e[k] for k in keys},
                    "p95_ms": None,
                    "memory_why": e["memory_why"],
                    "note": e["note"],
                }
            )
    table += [_measured_row(m, device=key[0]) for key, m in by_key.items() if key not in used]
    return table


def _measured_row(m: dict, *, device: str) -> dict:
    return {
        "device": device,
        "device_name": m.get("device_name") or m["device"],
        "source": "measured",
        "variant": m["variant"],
        "p50_ms": m["p50_ms"],
        "fits_memory": True,
        "p95_ms": m.get("p95_ms"),
        "memory_why": "it ran on the device",
        "note": "",
    }
