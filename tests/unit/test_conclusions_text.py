"""Conclusions that say what the figures say: within noise when they are, the edge ahead when
it is, what PQAT and PCQAT kept, and a winner's curse explained by its cause."""

from __future__ import annotations

from workbench.edge import search, variants
from workbench.report import conclusions


def test_noise_words_call_a_difference_within_noise_below_two_standard_errors():
    assert conclusions.noise_words(2.0, 1.5).endswith("within noise")
    assert conclusions.noise_words(-4.0, 1.5).endswith("beyond noise")
    assert "\u00b1 1.5 pp" in conclusions.noise_words(2.0, 1.5)
    assert (
        conclusions.noise_words(2.0, None) == ""
        and conclusions.noise_words(2.0, float("nan")) == ""
    )


ROWS = [
    {"model": "cloud", "test_accuracy": 0.2867, "parameters": 698_858, "macs": 105_743_616,
     "images_seen": 1800, "epochs": 1, "train_seconds": 27.0, "images_per_second": 67.0},
    {"model": "improved_cnn", "test_accuracy": 0.3533, "parameters": 148_842,
     "macs": 19_776_768, "images_seen": 7200, "epochs": 4, "train_seconds": 19.0,
     "images_per_second": 383.0},
]  # fmt: skip
SPECS = {"cloud": {"architecture": "resnet"}, "improved_cnn": {"architecture": "improved_cnn"}}


def _cloud_text(noise):
    return conclusions.cloud_conclusions(
        ROWS, specs=SPECS, cloud="cloud", edge_candidate="improved_cnn", n_train=1800,
        data_source="subset", strategy="default", gain_noise_pp=noise,
    )  # fmt: skip


def test_cloud_conclusions_say_when_the_gain_is_noise_and_count_epochs_right():
    assert "**-6.7 pp** (± 4.0 pp, one standard error: within noise) against" in _cloud_text(4.0)
    assert "beyond noise" in _cloud_text(1.0)
    text = _cloud_text(None)
    assert "(1 epoch)" in text and "(4 epochs)" in text and "noise" not in text
    assert "0.04 epochs of 45,000" in text, "a budget under one full epoch is not rounded to 0"
    assert "91%" not in text, "no figure the run did not compute"


def _variant(name, sparsity, p50, **kw):
    return variants.Variant(
        variant=name, recipe=name, status="ok", accuracy=0.35, delta_pp=0.0, val_accuracy=0.35,
        val_delta_pp=0.0, bytes=100_000, gzip_bytes=50_000, p50_ms=p50, macs=10**6,
        sparsity=sparsity, **kw,
    )  # fmt: skip


def test_search_conclusions_say_what_pqat_and_pcqat_kept_and_why_pcqat_is_slower():
    found = search.SearchResult(
        variants=[
            _variant("float32", 0.0, 0.41),
            _variant("slim25_pruned80_int8", 0.782, 0.117),
            _variant("slim25_pqat80_int8", 0.113, 0.131),
            _variant("slim25_pcqat80_c8_int8", 0.0, 0.185),
        ],
        budget_pp=10.0,
        winners={"smallest": "slim25_pqat80_int8", "fastest": "slim25_pruned80_int8"},
        frontier_size=[],
        frontier_speed=[],
        log=[],
    )
    text = conclusions.search_conclusions(found)
    assert "slim25_pqat80_int8 has 11.3% zeros, slim25_pcqat80_c8_int8 has 0.0% zeros" in text
    assert "against 78.2% in slim25_pruned80_int8" in text and "did not all survive" in text
    assert "(1.41x): PCQAT keeps each batch norm apart" in text
    assert "PQAT (QAT that keeps the zeros)" not in text


def test_a_winners_curse_not_caused_by_too_few_images_is_not_blamed_on_them():
    naive = _variant("slim25_pcqat80_c8_int8", 0.0, 0.185, val_noise_pp=2.95)
    naive = variants.Variant(**{**naive.row(), "val_delta_pp": -7.33, "delta_pp": -9.33})
    found = search.SearchResult(
        variants=[_variant("float32", 0.0, 0.41), _variant("slim25_pqat80_int8", 0.1, 0.13), naive],
        budget_pp=10.0,
        winners={"smallest": "slim25_pqat80_int8", "fastest": None},
        frontier_size=[],
        frontier_speed=[],
        log=[],
        rule=variants.PickRule(budget_pp=10.0, confidence=0.9),
        uncertified_winners={"smallest": "slim25_pcqat80_c8_int8", "fastest": None},
        n_val=300,
    )
    text = conclusions.search_conclusions(found)
    assert "The winner's curse" in text
    assert "Too few validation images" not in text and "Not for want of validation images" in text


