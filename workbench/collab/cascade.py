"""Edge-first cascades: the edge model answers when it is confident, the cloud model
otherwise; the confidence threshold swept for accuracy against the share sent to the cloud.
"""

from __future__ import annotations

import numpy as np

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads

# ===================================================================== cascade


def cascade_sweep(
    edge_probs: np.ndarray,
    cloud_probs: np.ndarray,
    y: np.ndarray,
    *,
    thresholds: np.ndarray,
    edge_ms: float,
    cloud_ms_per_link: dict[str, float],
) -> list[dict]:
    """Accuracy, share sent to the cloud, and latency per link, for each confidence threshold.

    A request is answered by the edge when its top probability is at least the threshold;
    otherwise it waits for the edge *and* the cloud (the edge ran first).
    """
    confidence = edge_probs.max(1)
    edge_pred, cloud_pred = edge_probs.argmax(1), cloud_probs.argmax(1)
    rows = []
    for t in thresholds:
        to_cloud = confidence < t
        pred = np.where(to_cloud, cloud_pred, edge_pred)
        row = {
            "threshold": float(t),
            "accuracy": float(np.mean(pred == y)),
            "cloud_fraction": float(np.mean(to_cloud)),
        }
        for link, cloud_ms in cloud_ms_per_link.items():
            lat = edge_ms + to_cloud * cloud_ms
            row[f"{link}_mean_ms"] = float(lat.mean())
            row[f"{link}_p95_ms"] = float(np.percentile(lat, 95))
        rows.append(row)
    return rows


def pick_threshold(rows: list[dict], *, target_accuracy: float) -> dict:
    """The row with the fewest cloud calls whose accuracy reaches ``target_accuracy``."""
    ok = [r for r in rows if r["accuracy"] >= target_accuracy]
    if not ok:
        return max(rows, key=lambda r: r["accuracy"])
    return min(ok, key=lambda r: (r["cloud_fraction"], -r["accuracy"]))


THRESHOLDS = np.append(np.round(np.linspace(0.0, 1.0, 101), 2), 1.01)  # 1.01: all to the cloud


def cascades(
    edge_probs: dict[str, np.ndarray],
    cloud_probs: np.ndarray,
    y: np.ndarray,
    *,
    edge_ms: dict[str, float],
    cloud_ms_per_link: dict[str, float],
    tolerance_pp: float = 0.5,
    thresholds: np.ndarray | None = None,
    validation: tuple[dict[str, np.ndarray], np.ndarray, np.ndarray] | None = None,
) -> dict[str, dict]:
    """A confidence sweep and a chosen threshold for each edge model against the cloud.

    The goal is the cloud's accuracy within ``tolerance_pp`` points with the fewest cloud
    calls. With ``validation`` (``(edge probabilities per model, cloud probabilities,
    labels)`` on held-out validation images) the threshold is chosen there and then read on
    ``y``'s images, so the reported accuracy and cloud share are not fitted to them; without
    it the threshold is chosen on ``y``'s images themselves. ``thresholds``: the grid (default
    :data:`THRESHOLDS`, steps of 0.01).

    Returns ``{edge model: {"sweep": rows, "choice": row, "target_accuracy": ...,
    "chosen_on": "validation" | "test", "validation_choice": row or None}}``.
    """
    thresholds = THRESHOLDS if thresholds is None else np.asarray(thresholds)
    cloud_accuracy = float(np.mean(np.argmax(cloud_probs, 1) == y))
    target = cloud_accuracy - tolerance_pp / 100
    out = {}
    for name, probs in edge_probs.items():
        sweep = cascade_sweep(
            probs,
            cloud_probs,
            y,
            thresholds=thresholds,
            edge_ms=edge_ms[name],
            cloud_ms_per_link=cloud_ms_per_link,
        )
        val_choice = None
        if validation is not None:
            val_edge, val_cloud, y_val = validation
            val_sweep = cascade_sweep(
                val_edge[name], val_cloud, y_val, thresholds=thresholds, edge_ms=0.0,
                cloud_ms_per_link={},
            )  # fmt: skip
            val_target = float(np.mean(np.argmax(val_cloud, 1) == y_val)) - tolerance_pp / 100
            val_choice = pick_threshold(val_sweep, target_accuracy=val_target)
            choice = next(r for r in sweep if r["threshold"] == val_choice["threshold"])
        else:
            choice = pick_threshold(sweep, target_accuracy=target)
        out[name] = {
            "sweep": sweep,
            "choice": choice,
            "target_accuracy": target,
            "cloud_accuracy": cloud_accuracy,
            "edge_accuracy": float(np.mean(np.argmax(probs, 1) == y)),
            "chosen_on": "test" if validation is None else "validation",
            "validation_choice": val_choice,
        }
    return out


def latency_table(
    edge_probs: np.ndarray,
    *,
    threshold: float,
    edge_ms: dict[str, float],
    cloud_ms: dict[str, float],
) -> list[dict]:
    """The cascade's latency per device and link, against all-edge and all-cloud.

    ``edge_ms``: the edge model's latency on each device (measured or estimated);
    ``cloud_ms``: the cloud's end-to-end latency over each link. A request below the
    confidence ``threshold`` waits for the edge and then the cloud; the others for the edge
    alone. All-cloud sends every request straight to the cloud (no edge model at all).
    """
    to_cloud = edge_probs.max(1) < threshold
    rows = []
    for device, e_ms in edge_ms.items():
        for link, c_ms in cloud_ms.items():
            lat = e_ms + to_cloud * c_ms
            rows.append(
                {
                    "device": device,
                    "link": link,
                    "all_edge_ms": e_ms,
                    "all_cloud_ms": c_ms,
                    "cascade_mean_ms": float(lat.mean()),
                    "cascade_p95_ms": float(np.percentile(lat, 95)),
                    "cloud_fraction": float(to_cloud.mean()),
                }
            )
    return rows


def choice_record(result: dict) -> dict:
    """What a cascade chose, with both sides' accuracy: one entry of :func:`cascades`."""
    choice = result["choice"]
    return {
        "threshold": choice["threshold"],
        "accuracy": choice["accuracy"],
        "cloud_fraction": choice["cloud_fraction"],
        "edge_accuracy": result["edge_accuracy"],
        "cloud_accuracy": result["cloud_accuracy"],
        "target_accuracy": result["target_accuracy"],
        "met": choice["accuracy"] >= result["target_accuracy"],
        "chosen_on": result.get("chosen_on", "test"),
        **{
            f"validation_{k}": (result.get("validation_choice") or {}).get(k)
            for k in ("accuracy", "cloud_fraction")
        },
    }


def summary(results: dict[str, dict]) -> list[dict]:
    """One row per edge model of :func:`cascades`: its choice, as :func:`choice_record`."""
    return [{"edge model": name, **choice_record(r)} for name, r in results.items()]
