"""Tables as a reader sees them: plain column names with their units (``p50_ms`` is shown as
"p50 [ms]"), numbers formatted for reading, every cell whole.

The recorded tables keep their machine names (tests, the report and JSON readers use them);
only what a notebook displays is renamed, by :func:`readable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# Names a suffix rule would get wrong or leave unclear, spelled out.
LABELS: dict[str, str] = {
    "macs": "MACs per image",
    "parameters": "parameters",
    "images_budget": "budget [images seen]",
    "images_seen": "images seen",
    "images_per_second": "training speed [images/s]",
    "train_seconds": "training time [s]",
    "build_seconds": "build time [s]",
    "lr_schedule": "learning-rate schedule",
    "label_smoothing": "label smoothing",
    "test_accuracy": "test accuracy",
    "last_train_accuracy_training_mode": "last epoch's training accuracy (training mode)",
    "accuracy": "test accuracy",
    "val_accuracy": "validation accuracy",
    "delta_pp": "test change [pp]",
    "val_delta_pp": "validation change [pp]",
    "val_noise_pp": "validation noise, 1 SE [pp]",
    "bytes": "file [bytes]",
    "gzip_bytes": "gzip [bytes]",
    "compression_x": "compression [x]",
    "speedup_x": "speed-up [x]",
    "agreement_float": "agreement with float",
    "agreement_source": "agreement with its source",
    "sparsity": "sparsity",
    "measured_sparsity": "measured sparsity",
    "target_sparsity": "target sparsity",
    "achieved_gmacs": "achieved [G MAC/s]",
    "peak_gmacs": "peak, one core [G MAC/s]",
    "share_of_peak": "share of peak",
    "device_peak_gmacs": "device peak, one core [G MAC/s]",
    "here_peak_gmacs": "this CPU's peak [G MAC/s]",
    "here_p50_ms": "p50 on this CPU [ms]",
    "fits_memory": "fits memory",
    "memory_why": "memory",
    "request_bytes": "request [bytes]",
    "response_bytes": "response [bytes]",
    "loopback_p50_ms": "loopback p50 [ms]",
    "loopback_p95_ms": "loopback p95 [ms]",
    "compute_p50_ms": "model compute p50 [ms]",
    "compute_p95_ms": "model compute p95 [ms]",
    "cloud_measured_p50_ms": "cloud measured (loopback) p50 [ms]",
    "cloud_modelled_link_p50_ms": "link, modelled p50 [ms]",
    "rtt_ms": "RTT [ms]",
    "jitter_ms": "jitter [ms]",
    "uplink_mbps": "uplink [Mbit/s]",
    "downlink_mbps": "downlink [Mbit/s]",
    "speed_ratio": "cloud time / edge time",
    "throughput_rps": "throughput [requests/s]",
    "mean_batch": "mean batch [requests]",
    "cloud_mb_per_month": "cloud traffic [MB/month]",
    "edge_mb_per_month": "edge traffic [MB/month]",
    "accuracy_gap_pp": "accuracy gap, cloud - edge [pp]",
    "edge_source": "edge figure",
    "leaves_device_cloud": "leaves the device (cloud)",
    "leaves_device_edge": "leaves the device (edge)",
    "faster": "answers first",
    "cloud_usd_per_million": "cloud cost [USD per million]",
    "cloud_fraction": "sent to the cloud",
    "activation_bytes": "activation [bytes]",
    "activation_shape": "activation shape",
    "larger_than_input": "larger than the input",
    "wire_bytes": "on the wire [bytes]",
    "edge_ms": "edge part [ms]",
    "cloud_ms": "cloud part [ms]",
    "key": "link",
    "clients": "clients",
    "seconds": "time [s]",
    "cascade_mean_ms": "cascade mean [ms]",
    "cascade_p95_ms": "cascade p95 [ms]",
    "best_ms": "best [ms]",
    "all_edge_ms": "all on the device [ms]",
    "all_cloud_ms": "all in the cloud [ms]",
}

# Units by the name's ending, for the names LABELS does not list: (suffix, unit, format).
SUFFIXES: tuple[tuple[str, str, str], ...] = (
    ("_ms", "ms", "{:,.3f}"),
    ("_pp", "pp", "{:+.2f}"),
    ("_bytes", "bytes", "{:,.0f}"),
    ("_x", "x", "{:.2f}"),
    ("_mbps", "Mbit/s", "{:,.3g}"),
    ("_rps", "requests/s", "{:,.1f}"),
    ("_gmacs", "G MAC/s", "{:,.2f}"),
    ("_seconds", "s", "{:,.1f}"),
    ("_s", "s", "{:,.2f}"),
)

# Formats of the names LABELS lists whose value has no unit suffix to go by.
FORMATS: dict[str, str] = {
    "macs": "{:,.0f}",
    "parameters": "{:,.0f}",
    "images_budget": "{:,.0f}",
    "images_seen": "{:,.0f}",
    "images_per_second": "{:,.0f}",
    "test_accuracy": "{:.4f}",
    "last_train_accuracy_training_mode": "{:.4f}",
    "accuracy": "{:.4f}",
    "val_accuracy": "{:.4f}",
    "agreement_float": "{:.3f}",
    "agreement_source": "{:.3f}",
    "agreement": "{:.3f}",
    "sparsity": "{:.1%}",
    "measured_sparsity": "{:.1%}",
    "target_sparsity": "{:.0%}",
    "share_of_peak": "{:.0%}",
    "efficiency": "{:.0%}",
    "cloud_fraction": "{:.0%}",
    "speed_ratio": "{:,.2f}",
    "mean_batch": "{:.2f}",
    "cloud_mb_per_month": "{:,.2f}",
    "edge_mb_per_month": "{:,.2f}",
    "cloud_usd_per_million": "{:,.2f}",
    "label_smoothing": "{:g}",
    "edge_accuracy": "{:.4f}",
    "cloud_accuracy": "{:.4f}",
    "target_accuracy": "{:.4f}",
    "threshold": "{:.2f}",
    "temperature": "{:g}",
    "alpha": "{:g}",
    "seconds": "{:,.1f}",
    "cpu_utilisation": "{:.0%}",
}


def label(name) -> str:
    """The column name a reader sees: ``p50_ms`` -> "p50 [ms]", ``gzip_bytes`` -> "gzip
    [bytes]"; a name without a known unit keeps its words (``edge_p50_ms`` -> "edge p50
    [ms]", ``variant`` -> "variant"). Anything but a string is returned as it is."""
    if not isinstance(name, str):
        return name
    if name in LABELS:
        return LABELS[name]
    unit = _unit_suffix(name)
    if unit is not None:
        suffix, symbol, _ = unit
        return f"{name[: -len(suffix)].replace('_', ' ')} [{symbol}]"
    return name.replace("_", " ")


