"""MAC counting for any tf-keras graph, and the CPU's peak multiply-accumulate rate."""

from __future__ import annotations

import pytest
import tf_keras as keras
from tf_keras import layers

from workbench.core import machine
from workbench.models import architectures, macs


def _model(inputs, outputs):
    return keras.Model(inputs, outputs)


def test_grouped_depthwise_separable_convolutions():
    inputs = keras.Input((10, 10, 8))
    x = layers.Conv2D(16, 3, padding="same", groups=4, name="grouped")(inputs)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", name="dw")(x)
    x = layers.SeparableConv2D(12, 3, strides=2, padding="same", depth_multiplier=1, name="sep")(x)
    m = _model(inputs, x)
    grouped = 10 * 10 * 9 * (8 // 4) * 16  # positions x kernel x (in / groups) x out
    dw = 8 * 8 * 9 * 16 * 2  # valid 3x3 on 10x10 -> 8x8; 16 channels x multiplier 2
    sep = 4 * 4 * (9 * 32 + 32 * 12)  # stride 2 -> 4x4; depthwise + pointwise
    assert macs.count_macs(m) == grouped + dw + sep


def test_conv1d_transpose_and_dense_on_any_rank():
    inputs = keras.Input((20, 4))
    x = layers.Conv1D(6, 5, padding="valid", name="c1d")(inputs)  # -> 16 x 6
    x = layers.Dense(3, name="per_step")(x)  # a Dense on (16, 6): 16 positions
    m1 = _model(inputs, x)
    assert macs.count_macs(m1) == 16 * 5 * 4 * 6 + 16 * 6 * 3
    img = keras.Input((4, 4, 5))
    up = layers.Conv2DTranspose(7, 3, strides=2, padding="same", name="up")(img)
    m2 = _model(img, up)
    assert macs.count_macs(m2) == 4 * 4 * 9 * 5 * 7  # every input value through the kernel


def test_nested_model_counts_once_per_call():
    inner_in = keras.Input((6, 6, 2))
    inner = keras.Model(inner_in, layers.Conv2D(4, 1, name="pw")(inner_in), name="inner")
    outer_in = keras.Input((6, 6, 2))
    a, b = inner(outer_in), inner(outer_in)
    x = layers.Add()([a, b])
    x = layers.GlobalAveragePooling2D()(x)
    m = _model(outer_in, layers.Dense(2)(x))
    assert macs.count_macs(inner) == 36 * 2 * 4
    assert macs.count_macs(m) == 2 * 36 * 2 * 4 + 4 * 2


def test_known_models():
    assert (
        macs.count_macs(architectures.improved_cnn())
        == (32 * 32 * 9 * 3 * 32 + 16 * 16 * 9 * (32 * 64 + 64 * 64) + 8 * 8 * 9 * 64 * 128)
        + 128 * 128
        + 128 * 10
    )


def test_unbuilt_or_variable_size_models_are_refused_clearly():
    with pytest.raises(ValueError, match="no shape yet"):
        macs.count_macs(keras.Sequential([layers.Dense(4)]))
    inputs = keras.Input((None, None, 3))
    with pytest.raises(ValueError, match="variable size"):
        macs.count_macs(_model(inputs, layers.Conv2D(2, 3)(inputs)))


# ---------------------------------------------------------------- peak MAC rate

AVX2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx fma avx2\ncpu MHz\t\t: 2000.000\n"
VNNI = "flags\t\t: sse2 avx avx2 fma avx512f avx512_vnni\ncpu MHz\t\t: 3000.0\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp\n"


def test_peak_avx2_without_vnni():
    peak = machine.peak_mac_rate(cpuinfo=AVX2, max_freq_khz=0)  # 0: no cpufreq, use cpu MHz
    assert peak.clock_ghz == pytest.approx(2.0) and "cpu MHz" in peak.clock_source
    assert (peak.isa, peak.vector_bits, peak.lanes, peak.fma_units) == ("AVX2+FMA", 256, 8, 2)
    assert peak.float32_per_cycle == 16
    assert peak.float32_gmacs == pytest.approx(32.0)
    assert peak.int8_dot == ()
    assert peak.int8_gmacs == pytest.approx(2 * 32.0)  # VPMADDWD: 2 MACs per int32 lane
    assert peak.int8_kernel_macs_per_lane == pytest.approx(2 / 3)  # + VPMOVSXBW, VPADDD
    assert any("assumed" in a for a in peak.assumptions)
    assert "without an 8-bit dot product" in peak.describe()


def test_peak_with_vnni_and_on_arm_with_dotprod():
    vnni = machine.peak_mac_rate(cpuinfo=VNNI, max_freq_khz=3_000_000)
    assert (vnni.isa, vnni.lanes) == ("AVX-512", 16)
    assert vnni.float32_gmacs == pytest.approx(16 * 2 * 3.0)
    assert vnni.int8_gmacs == pytest.approx(4 * vnni.float32_gmacs)
    assert vnni.int8_kernel_macs_per_lane == 4 and "avx512_vnni" in vnni.describe()
    arm = machine.peak_mac_rate(cpuinfo=ARM, max_freq_khz=2_400_000, fma_units=1)
    assert (arm.isa, arm.lanes, arm.fma_units, arm.int8_dot) == ("NEON", 4, 1, ("asimddp",))
    assert arm.float32_gmacs == pytest.approx(4 * 2.4)
    no_dot = machine.peak_mac_rate(cpuinfo="Features\t: fp asimd\n", max_freq_khz=2_400_000)
    assert no_dot.int8_kernel_macs_per_lane == pytest.approx(4 / 3)  # SMULL+SMLAL+SADALP
    assert arm.assumptions == ()  # nothing assumed: the units were given
    no_clock = machine.peak_mac_rate(cpuinfo="flags: avx2 fma", max_freq_khz=0)
    assert no_clock.clock_ghz is None and no_clock.float32_gmacs is None
    assert "clock unknown" in no_clock.describe()


def test_achieved_rate_and_share_of_peak():
    peak = machine.peak_mac_rate(cpuinfo=AVX2, max_freq_khz=2_000_000)
    rate = machine.achieved_mac_rate(16_000_000, 1.0, peak=peak)  # 16 M MACs in 1 ms
    assert rate["gmacs"] == pytest.approx(16.0)
    assert rate["share_of_peak"] == pytest.approx(0.5)
    int8 = machine.achieved_mac_rate(16_000_000, 1.0, dtype="int8", peak=peak)
    assert int8["share_of_peak"] == pytest.approx(16.0 / 64.0)
    with pytest.raises(ValueError, match="positive"):
        machine.achieved_mac_rate(1, 0.0, peak=peak)
    with pytest.raises(ValueError, match="float32.*int8"):
        machine.achieved_mac_rate(1, 1.0, dtype="int4", peak=peak)


def test_zen1_has_one_256_bit_fma_per_cycle_and_zen2_two():
    zen1 = "vendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 1\nflags\t: avx2 fma\n"
    peak = machine.peak_mac_rate(cpuinfo=zen1 + "cpu MHz\t: 1996.248\n", max_freq_khz=0)
    assert peak.fma_units == 1 and peak.float32_per_cycle == 8
    assert peak.float32_gmacs == pytest.approx(8 * 1.996248)
    assert "Zen" in peak.assumptions[0]
    zen2 = zen1.replace("model\t\t: 1", "model\t\t: 49")
    assert machine.peak_mac_rate(cpuinfo=zen2, max_freq_khz=2_000_000).fma_units == 2


def test_sgemm_rate_is_measured():
    assert machine.sgemm_gmacs(size=64, repeats=2) > 0.01


def test_tfmot_wrappers_count_as_the_layers_they_wrap():
    import tensorflow_model_optimization as tfmot

    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(h))
    plain = macs.count_macs(model)
    assert plain == 6 * 6 * 3 * 3 * 3 * 4 + 4 * 3
    assert macs.count_macs(tfmot.quantization.keras.quantize_model(model)) == plain
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    assert macs.count_macs(pruned) == plain
