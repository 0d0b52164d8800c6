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
        "threshold": threshold,
        "accuracy": accuracy,
        "cloud_fraction": cloud_fraction,
        "met": accuracy >= 0.6244 - 0.005,
    }


def _text(cascade: dict) -> str:
    return conclusions.collab_conclusions(
        split={"status": "skipped", "reason": "test"},
        students=STUDENTS,
        student_int8=STUDENT_INT8,
        cascades=[cascade],
        cascade_latency=[],
        cloud_accuracy=0.6244,
        tolerance_pp=0.5,
    )


def test_a_cascade_that_needs_the_cloud_is_reported_as_met_without_the_edge_alone_note():
    text = _text(_cascade(0.60, 0.6244, 0.26, 0.45))
    assert "sending 26% of requests to the cloud: within 0.5 pp" in text
    assert "no cascade is needed" not in text


def test_an_edge_model_as_accurate_as_the_cloud_is_said_to_need_no_cascade():
    text = _text(_cascade(0.6234, 0.6234, 0.0, 0.0))
    assert "the edge model alone is within 0.5 pp of the cloud, so no cascade is needed" in text


def test_a_cascade_over_half_to_the_cloud_is_not_called_met():
    text = _text(_cascade(0.47, 0.6214, 0.84, 0.65))
    assert "the target (0.5 pp) needs 84% in the cloud" in text
    assert "within 0.5 pp" not in text


def test_a_cascade_that_never_reaches_the_target_says_so():
    text = _text(_cascade(0.47, 0.60, 1.0, 1.01))
    assert "no threshold reaches the target" in text