def value_format(name) -> str | None:
    """How a column's values are written (a ``str.format`` pattern), or None: as they are."""
    if not isinstance(name, str):
        return None
    if name in FORMATS:
        return FORMATS[name]
    unit = _unit_suffix(name)
    return None if unit is None else unit[2]


def _unit_suffix(name: str) -> tuple[str, str, str] | None:
    """The entry of :data:`SUFFIXES` whose suffix ends ``name`` (after at least one other
    character), or None."""
    for entry in SUFFIXES:
        if name.endswith(entry[0]) and len(name) > len(entry[0]):
            return entry
    return None


def _formatter(pattern: str) -> Callable:
    """A cell formatter that writes numbers by ``pattern`` and leaves anything else as is
    (a None, a text in a numeric column)."""

    def write(value) -> str:
        if value is None or isinstance(value, bool | str):
            return "" if value is None else str(value)
        try:
            if value != value:  # NaN
                return ""
            return pattern.format(value)
        except (TypeError, ValueError):
            return str(value)

    return write


def readable(df, *, formats: dict[str, str] | None = None, hide: Iterable[str] = (), level=None):
    """``df`` as a reader sees it: columns and index names by :func:`label`, numbers
    formatted by their unit, ``hide`` columns left out, empty cells blank.

    Args:
        df: a DataFrame (the recorded names: nothing in it is changed).
        formats: patterns by recorded column name, over the defaults (``{"p50_ms": "{:.1f}"}``).
        hide: recorded column names not to show.
        level: for columns of several levels (a pivot), the level that holds the recorded
            names; the other levels (device ids, link keys) are shown as they are.

    Returns:
        A pandas Styler (``display`` it).
    """
    formats = formats or {}
    shown = df.drop(columns=[c for c in hide if c in df.columns])
    names = list(shown.columns)
    renamed = shown.rename(columns=label, level=level)
    renamed.index = renamed.index.set_names([label(n) for n in renamed.index.names])
    renamed.columns = renamed.columns.set_names([label(n) for n in renamed.columns.names])
    patterns = {}
    for original, new in zip(names, renamed.columns, strict=True):
        key = original[level or 0] if isinstance(original, tuple) else original
        pattern = formats.get(key) or value_format(key)
        if pattern:
            patterns[new] = _formatter(pattern)
    return renamed.style.format(patterns, na_rep="")
