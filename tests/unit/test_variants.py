"""Variants and the budgeted search: winners, frontiers, the ladder's decisions, skips."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.core import metrics
from workbench.edge import search, variants
from workbench.models import subject
from workbench.report import conclusions


def _v(name, *, gzip, p50, val, ok=True, test=None):
    return variants.Variant(
        variant=name,
        recipe=name,
        status="ok" if ok else "skipped",
        reason=None if ok else "why",
        accuracy=test if test is not None else 0.5 + val / 100,
        delta_pp=val,
        val_accuracy=0.5 + val / 100,
        val_delta_pp=val,
        bytes=gzip * 2,
        gzip_bytes=gzip,
        p50_ms=p50,
    )


def test_winners_are_judged_on_validation_within_the_budget():
    vs = [
        _v("float32", gzip=1000, p50=1.0, val=0.0),
        _v("int8", gzip=300, p50=1.2, val=-0.5),
        _v("tiny", gzip=50, p50=0.9, val=-3.0, test=0.9),  # over budget, however good on test
        _v("slim", gzip=800, p50=0.5, val=-0.9),
        _v("broken", gzip=10, p50=0.1, val=0.0, ok=False),
    ]
    assert variants.winners(vs, 1.0) == {"smallest": "int8", "fastest": "slim"}
    assert variants.winners(vs, 5.0) == {"smallest": "tiny", "fastest": "slim"}
    assert variants.winners(vs, -1.0) == {"smallest": None, "fastest": None}
    assert [v.variant for v in variants.within_budget(vs, 1.0)] == ["float32", "int8", "slim"]


def test_the_pick_rule_rejects_a_variant_within_the_budget_only_by_noise():
    """The winner's curse, on synthetic deltas: among many noisy variants truly 2 pp worse than
    the float model, the one that looks best on validation is lucky; the bound rejects it."""
    rng = np.random.default_rng(0)
    true_delta, noise = -2.0, 1.5
    lucky = [
        _v(f"v{i}", gzip=100 + i, p50=1.0, val=float(true_delta + noise * rng.standard_normal()))
        for i in range(40)
    ]
    for v in lucky:
        v.val_noise_pp = noise
    steady = _v("int8", gzip=400, p50=2.0, val=-0.3)
    steady.val_noise_pp = 0.3
    vs = [_v("float32", gzip=1000, p50=3.0, val=0.0), steady, *lucky]
    point = variants.winners(vs, 1.0)  # the point estimate picks a lucky one
    assert point["smallest"].startswith("v")
    assert variants.within_budget([next(v for v in vs if v.variant == point["smallest"])], 1.0)
    picked = variants.winners(vs, 1.0, confidence=0.95)
    assert picked == {"smallest": "int8", "fastest": "int8"}
    rule = variants.PickRule(1.0, 0.95)
    assert rule.z == pytest.approx(1.645, abs=1e-3)
    assert rule.bound_pp(steady) == pytest.approx(-0.3 - 1.645 * 0.3, abs=1e-3)
    assert rule.certifies(steady)
    assert not any(rule.certifies(v) for v in lucky)
    # a quarter of the noise needs 16x the validation images to be certified at zero loss
    assert rule.images_needed(noise, 544) == int(np.ceil(544 * (rule.z * 1.5) ** 2))
    with pytest.raises(ValueError, match="confidence"):
        variants.PickRule(1.0, 1.2)


def test_frontier_keeps_only_what_nothing_beats():
    vs = [
        _v("a", gzip=100, p50=3.0, val=-5.0),
        _v("b", gzip=200, p50=2.0, val=-1.0),
        _v("c", gzip=300, p50=1.0, val=-2.0),  # bigger and worse than b
        _v("d", gzip=400, p50=4.0, val=0.0),
    ]
    assert variants.frontier(vs, "gzip_bytes") == ["a", "b", "d"]
    assert variants.frontier(vs, "p50_ms") == ["c", "b", "d"]


@pytest.fixture(scope="module")
def tiny():
    import tf_keras as keras

    from workbench.models import loading

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="first")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="middle")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="last")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 12, 12, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 96)
    classifier = loading.ImageClassifier(
        path=__import__("pathlib").Path("tiny.keras"),
        sha256="0" * 64,
        saved_by="test",
        native=model,
        keras_model=model,
        keras_note="built here",
        input_shape=(12, 12, 1),
        num_classes=3,
    )
    evaluation = subject.Evaluation.of(
        classifier, x[:32], y[:32], x_val=x[32:48], y_val=y[32:48], input_scale=1 / 255
    )
    return classifier, x[48:], y[48:], evaluation


SETTINGS = variants.Settings(
    prune_steps=2, slim_steps=2, cluster_steps=2, qat_steps=2, batch_size=16,
    calibration_samples=16, latency_repeats=5,
)  # fmt: skip
SPACE = search.SearchSpace(
    sparsities=(0.5, 0.8),
    compare_all_layers=True,
    clusters=(4,),
    qat=False,
    slim_fractions=(0.25, 0.5),
)


@pytest.mark.slow
def test_search_climbs_while_within_budget_and_reports_every_step(tiny, tmp_path):
    classifier, x, y, evaluation = tiny
    found = search.search(
        classifier, x, y, evaluation, input_scale=1 / 255, budget_pp=100.0, settings=SETTINGS,
        space=SPACE, out_dir=tmp_path, file_prefix="tiny_", progress=False,
    )  # fmt: skip
    names = [v.variant for v in found.variants]
    assert names[:4] == ["float32", "dynamic_range", "float16", "int8"]
    for expected in ("slim50_float32", "slim50_int8", "slim50_dynamic_range",
                     "slim50_pruned50_int8", "slim50_pruned80_int8", "slim50_pruned80_float32",
                     "slim50_pruned80_all_int8", "slim50_pqat80_int8",
                     "slim50_pcqat80_c4_int8"):  # fmt: skip
        assert expected in names, (expected, names)
    # the largest channel fraction goes first; within the budget, the milder one is not built
    assert "slim25_float32" not in names
    # the ladder and what follows start from the slim model within the budget
    assert names.index("slim50_int8") < names.index("slim50_pruned50_int8")
    assert not any(n.startswith(("pruned", "pqat", "pcqat")) for n in names)
    assert found.variant("slim50_pqat80_int8").recipe.startswith("slim(fraction=50%) -> prune")
    # the ends pruned too: one more rung on top of the ladder's model, not a fresh start
    assert found.variant("slim50_pruned80_all_int8").recipe.count("prune") == 3
    for v in found.variants:
        assert v.status in ("ok", "skipped") and (v.ok or v.reason)
        if v.ok:
            assert (tmp_path / v.file).exists() and v.file.startswith("tiny_")
            assert v.val_noise_pp is not None and v.val_noise_pp >= 0
    ladder = search.ladder(found)
    assert [row["target_sparsity"] for row in ladder] == [0.5, 0.8]
    rung = found.variant("slim50_pruned80_int8")
    assert rung.sparsity is not None and 0 < rung.macs < found.variant("int8").macs
    assert found.winners["smallest"] and found.winners["fastest"]
    decisions = [row["decision"] for row in found.log]
    assert any("climb on" in d for d in decisions)
    manifest = search.write_manifest(found, tmp_path)
    assert manifest["default"] == found.winners["fastest"]
    text = conclusions.search_conclusions(found)
    assert "smallest" in text and "fastest" in text


@pytest.mark.slow
def test_search_stops_climbing_when_over_budget(tiny, tmp_path):
    classifier, x, y, evaluation = tiny
    space = search.SearchSpace(
        sparsities=(0.5, 0.8),
        compare_all_layers=False,
        clusters=(),
        qat=False,
        slim_fractions=(0.25, 0.5),
    )
    found = search.search(
        classifier, x, y, evaluation, input_scale=1 / 255, budget_pp=-50.0, settings=SETTINGS,
        space=space, progress=False,
    )  # fmt: skip
    names = [v.variant for v in found.variants]
    # over the budget, structured pruning falls back to fewer channels removed, and with no
    # slim model within the budget the ladder starts from the float model
    assert names.index("slim50_float32") < names.index("slim25_float32")
    assert not any("_pruned" in n for n in names if n.startswith("slim"))
    assert "pruned50_int8" in names and "pruned80_int8" not in names
    assert names.index("slim25_float32") < names.index("pruned50_int8")
    assert found.variant("pruned50_int8").recipe.startswith("prune(")
    assert any("stop climbing" in row["decision"] for row in found.log)
    assert found.winners == {"smallest": None, "fastest": None}
    assert "loosen" in conclusions.search_conclusions(found)


def test_a_model_without_tf_keras_gets_post_training_variants_and_reasons(tiny, tmp_path):
    from dataclasses import replace

    classifier, x, y, evaluation = tiny
    keras3_like = replace(classifier, keras_model=None, keras_note="not available: test")
    recipes = [
        variants.Recipe("float32", (), "float32"),
        variants.Recipe("pruned50_int8", (variants.Step.of("prune", sparsity=0.5),), "int8"),
    ]
    built = variants.build_variants(
        keras3_like, x, y, evaluation, input_scale=1 / 255, recipes=recipes, settings=SETTINGS,
        progress=False,
    )  # fmt: skip
    assert built[0].ok
    assert built[1].status == "skipped" and "needs the model in tf-keras" in built[1].reason


def test_conclusions_say_when_a_winner_misses_the_budget_on_the_test_images():
    def v(name, delta, gz, p50):
        return variants.Variant(
            variant=name, recipe=name, status="ok", accuracy=0.6 + delta / 100, delta_pp=delta,
            val_accuracy=0.6, val_delta_pp=0.0, bytes=1000, gzip_bytes=gz, p50_ms=p50, macs=10**6,
        )  # fmt: skip

    found = search.SearchResult(
        variants=[v("float32", 0.0, 900, 1.5), v("small", 0.4, 80, 1.6), v("fast", -2.3, 500, 0.9)],
        budget_pp=1.0,
        winners={"smallest": "small", "fastest": "fast"},
        frontier_size=[],
        frontier_speed=[],
        log=[],
    )
    text = conclusions.search_conclusions(found)
    assert "fast loses 2.30 pp, more than the 1 pp budget" in text
    assert "small loses" not in text
    found.winners["fastest"] = "small"
    assert "more than the" not in conclusions.search_conclusions(found)


def test_conclusions_explain_int8_speed_from_what_was_measured():
    from workbench.core import machine

    def v(name, p50, macs, recipe=None, dtype="float32"):
        return variants.Variant(
            variant=name, recipe=recipe or f"TFLite {name}", status="ok", accuracy=0.6,
            delta_pp=0.0, val_accuracy=0.6, val_delta_pp=0.0, bytes=4000, gzip_bytes=3000,
            p50_ms=p50, macs=macs, input_dtype=dtype,
        )  # fmt: skip

    def found(int8_ms, slim_ms):
        return search.SearchResult(
            variants=[
                v("float32", 0.30, 20_000_000),
                v("dynamic_range", 0.07, 20_000_000),
                v("int8", int8_ms, 20_000_000, dtype="int8"),
                v("slim35_int8", slim_ms, 8_000_000, "slim(fraction=35%) -> TFLite int8", "int8"),
            ],
            budget_pp=1.0,
            winners={"smallest": "slim35_int8", "fastest": "slim35_int8"},
            frontier_size=[],
            frontier_speed=[],
            log=[],
        )

    vnni = machine.peak_mac_rate(
        cpuinfo="flags\t\t: sse2 avx avx2 fma avx512f avx512_vnni amx_int8\ncpu MHz\t\t: 2600.0\n",
        max_freq_khz=0,
    )
    assert "AMX" in vnni.describe() and vnni.int8_per_cycle == 4 * vnni.float32_per_cycle
    # with 8-bit dot products and int8 measured 3.5x faster: the dot products explain it
    text = conclusions.search_conclusions(found(0.086, 0.088), peak=vnni, dot_flags=["avx512_vnni"])
    assert "runs at 3.49x float32's speed" in text
    assert "which is why int8 is the faster one here" in text
    # fewer MACs that do not pay at int8 are said to not pay
    assert "slim35_int8 does 40% of int8's MACs and runs at 0.98x its speed: at this size" in text
    # without them and int8 slower than float32: said so, and what a dot product would change
    avx2 = machine.peak_mac_rate(
        cpuinfo="flags\t\t: sse2 avx avx2 fma\ncpu MHz\t\t: 2000.0\n", max_freq_khz=0
    )
    text = conclusions.search_conclusions(found(0.45, 0.20), peak=avx2, dot_flags=[])
    assert "no 8-bit dot-product instruction" in text
    assert "which is why int8 is not the faster one here" in text
    assert "slim35_int8 does 40% of int8's MACs and runs at 2.25x its speed." in text
    # dynamic-range kernels are counted as int8 kernels
    rates = {r["variant"]: r for r in variants.mac_rates(found(0.086, 0.088).variants, vnni)}
    assert rates["dynamic_range"]["peak_gmacs"] == vnni.int8_gmacs
    assert rates["float32"]["peak_gmacs"] == vnni.float32_gmacs


def test_validation_noise_is_paired_on_the_images_the_models_disagree_on():
    y = np.zeros(100, int)
    right, wrong = np.eye(2)[0], np.eye(2)[1]
    reference = np.array([right] * 60 + [wrong] * 40)
    same = metrics.paired_noise_pp(reference, reference, y)
    assert same == 0.0  # identical answers: no noise in the difference, however few images
    # 10 images only the variant gets right, 5 only the reference: b + c = 15, b - c = 5
    probs = reference.copy()
    probs[60:70] = right
    probs[:5] = wrong
    expected = 100 * np.sqrt((15 / 100 - (5 / 100) ** 2) / 100)
    assert metrics.paired_noise_pp(probs, reference, y) == pytest.approx(expected)
    v = variants.Variant("x", "x", "ok", val_delta_pp=5.0, val_noise_pp=expected)
    assert conclusions._noisy(v) == f"+5.00 \u00b1 {expected:.2f} pp"
