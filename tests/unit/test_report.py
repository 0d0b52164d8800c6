"""Recorded figures and the HTML index."""

import json

import numpy as np
import pandas as pd

from workbench import bench, report


def test_recorder_writes_plain_json(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path))
    rec = report.Recorder("09-test")
    rec.record("accuracy", np.float32(0.5))
    rec.record("nan", float("nan"))
    rec.record("table", pd.DataFrame({"a": [1, 2]}))
    rec.record("latency", bench.summarize_ms([1.0, 2.0, 3.0]))
    rec.record("links", {"lan": "edge", "3g": "edge"})
    rec.record("summary_keys", ["accuracy", "links"])
    rec.record("report_tables", ["table"])
    data = json.loads((tmp_path / "results" / "09-test.json").read_text())
    assert data["accuracy"] == 0.5 and data["nan"] is None
    assert data["table"] == [{"a": 1}, {"a": 2}]
    assert data["latency"]["p50_ms"] == 2.0
    assert report.load_results("09-test")["links"] == {"lan": "edge", "3g": "edge"}

    index = report.build_index().read_text()
    assert "09-test" in index and "accuracy" in index and "3g edge, lan edge" in index
    assert "<h3>table</h3>" in index


def test_short_keeps_every_link():
    six = {f"link{i}": "edge" for i in range(6)}
    assert report.short(six).count("edge") == 6
    assert report.short({"p50_ms": 1.23456, "p95_ms": 2.0, "n": 3}) == "p50_ms 1.235, p95_ms 2"
