"""Recorded figures, the HTML index and pages rendered from the package's template."""

import json
import tomllib
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from workbench.core import timing
from workbench.report import recorder
from workbench.report.page import (
    Figure,
    Section,
    Table,
    build_index,
    format_value,
    render_page,
    short,
    summary_rows,
)


class Tables(HTMLParser):
    """Every table of a page: its wrapper's class, header and rows of (tag, class, text)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.wrappers: list[str] = []
        self.cell: list | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div":
            self.wrappers.append(attrs.get("class", ""))
        elif tag == "table":
            self.tables.append({"wrapper": self.wrappers[-1], "head": [], "rows": []})
        elif tag == "tr":
            in_head = not self.tables[-1]["rows"] and not self.tables[-1]["head"]
            (self.tables[-1]["head"] if in_head else self.tables[-1]["rows"]).append([])
        elif tag in ("th", "td"):
            self.cell = [tag, attrs.get("class", ""), ""]

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[2] += data

    def handle_endtag(self, tag):
        if tag == "div":
            self.wrappers.pop()
        elif tag in ("th", "td") and self.cell is not None:
            table = self.tables[-1]
            (table["rows"] or table["head"])[-1].append(tuple(self.cell))
            self.cell = None


@pytest.fixture
def reports(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path))
    return tmp_path


def test_recorder_writes_plain_json(reports):
    rec = recorder.Recorder("09-test")
    rec.record("accuracy", np.float32(0.5))
    rec.record("nan", float("nan"))
    rec.record("table", pd.DataFrame({"a": [1, 2]}))
    rec.record("latency", timing.summarize_ms([1.0, 2.0, 3.0]))
    rec.record("links", {"lan": "edge", "3g": "edge"})
    rec.record("summary_keys", ["accuracy", "links"])
    rec.record("report_tables", ["table"])
    data = json.loads((reports / "results" / "09-test.json").read_text())
    assert data["accuracy"] == 0.5 and data["nan"] is None
    assert data["table"] == [{"a": 1}, {"a": 2}]
    assert data["latency"]["p50_ms"] == 2.0
    assert list(data) == sorted(data)  # names sorted for readable diffs
    assert recorder.load_results("09-test")["links"] == {"lan": "edge", "3g": "edge"}

    index = build_index().read_text()
    assert "09-test" in index and "accuracy" in index and "lan edge, 3g edge" in index
    assert "<h3>table</h3>" in index


def test_recorded_rows_keep_their_column_order(reports):
    rec = recorder.Recorder("09-test")
    rec.record("links", [{"link": "4G", "rtt_ms": 50, "faster": "edge"}])
    rec.record("report_tables", ["links"])
    assert list(recorder.load_results("09-test")["links"][0]) == ["link", "rtt_ms", "faster"]
    (table,) = Tables(build_index().read_text()).tables[-1:]
    assert [c[2] for c in table["head"][0]] == ["link", "rtt_ms", "faster"]


def test_a_wide_table_keeps_the_row_name_first_and_scrolls_in_its_box(tmp_path):
    rows = [
        {"variant": f"int8-{i}", **{f"metric_{j}_ms": 1234.5678 * i + j for j in range(30)}}
        for i in range(1, 6)
    ]
    page = render_page(
        tmp_path / "wide.html", title="Wide", sections=[Section("All", tables=[rows])]
    ).read_text()
    (table,) = Tables(page).tables
    assert table["wrapper"] == "table-wrap"  # scrolls inside its own box
    assert len(table["head"][0]) == 31 and table["head"][0][0][2] == "variant"
    for i, row in enumerate(table["rows"], start=1):
        assert row[0] == ("th", "", f"int8-{i}")  # the row name, a row header
        assert all(tag == "td" and css == "num" for tag, css, _ in row[1:])
    assert table["rows"][0][1][2] == "1,235" and table["rows"][4][1][2] == "6,173"
    assert "overflow-x: auto" in page and "position: sticky" in page
    assert "metric_<wbr>0_<wbr>ms" in page  # long names may wrap


def test_html_in_values_is_escaped(tmp_path):
    evil = "<script>alert('x')</script>"
    page = render_page(
        tmp_path / "p.html",
        title=f"Title {evil}",
        intro=[f"Intro {evil}"],
        sections=[
            Section(
                f"Section {evil}",
                paragraphs=[f"Text {evil} & more"],
                tables=[Table([{evil: evil, "n": 1}], title=evil, caption=evil)],
                links=[(evil, "https://example.org/?a=1&b=2")],
            )
        ],
    ).read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "Text &lt;script&gt;" in page and "&amp; more" in page
    assert 'href="https://example.org/?a=1&amp;b=2"' in page


def test_an_index_without_results_says_what_to_do(reports):
    page = build_index().read_text()
    assert "No recorded results yet" in page and "make run" in page
    assert summary_rows() == []


def test_missing_tables_figures_and_unreadable_results_are_reported(reports):
    rec = recorder.Recorder("09-test")
    rec.record("report_tables", ["never_recorded"])
    rec.record("figures", ["09-not-saved"])
    (reports / "results" / "08-broken.json").write_text("{not json")
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    recorder.save_figure(fig, "09-saved")
    plt.close(fig)
    rec.record("figures", ["09-not-saved", "09-saved"])
    page = build_index().read_text()
    assert "Table &#39;never_recorded&#39; was listed but not recorded" in page
    assert "Figure &#39;09-not-saved&#39; is missing" in page
    assert 'src="figures/09-not-saved.png"' not in page
    assert 'src="figures/09-saved.png"' in page
    assert "could not read" in page and "08-broken" in page


def test_a_table_skipped_on_purpose_says_why_not_that_it_is_missing(reports):
    rec = recorder.Recorder("09-test")
    rec.table("netem_validation", [])
    rec.record("netem_skipped_reason", "this kernel has no sch_netem module")
    rec.table("empty_rows", [])
    page = build_index().read_text()
    assert "netem_validation: not measured in this run. this kernel has no sch_netem" in page
    assert "Table &#39;empty_rows&#39; has no rows in this run." in page
    assert "netem_validation&#39; was listed but not recorded" not in page


def test_an_exercise_check_is_printed_and_recorded(reports, capsys):
    rec = recorder.Recorder("09-test")
    rec.exercise(1, prediction=5000, expected=4800, measured=4800, unit="bytes")
    rec.exercise(2, prediction=None, measured=2.5, claim="p95 is at least p50", ok=True)
    rec.exercise(3, prediction=None, expected=1.0, measured=2.0)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "Exercise 1 · your prediction: 5,000 bytes (4% above the measurement) · "
        "by reasoning: 4,800 bytes · measured: 4,800 bytes"
    )
    assert out[1] == "  check: the reasoning gives the measured value: holds"
    assert "none yet (set prediction_2 and run the cell again)" in out[2]
    assert out[3] == "  check: p95 is at least p50: holds"
    assert out[5].endswith("does NOT hold: look again at the reasoning")
    data = recorder.load_results("09-test")
    assert data["exercise_1_ok"] is True and data["exercise_2_ok"] is True
    assert data["exercise_3_ok"] is False
    assert data["exercise_1"]["prediction"] == 5000 and data["exercise_1"]["unit"] == "bytes"


def test_an_exercise_needs_something_to_check(reports):
    rec = recorder.Recorder("09-test")
    with pytest.raises(ValueError, match=r"expected=\.\.\.\) or the outcome of the check"):
        rec.exercise(1, prediction=1.0, measured=1.0)


def test_a_solution_records_its_answers_under_solutions(reports, capsys):
    rec = recorder.Recorder("solutions/09-test")
    rec.answer(1, ok=True, claim="120 x 4 x 8 + 120 x 8 = 4,800 bytes")
    assert capsys.readouterr().out == "Answer 1: 120 x 4 x 8 + 120 x 8 = 4,800 bytes: holds\n"
    assert (reports / "results" / "solutions" / "09-test.json").exists()
    assert recorder.load_results("solutions/09-test")["answer_1_ok"] is True
    assert "solutions" not in build_index().read_text(), "solutions stay out of the report"


@pytest.mark.parametrize(
    ("value", "text"),
    [(4800, "4,800"), (4800.0, "4,800"), (147737.4, "147,737"), (0.33333, "0.3333"), (True, "yes")],
)
def test_numbers_read_as_a_reader_writes_them(value, text):
    assert recorder.number_text(value) == text


def test_setup_display_shows_whole_cells_and_all_rows():
    long_text = " ".join(["the last layer that fits on the device before the network link"] * 3)
    table = pd.DataFrame({"why": [long_text] * 80, **{f"c{i}": range(80) for i in range(30)}})
    options = (
        "display.max_colwidth",
        "display.max_columns",
        "display.max_rows",
        "display.min_rows",
        "display.expand_frame_repr",
        "styler.render.max_columns",
        "styler.render.max_rows",
    )
    saved = {name: pd.get_option(name) for name in options}
    try:
        recorder.setup_display()
        html = table._repr_html_()
        styled = table.style.to_html()
    finally:
        for name, value in saved.items():
            pd.set_option(name, value)
    assert long_text in html and long_text in styled
    assert "..." not in html and "…" not in styled
    assert html.count("</tr>") == 81  # the header and every row


def test_runs_table_lists_every_column_recorded(reports):
    runs = {"01-a": {"profile": "smoke", "seconds": 12.34, "peak_memory_mib": 1500.5}}
    runs["02-b"] = {**runs["01-a"], "memory_cap_mib": 2048.0, "cgroup_peak_mib": 1700.0}
    (reports / "results").mkdir()
    (reports / "results" / "runs.json").write_text(json.dumps(runs))
    tables = Tables(build_index().read_text()).tables
    head = [c[2] for c in tables[0]["head"][0]]
    assert head == [
        "notebook",
        "profile",
        "seconds",
        "peak_memory_mib",
        "memory_cap_mib",
        "cgroup_peak_mib",
    ]
    assert [c[2] for c in tables[0]["rows"][0]] == ["01-a", "smoke", "12.34", "1,500", "", ""]


def test_dataframes_dicts_of_dicts_and_row_names(tmp_path):
    frame = pd.DataFrame({"acc": [0.9, 0.8]}, index=pd.Index(["float", "int8"], name="variant"))
    page = render_page(
        tmp_path / "p.html",
        title="t",
        sections=[
            Section(
                "s",
                tables=[
                    frame,
                    {"lan": {"rtt_ms": 0.5}, "3g": {"rtt_ms": 300}},
                    Table([{"ms": 1.0, "link": "4G"}], row_name="link"),
                ],
            )
        ],
    ).read_text()
    first, second, third = Tables(page).tables
    assert [r[0][2] for r in first["rows"]] == ["float", "int8"]
    assert [r[0][2] for r in second["rows"]] == ["lan", "3g"]
    assert [c[2] for c in third["head"][0]] == ["link", "ms"]
    with pytest.raises(TypeError, match="list of dicts"):
        render_page(tmp_path / "q.html", title="t", sections=[Section("s", tables=[[1, 2]])])


def test_figures_can_be_embedded_for_a_page_that_stands_alone(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    png = tmp_path / "plot.png"
    fig.savefig(png)
    page = render_page(
        tmp_path / "out" / "p.html",
        title="t",
        sections=[
            Section(
                "Plots",
                figures=[
                    Figure(fig, alt="live", caption="from memory"),
                    Figure(png, alt="file", embed=True),
                ],
            )
        ],
    ).read_text()
    plt.close(fig)
    assert page.count('src="data:image/png;base64,') == 2
    assert "<figcaption>from memory</figcaption>" in page


def test_format_value():
    cases = [1234567, 0.123456, 98765.4, -0.5, None, float("nan"), True, np.int64(3), "x"]
    assert [format_value(v) for v in cases] == [
        "1,234,567",
        "0.1235",
        "98,765",
        "-0.5",
        "—",
        "—",
        "yes",
        "3",
        "x",
    ]


def test_the_template_ships_with_the_package():
    assert (resources.files("workbench.report") / "templates" / "page.html.j2").is_file()
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "templates/*.j2" in pyproject["tool"]["setuptools"]["package-data"]["workbench.report"]


def test_short_keeps_every_link():
    six = {f"link{i}": "edge" for i in range(6)}
    assert short(six).count("edge") == 6
    assert short({"p50_ms": 1.23456, "p95_ms": 2.0, "n": 3}) == "p50_ms 1.235, p95_ms 2"
