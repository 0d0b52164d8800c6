"""Notebook 05's conclusions: every sentence follows from the figures it is given."""

from __future__ import annotations

from workbench.report import conclusions

STUDENTS = {
    "gain_test_pp": {"mean": 1.05, "sd": 1.03, "per_seed": [0.0, 2.06, 1.08]},
    "chosen": {"temperature": 2.0, "alpha": 0.5},
}
STUDENT_INT8 = {"gzip_bytes": 26_263, "accuracy": 0.4739, "p50_ms": 0.375}


def _cascade(edge_accuracy: float, accuracy: float, cloud_fraction: float, threshold: float):
    return {
        "edge model": "edge",
        "edge_accuracy": edge_accuracy,
        "speedup_vs_cloud_float32_tflite": 2.0,
        "threshold": threshold,
        "accuracy": accuracy,
        "cloud_fraction": cloud_fraction,
    }


def _text(cascade: dict) -> str:
    return conclusions.collab_conclusions(
        split={"status": "skipped", "reason": "test"},
        students=STUDENTS,
        student_int8=STUDENT_INT8,
        cascades=[cascade],
        cloud_accuracy=0.6244,
        edge_slowdown=100.0,
        tolerance_pp=0.5,
    )


def test_a_cascade_that_needs_the_cloud_is_reported_as_met_without_the_edge_alone_note():
    text = _text(_cascade(0.60, 0.6244, 0.26, 0.45))
    assert "sending 26% of requests to the cloud: within 0.5 pp" in text
    assert "adds nothing" not in text


def test_an_edge_model_as_accurate_as_the_cloud_is_said_to_need_no_cascade():
    text = _text(_cascade(0.6234, 0.6234, 0.0, 0.0))
    assert "sending 0% of requests to the cloud: within 0.5 pp" in text
    assert "the cloud adds nothing a cascade could use" in text


def test_a_cascade_over_half_to_the_cloud_is_not_called_met():
    text = _text(_cascade(0.47, 0.6214, 0.84, 0.65))
    assert "sending 84% of requests to the cloud." in text
    assert "within 0.5 pp" not in text