STUDENTS = {
    "gain_test_pp": {"mean": -0.75, "sd": 2.47, "per_seed": [-2.5, 1.0]},
    "chosen": {"temperature": 2.0, "alpha": 0.5},
}


def _collab(cascade, sweep=None, n_test=None):
    return conclusions.collab_conclusions(
        split={"status": "skipped", "reason": "test"},
        students=STUDENTS,
        student_int8={"gzip_bytes": 27_056, "accuracy": 0.12},
        cascades=[cascade],
        cascade_latency=[],
        cloud_accuracy=0.285,
        tolerance_pp=0.5,
        sweeps={"edge": sweep} if sweep else None,
        n_test=n_test,
    )


def test_an_edge_model_ahead_of_the_cloud_is_called_ahead_and_a_lucky_peak_noise():
    choice = {"edge model": "edge", "edge_accuracy": 0.355, "threshold": 0.0, "accuracy": 0.355,
              "cloud_fraction": 0.0, "met": True}  # fmt: skip
    text = _collab(choice)
    assert "7.0 pp ahead of the cloud's 0.2850" in text and "-7.0 pp behind" not in text
    assert "at least as accurate as the cloud's here, so no cascade is needed" in text
    assert "95% interval" in text and "within noise" in text  # the distillation gain
    sweep = [
        {"threshold": 0.0, "accuracy": 0.355, "cloud_fraction": 0.0},
        {"threshold": 0.5, "accuracy": 0.375, "cloud_fraction": 0.46},
        {"threshold": 1.01, "accuracy": 0.285, "cloud_fraction": 1.0},
    ]
    text = _collab(choice, sweep, n_test=200)
    assert "most accurate point, 37.5% with 46% sent" in text and "2.0 pp above" in text
    assert "within the noise of one accuracy on 200 images" in text


def _compare_text(gap_noise_pp, decision_rows):
    from types import SimpleNamespace

    best = {"encoding": "png", "request_bytes": 2552, "loopback_p50_ms": 4.6}
    cloud = SimpleNamespace(
        accuracy=0.2867, encodings=[best], best=best, best_encoding="png", server_overhead_ms=1.8
    )
    per_device = [
        {"device": "pi", "edge_source": "estimated", "edge_p50_ms": 2.1, "key": k, "faster": "edge"}
        for k in ("lan", "4g")
    ]
    return conclusions.compare_conclusions(
        edge_variant="slim", edge_accuracy=0.3533, edge_latency=SimpleNamespace(p50_ms=0.09),
        cloud=cloud, cloud_source="resnet", runtimes=[{"runtime": "LiteRT", "compute_p50_ms": 2.6}],
        cloud_runtime="LiteRT", per_device=per_device, decision_rows=decision_rows,
        load={"throughput_rps": 222.0, "clients": 4, "failures": 0, "cpu_utilisation": 0.5},
        batching={}, bandwidth=[], bandwidth_skipped=None, gap_noise_pp=gap_noise_pp,
    )  # fmt: skip


def test_compare_conclusions_never_call_a_more_accurate_edge_as_accurate_as_the_cloud():
    rows = [
        {"device": "pi", "edge_p50_ms": 2.1, "fits_memory": True, "cloud_mb_per_month": 85.7,
         "cloud_usd_per_million": 0.1},
        {"device": "mcu", "edge_p50_ms": float("nan"), "fits_memory": True,
         "cloud_mb_per_month": 85.7, "cloud_usd_per_million": 0.1},
    ]  # fmt: skip
    text = _compare_text(3.4, rows)
    assert "-6.7 pp for the cloud** (± 3.4 pp, one standard error: within noise)" in text
    assert "as accurate as the cloud's." not in text
    assert "No latency for the edge model on mcu**" in text and "mcu** (estimated" not in text
    text = _compare_text(1.0, rows[:1])
    assert "beyond noise): here the edge model is the more accurate one." in text
    assert "No latency" not in text
