"""Edge or cloud, per device and link: the decision table notebook 04 ends with.

One row per (device class, link): the edge model's latency on that device (measured on the
device, or estimated from its MACs: each row says which), the cloud's over that link (the
server measured on this machine plus the modelled link), the accuracy each side reaches, the
bytes a month of requests sends at a stated request rate, the cloud's cost per million
requests at a stated price, and what leaves the device. The table does not decide for the
reader; :func:`verdicts` says, per row, which side is faster and what the other side buys.
"""

from __future__ import annotations

from workbench.network import latency

DAYS_PER_MONTH = 30


def cloud_cost_per_million(
    *, throughput_rps: float, cores: int, price_per_core_hour: float
) -> float:
    """What a million requests cost on the cloud's CPUs at a stated price.

    The server handled ``throughput_rps`` requests per second on ``cores`` cores (a load
    test); a million requests then take ``1e6 / throughput_rps`` seconds of those cores.
    """
    if throughput_rps <= 0 or cores <= 0:
        raise ValueError(f"throughput ({throughput_rps}) and cores ({cores}) must be positive")
    core_hours = 1e6 / throughput_rps * cores / 3600
    return core_hours * price_per_core_hour


def monthly_bytes(*, request_bytes: int, response_bytes: int, requests_per_day: float) -> float:
    """Bytes on the wire (TCP/IP framing included) for a month of requests to the cloud."""
    per_request = latency.wire_bytes(request_bytes) + latency.wire_bytes(response_bytes)
    return per_request * requests_per_day * DAYS_PER_MONTH


def decision_table(
    *,
    edge_devices: list[dict],
    links: list[dict],
    edge_accuracy: float,
    cloud_accuracy: float,
    request_bytes: int,
    response_bytes: int,
    requests_per_day: float,
    cost_per_million: float,
    input_description: str,
) -> list[dict]:
    """One row per device class and link.

    Args:
        edge_devices: rows ``{device, source, p50_ms, p95_ms, fits_memory}`` (source
            "measured" or "estimated"), one per device class.
        links: rows with ``key`` (the link), ``cloud_p50_ms`` and ``cloud_p95_ms`` (the cloud's
            end-to-end latency over that link, as :func:`workbench.collab.compare.compare`
            gives them).
        edge_accuracy, cloud_accuracy: each side's accuracy on the same test images.
        request_bytes, response_bytes: one request to the cloud (its smallest encoding).
        requests_per_day: the stated request rate (per device) for the monthly bytes.
        cost_per_million: the cloud's cost per million requests
            (:func:`cloud_cost_per_million`).
        input_description: what a request carries, in words (e.g. "the 32x32 RGB image").
    """
    month = monthly_bytes(
        request_bytes=request_bytes,
        response_bytes=response_bytes,
        requests_per_day=requests_per_day,
    )
    rows = []
    for d in edge_devices:
        p50 = d.get("p50_ms")
        known = p50 is not None and p50 == p50  # None or NaN: no latency on this device
        for link in links:
            faster = "edge" if known and p50 <= link["cloud_p50_ms"] else "cloud"
            if not known:
                faster = "cloud (no latency for the edge model on this device)"
            if not d.get("fits_memory", True):
                faster = "cloud (the model does not fit the device)"
            rows.append(
                {
                    "device": d["device"],
                    "edge_source": d["source"],
                    "link": link["key"],
                    "edge_p50_ms": p50 if known else None,
                    "edge_p95_ms": d.get("p95_ms") if known else None,
                    "cloud_p50_ms": link["cloud_p50_ms"],
                    "cloud_p95_ms": link["cloud_p95_ms"],
                    "faster": faster,
                    "accuracy_gap_pp": 100 * (cloud_accuracy - edge_accuracy),
                    "cloud_mb_per_month": month / 1e6,
                    "edge_mb_per_month": 0.0,
                    "cloud_usd_per_million": cost_per_million,
                    "leaves_device_cloud": input_description,
                    "leaves_device_edge": "nothing (the answer is computed on the device)",
                    "fits_memory": d.get("fits_memory", True),
                }
            )
    return rows


def verdicts(rows: list[dict]) -> dict:
    """Counts that answer "when is it the cloud?" from a decision table.

    Returns:
        ``{"edge_faster": [(device, link)...], "cloud_faster": [...], "does_not_fit":
        [devices], "accuracy_gap_pp": float}``.
    """
    edge = [(r["device"], r["link"]) for r in rows if r["faster"] == "edge"]
    cloud = [(r["device"], r["link"]) for r in rows if r["faster"] != "edge"]
    misfits = sorted({r["device"] for r in rows if not r["fits_memory"]})
    gap = rows[0]["accuracy_gap_pp"] if rows else 0.0
    return {
        "edge_faster": edge,
        "cloud_faster": cloud,
        "does_not_fit": misfits,
        "accuracy_gap_pp": gap,
    }
