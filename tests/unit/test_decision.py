"""The decision table and the per-device comparison when a device has no latency for the
edge model (not measured, and not estimated: e.g. its runtime does not run the file)."""

from __future__ import annotations

import math

from workbench.collab import decision

LINKS = [
    {"key": "lan", "cloud_p50_ms": 6.0, "cloud_p95_ms": 8.0},
    {"key": "4g", "cloud_p50_ms": 58.0, "cloud_p95_ms": 84.0},
]


def _table(edge_devices):
    return decision.decision_table(
        edge_devices=edge_devices,
        links=LINKS,
        edge_accuracy=0.36,
        cloud_accuracy=0.29,
        request_bytes=2552,
        response_bytes=107,
        requests_per_day=1000,
        cost_per_million=0.15,
        input_description="the image",
    )


def test_a_device_without_latency_is_never_called_faster_or_slower():
    rows = _table(
        [
            {"device": "pi", "source": "estimated", "p50_ms": 2.0, "p95_ms": 2.5},
            {"device": "mcu", "source": "estimated", "p50_ms": math.nan, "p95_ms": math.nan},
            {"device": "m7", "source": "estimated", "p50_ms": None, "p95_ms": None},
        ]
    )
    by = {(r["device"], r["link"]): r for r in rows}
    assert by["pi", "lan"]["faster"] == "edge" and by["pi", "4g"]["edge_p50_ms"] == 2.0
    for device in ("mcu", "m7"):
        for link in ("lan", "4g"):
            row = by[device, link]
            assert row["faster"].startswith("cloud (no latency") and row["edge_p50_ms"] is None
    verdicts = decision.verdicts(rows)
    assert ("pi", "4g") in verdicts["edge_faster"] and ("mcu", "lan") in verdicts["cloud_faster"]


def test_a_model_that_does_not_fit_goes_to_the_cloud_whatever_its_speed():
    rows = _table([{"device": "pi", "source": "estimated", "p50_ms": 1.0, "p95_ms": 1.0,
                    "fits_memory": False}])  # fmt: skip
    assert all(r["faster"].startswith("cloud (the model does not fit") for r in rows)
