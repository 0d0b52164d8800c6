"""Tables as a reader sees them: plain column names with units, numbers formatted by unit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.report import tables


def test_names_get_their_units():
    assert tables.label("p50_ms") == "p50 [ms]"
    assert tables.label("edge_p95_ms") == "edge p95 [ms]"
    assert tables.label("gzip_bytes") == "gzip [bytes]"
    assert tables.label("val_delta_pp") == "validation change [pp]"
    assert tables.label("throughput_rps") == "throughput [requests/s]"
    assert tables.label("wall_s") == "wall [s]"
    assert tables.label("macs") == "MACs per image"
    assert tables.label("variant") == "variant"
    assert tables.label("status") == "status", "an 's' ending is no unit"
    assert tables.label(("p50_ms", "raspberry-pi-4")) == ("p50_ms", "raspberry-pi-4")


def test_readable_renames_formats_and_hides_without_changing_the_data():
    df = pd.DataFrame(
        {
            "variant": ["float32", "int8"],
            "p50_ms": [0.41257, 0.1326],
            "gzip_bytes": [549603, 150066],
            "delta_pp": [0.0, -0.3333],
            "sparsity": [0.0, 0.4889],
            "file": ["a.tflite", "b.tflite"],
            "reason": [None, np.nan],
        }
    ).set_index("variant")
    html = tables.readable(df, hide=["file"]).to_html()
    for shown in ("p50 [ms]", "gzip [bytes]", "test change [pp]", "0.413", "549,603", "-0.33"):
        assert shown in html, shown
    assert "48.9%" in html and "a.tflite" not in html and "nan" not in html.lower()
    assert "p50_ms" in df.columns, "the recorded frame keeps its names"


def test_readable_renames_one_level_of_a_pivot():
    rows = pd.DataFrame(
        {"device": ["pi", "pi"], "variant": ["a", "b"], "p50_ms": [1.0, 2.0], "fits_memory": [1, 0]}
    )
    pivot = rows.pivot(index="device", columns="variant", values=["p50_ms", "fits_memory"])
    html = tables.readable(pivot, level=0, formats={"p50_ms": "{:.1f}"}).to_html()
    assert "p50 [ms]" in html and "fits memory" in html and "2.0" in html
    assert ">a<" in html and ">b<" in html, "the variant level is shown as it is"
