"""What this machine is: CPU model and flags, int8 dot-product instructions, one core's
peak multiply-accumulate rate, and the rate a model achieved against it.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass

import numpy as np

from workbench.core import timing


def hardware() -> dict[str, object]:
    """What ran the benchmark: CPU model, cores, RAM, OS, Python, and GPUs if TensorFlow sees any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, object] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    try:
        import psutil

        info["ram_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["cpu_affinity"] = len(psutil.Process().cpu_affinity())
    except Exception:  # noqa: BLE001 - psutil is optional here
        pass

    if "tensorflow" in sys.modules:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info


INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def int8_dot_product_flags() -> list[str]:
    """CPU flags for 8-bit dot-product instructions (x86 VNNI/AMX, Arm dotprod/i8mm) this CPU has.

    Without them, int8 kernels gain little over well-vectorised float32 (FMA) kernels.
    """
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return []
    return [flag for flag in INT8_DOT_FLAGS if flag in words]


def describe_hardware() -> str:
    """A one-line hardware disclaimer for benchmark output."""
    h = hardware()
    gpus = h.get("gpus") or []
    return (
        f"Measured on {h['cpu']} ({h['cores']} cores"
        + (f", {h['ram_gib']} GiB RAM" if "ram_gib" in h else "")
        + f"), {h['os']}, Python {h['python']}"
        + (f", GPU: {', '.join(gpus)}" if gpus else ", no GPU")
        + ". Your numbers will differ on other hardware and under other load."
    )


# ---------------------------------------------------------------- peak multiply-accumulate rate

# Multiply-accumulates per 32-bit vector lane per multiply instruction:
# - float32: one fused multiply-add (FMA) per lane.
# - int8 with an 8-bit dot-product instruction (x86 VNNI VPDPBUSD, Arm SDOT/UDOT): four
#   int8 products summed into each int32 lane, accumulation included: 4x float32.
# - int8 without one: two. x86 multiplies int16 pairs and adds neighbours into int32
#   (VPMADDWD), Arm multiplies int8 into int16 lanes (SMULL/SMLAL), so the multipliers give
#   2x float32 at most; but the kernel needs more instructions around each multiply.
INT8_MACS_PER_LANE_DOT = 4


INT8_MACS_PER_LANE_NO_DOT = 2


# MACs per 32-bit lane per vector instruction of XNNPACK's int8 GEMM inner loop (what the
# core must issue, not only multiply). With a dot product: 4 (one VPDPBUSD/SDOT per step).
# Without, on x86 (SSE4.1/AVX2/AVX-512 "c8" kernels, e.g.
# xnn_qs8_gemm_minmax_fp32_ukernel_1x8c8__avx2): widen the weights to int16 (VPMOVSXBW),
# VPMADDWD, accumulate (VPADDD): 3 instructions for 2 MACs per lane, 2/3. On Arm NEON
# ("mlal-padal" kernels): SMULL + SMLAL give 16 int8 MACs in int16, SADALP accumulates
# them into 4 int32 lanes: 3 instructions for 4 MACs per lane, 4/3. float32: 1 (one FMA).
INT8_KERNEL_MACS_PER_LANE_X86 = 2 / 3


INT8_KERNEL_MACS_PER_LANE_NEON = 4 / 3


@dataclass(frozen=True)
class PeakMacRate:
    """A CPU core's theoretical peak multiply-accumulate (MAC) rate, from its vector units.

    ``peak = lanes x MACs per lane per multiply instruction x vector units x clock``, with
    32-bit lanes (``vector_bits / 32``). One core: the workbench times edge models at 1
    thread. ``int8_kernel_macs_per_lane`` says what XNNPACK's int8 inner loop gets per
    *issued* instruction (float32: 1), which is why int8 reaches a smaller share of its
    peak than float32 without a dot-product instruction.
    """

    isa: str  # the widest vector extension found: "AVX-512", "AVX2+FMA", "AVX", "SSE", "NEON"
    vector_bits: int
    fma_units: int  # vector multiply(-add) instructions per cycle
    clock_ghz: float | None
    clock_source: str
    int8_dot: tuple[str, ...]  # 8-bit dot-product flags found (empty: none)
    int8_macs_per_lane: int  # per multiply instruction: 4 with a dot product, else 2
    int8_kernel_macs_per_lane: float  # per instruction XNNPACK issues: 4, 2/3 (x86), 4/3 (Arm)
    assumptions: tuple[str, ...]

    @property
    def lanes(self) -> int:
        return self.vector_bits // 32

    @property
    def float32_per_cycle(self) -> float:
        return float(self.lanes * self.fma_units)

    @property
    def int8_per_cycle(self) -> float:
        return float(self.lanes * self.int8_macs_per_lane * self.fma_units)

    @property
    def float32_gmacs(self) -> float | None:
        """Peak float32 MACs per second of one core, in billions (None: clock unknown)."""
        return None if self.clock_ghz is None else self.float32_per_cycle * self.clock_ghz

    @property
    def int8_gmacs(self) -> float | None:
        return None if self.clock_ghz is None else self.int8_per_cycle * self.clock_ghz

    def gmacs(self, dtype: str) -> float | None:
        if dtype not in ("float32", "int8"):
            raise ValueError(f"dtype must be 'float32' or 'int8', not {dtype!r}")
        return self.float32_gmacs if dtype == "float32" else self.int8_gmacs

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(
            float32_per_cycle=self.float32_per_cycle,
            int8_per_cycle=self.int8_per_cycle,
            float32_gmacs=self.float32_gmacs,
            int8_gmacs=self.int8_gmacs,
        )
        return d

    def describe(self) -> str:
        clock = f"{self.clock_ghz:.2f} GHz ({self.clock_source})" if self.clock_ghz else "unknown"
        rates = (
            f"{self.float32_gmacs:.1f} G float32 MAC/s, {self.int8_gmacs:.1f} G int8 MAC/s"
            if self.clock_ghz
            else "no rate (clock unknown)"
        )
        if self.int8_dot:
            int8 = f"int8 with {', '.join(self.int8_dot)}: 4 MACs per lane in one instruction"
            if "amx_int8" in self.int8_dot:
                int8 += (
                    " (AMX's tile unit is not counted: a kernel that uses it can pass this peak)"
                )
        else:
            int8 = (
                "int8 without an 8-bit dot product: 2 MACs per lane per multiply, but "
                f"{self.int8_kernel_macs_per_lane:.2g} per instruction XNNPACK issues "
                "(float32: 1)"
            )
        return (
            f"Peak per core: {self.isa} ({self.vector_bits}-bit, {self.lanes} float32 lanes) x "
            f"{self.fma_units} FMA unit(s) x {clock} = {rates}; {int8}."
        )


def peak_mac_rate(
    *,
    cpuinfo: str | None = None,
    max_freq_khz: float | None = None,
    fma_units: int | None = None,
) -> PeakMacRate:
    """This CPU's theoretical peak MAC rate per core for float32 and int8.

    Read from ``/proc/cpuinfo`` (vector extensions from ``flags``/``Features``; ``cpu
    MHz``) and ``/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq`` (preferred: the
    highest clock the core may run at). Arguments override what is read (for tests):
    ``max_freq_khz=0`` means "no cpufreq maximum", so ``cpu MHz`` is used.

    Assumptions, returned in :attr:`PeakMacRate.assumptions`:

    - two vector FMA units per core on x86 with FMA (every Intel core since Haswell, AMD
      since Zen 2; some AVX-512 parts have one, Atom-class cores fewer) and on Arm
      (Cortex-A76 and later big cores); one without FMA (a separate multiplier and adder
      pair up). The hardware does not report this; pass ``fma_units`` when you know
      better. AMD Zen/Zen+ (family 23, model below 0x30) is recognised: its two FMA pipes
      are 128 bits wide, one 256-bit FMA per cycle. A hypervisor may show a generic model
      (QEMU's "AMD EPYC" is family 23 model 1) whatever the host: compare with
      :func:`sgemm_gmacs`, what a tuned float32 kernel really sustains here.
    - a virtual machine often shows its host's nominal clock as ``cpu MHz`` and no
      cpufreq folder; the core may then run faster (turbo), and a measured rate can
      exceed the "peak".
    """
    text = cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo")
    words = set(_cpuinfo_field(text, ("flags", "Features")).split())
    assumptions = []
    isa, bits, has_fma = _vector_isa(words)
    if fma_units is None and bits == 256 and _is_zen1(text):
        fma_units = 1
        assumptions.append(
            "AMD family 23 model < 0x30 (Zen/Zen+): two 128-bit FMA pipes, so one 256-bit "
            "FMA per cycle"
        )
    elif fma_units is None:
        fma_units = 2 if has_fma else 1
        assumptions.append(
            f"{fma_units} vector {'FMA' if has_fma else 'multiply+add'} unit(s) per core "
            "(assumed; not reported by the CPU)"
        )
    dot = tuple(flag for flag in INT8_DOT_FLAGS if flag in words)
    per_lane = INT8_MACS_PER_LANE_DOT if dot else INT8_MACS_PER_LANE_NO_DOT
    if dot:
        kernel = float(INT8_MACS_PER_LANE_DOT)
    else:
        kernel = INT8_KERNEL_MACS_PER_LANE_NEON if isa == "NEON" else INT8_KERNEL_MACS_PER_LANE_X86
    clock, source = _clock_ghz(text, max_freq_khz)
    if source.startswith("cpu MHz"):
        assumptions.append(
            "clock from 'cpu MHz' (no cpufreq maximum): under a hypervisor that is the "
            "host's nominal clock, and turbo may run faster"
        )
    return PeakMacRate(
        isa, bits, fma_units, clock, source, dot, per_lane, kernel, tuple(assumptions)
    )


def _is_zen1(text: str) -> bool:
    if _cpuinfo_field(text, ("vendor_id",)) != "AuthenticAMD":
        return False
    try:
        family = int(_cpuinfo_field(text, ("cpu family",)))
        model = int(_cpuinfo_field(text, ("model",)))
    except ValueError:
        return False
    return family == 23 and model < 0x30


def sgemm_gmacs(*, size: int = 512, repeats: int = 20) -> float:
    """Float32 MACs per second (billions) one core sustains in a tuned matrix product.

    Times a ``size`` x ``size`` float32 product with NumPy's BLAS limited to one thread
    and keeps the fastest run (the least disturbed by other processes): an empirical
    ceiling for float32 work on this core, to set beside :func:`peak_mac_rate`.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    with threadpool_limits(limits=1):
        a @ b  # warm-up: threads, caches
        best = min(timing.timed(lambda: a @ b) for _ in range(max(1, repeats)))
    return size**3 / best / 1e9


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _cpuinfo_field(text: str, names: tuple[str, ...]) -> str:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            return value.strip()
    return ""


def _vector_isa(words: set[str]) -> tuple[str, int, bool]:
    """(name, vector bits, has FMA) of the widest float vector extension in the flags."""
    if "avx512f" in words:
        return "AVX-512", 512, True
    if "avx2" in words and "fma" in words:
        return "AVX2+FMA", 256, True
    if "avx" in words:
        return "AVX", 256, "fma" in words
    if "asimd" in words or "neon" in words:  # Arm: 128-bit NEON, FMLA since ARMv8
        return "NEON", 128, "asimd" in words or "vfpv4" in words
    if "sse" in words or "sse2" in words:
        return "SSE", 128, False
    return "scalar", 32, False


def _clock_ghz(text: str, max_freq_khz: float | None) -> tuple[float | None, str]:
    if max_freq_khz is None:
        raw = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
        max_freq_khz = float(raw) if raw else None
        source = "cpufreq cpuinfo_max_freq"
    else:
        source = "given maximum frequency"
    if max_freq_khz:
        return max_freq_khz / 1e6, source
    mhz = _cpuinfo_field(text, ("cpu MHz",))
    try:
        return float(mhz) / 1e3, "cpu MHz in /proc/cpuinfo"
    except ValueError:
        return None, "unknown"


def achieved_mac_rate(
    macs: int, p50_ms: float, *, dtype: str = "float32", peak: PeakMacRate | None = None
) -> dict[str, float | None]:
    """A model's achieved MAC rate (MACs / p50 latency) and its share of one core's peak.

    Args:
        macs: multiply-accumulates per inference (:func:`workbench.models.macs.count_macs`).
        p50_ms: median single-input latency at 1 thread.
        dtype: ``float32`` or ``int8`` (which peak to compare with).
        peak: from :func:`peak_mac_rate` (read here when None).

    Returns:
        ``{"gmacs": achieved G MAC/s, "peak_gmacs": ..., "share_of_peak": 0..1 (or None)}``.
        The latency includes work that is not MACs (pooling, activations, the interpreter's
        own overhead), so small models reach a smaller share.
    """
    if p50_ms <= 0:
        raise ValueError(f"p50_ms must be positive, not {p50_ms}")
    peak = peak or peak_mac_rate()
    achieved = macs / (p50_ms * 1e-3) / 1e9
    top = peak.gmacs(dtype)
    return {
        "gmacs": achieved,
        "peak_gmacs": top,
        "share_of_peak": achieved / top if top else None,
    }


# ===================================================================== the machine


def machine_id() -> str:
    """What "this machine" means for recorded runs: CPU model, logical cores, usable cores."""
    h = hardware()
    return f"{h['cpu']} | {h['cores']} cores | affinity {h.get('cpu_affinity', '?')}"


def accelerator() -> str | None:
    """The GPU TensorFlow would use here, in words, or None (then the CPU does the work)."""
    from workbench.core import quiet

    tf = quiet.import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0]) or {}
    name = details.get("device_name", gpus[0].name)
    return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({name})"
