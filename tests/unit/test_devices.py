"""Edge device classes: the catalog's derived peaks, latency estimates, the memory check, the
recorded results, the device-side runner and the SSH command lines (no SSH server here: see
tests/test_devices_ssh.py)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.cli import main
from workbench.core import machine, timing
from workbench.edge import device_runner, devices, remote, runtime

AVX2 = machine.peak_mac_rate(cpuinfo="flags: avx2 fma", max_freq_khz=2_000_000)  # 32 / 64 G


def variant(name="a", *, macs=1_000_000, fmt="float32", p50_ms=0.1, weights=10_000, acts=5_000):
    return devices.EdgeVariant(name, macs, fmt, p50_ms, weights, acts)


@pytest.fixture(scope="module")
def catalog():
    return {d.id: d for d in devices.load_catalog()}


@pytest.fixture(scope="module")
def tflite(tmp_path_factory):
    """A float32 and an int8 TFLite model: 32x32x3 input, 8-channel 'same' conv, pool, dense."""
    import tf_keras as keras

    from workbench.edge import convert

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(4),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    x = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    folder = tmp_path_factory.mktemp("tflite")
    out = {}
    for fmt in ("float32", "int8"):
        blob = convert.to_tflite(
            model, fmt, x_calibration=x, calibration_samples=32, input_scale=1 / 255
        )
        out[fmt] = folder / f"{fmt}.tflite"
        out[fmt].write_bytes(blob)
    return out


# ------------------------------------------------------------------ the catalog


def test_the_catalog_has_the_classes_the_issue_names_each_figure_sourced(catalog):
    cpus = {d.cpu.split(" (")[0] for d in catalog.values()}
    assert {"Arm Cortex-A72", "Arm Cortex-A76", "Arm Cortex-A57", "Arm Cortex-M7"} <= cpus
    assert cpus & {"Arm Cortex-X1", "Arm Cortex-X3", "Arm Cortex-A78"}  # a phone's big core
    for d in catalog.values():
        assert d.entry["clock_source"] and d.memory["source"], d.id
        assert d.float32["source"] and d.int8["source"], d.id
        assert "x" in d.float32["derivation"] and "GHz" in d.int8["derivation"], d.id
    mcu = catalog["mcu-cortex-m7"]
    assert mcu.flash_bytes == 2 * 2**20 and mcu.ram_bytes >= 2**20  # flash and SRAM apart
    assert catalog["raspberry-pi-4"].flash_bytes is None


def test_int8_peaks_follow_the_dot_product(catalog):
    """SDOT (Armv8.2: A76, A78, X1): 4 int8 MACs per 32-bit lane; without it (A72, A57) 2."""
    for d in catalog.values():
        ratio = d.int8["gmacs_per_core"] / d.float32["gmacs_per_core"]
        dot = "Armv8.2" in d.cpu
        if d.vector_bits == 128:  # NEON: int8 on the same pipes with a dot product
            assert d.int8["macs_per_lane"] == (4 if dot else 2), d.id
        assert ratio == pytest.approx(4 if dot else 2), d.id
    assert catalog["raspberry-pi-5"].peak_gmacs("float32") == pytest.approx(4 * 2 * 2.4)


def test_a_figure_that_disagrees_with_its_derivation_is_refused(tmp_path):
    doc = json.loads(devices.CATALOG.read_text())
    doc["devices"][0]["float32"]["gmacs_per_core"] = 99.0
    bad = tmp_path / "devices.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(devices.CatalogError, match=r"raspberry-pi-4.*float32\.gmacs_per_core"):
        devices.load_catalog(bad)
    doc = json.loads(devices.CATALOG.read_text())
    del doc["devices"][1]["int8"]["source"]
    bad.write_text(json.dumps(doc))
    with pytest.raises(devices.CatalogError, match=r"raspberry-pi-5.*int8\.'source'"):
        devices.load_catalog(bad)


# ------------------------------------------------------------------ estimates


def test_estimated_time_scales_with_macs_and_efficiency_and_uses_the_int8_peak(catalog):
    pi4 = catalog["raspberry-pi-4"]
    one = devices.estimate_ms(1_000_000, device=pi4, kernels="float32", efficiency=0.5)
    assert one == pytest.approx(1_000_000 / (7.2e9 * 0.5) * 1e3)
    assert devices.estimate_ms(
        2_000_000, device=pi4, kernels="float32", efficiency=0.5
    ) == pytest.approx(2 * one)
    assert devices.estimate_ms(
        1_000_000, device=pi4, kernels="float32", efficiency=0.25
    ) == pytest.approx(2 * one)
    int8 = devices.estimate_ms(1_000_000, device=pi4, kernels="int8", efficiency=0.5)
    assert int8 == pytest.approx(one * 7.2 / 14.4)
    with pytest.raises(ValueError, match="efficiency"):
        devices.estimate_ms(1, device=pi4, kernels="float32", efficiency=0)


def test_estimate_applies_this_cpus_efficiency_per_format(catalog):
    rows = devices.estimate(
        [
            variant("f", macs=1_000_000, p50_ms=0.1),
            variant("f2", macs=2_000_000, p50_ms=0.2),  # twice the work, twice the time here
            variant("q", fmt="int8"),
            variant("dr", fmt="dynamic_range"),
            variant("h", fmt="float16"),
            variant("nomacs", macs=None),
        ],
        devices=[catalog["raspberry-pi-4"], catalog["mcu-cortex-m7"]],
        peak=AVX2,
    )
    got = {(r["device"], r["variant"]): r for r in rows}
    assert {r["source"] for r in rows} == {"estimated"} and len(rows) == 12
    f = got["raspberry-pi-4", "f"]
    assert f["efficiency"] == pytest.approx(10 / 32)  # 1 M MACs in 0.1 ms = 10 G of 32 G
    assert f["p50_ms"] == pytest.approx(0.1 * 32 / 7.2)  # the same share of the Pi's peak
    assert got["raspberry-pi-4", "f2"]["p50_ms"] == pytest.approx(2 * f["p50_ms"])
    assert got["raspberry-pi-4", "q"]["p50_ms"] == pytest.approx(0.1 * 64 / 14.4)
    assert got["raspberry-pi-4", "dr"]["kernels"] == "int8"
    assert got["raspberry-pi-4", "h"]["p50_ms"] == pytest.approx(f["p50_ms"])  # float32 kernels
    assert got["mcu-cortex-m7", "q"]["p50_ms"] == pytest.approx(0.1 * 64 / 0.96)
    mcu_dr = got["mcu-cortex-m7", "dr"]
    assert mcu_dr["p50_ms"] is None and "does not run dynamic_range" in mcu_dr["note"]
    assert got["raspberry-pi-4", "nomacs"]["p50_ms"] is None
    assert "no MAC count" in got["raspberry-pi-4", "nomacs"]["note"]


def test_format_of_reads_the_recipe_then_the_input_dtype():
    assert devices.format_of("slim(fraction=35%) -> TFLite int8") == "int8"
    assert devices.format_of("TFLite dynamic_range", "float32") == "dynamic_range"
    assert devices.format_of(None, "int8") == "int8"
    assert devices.format_of("something else", "float32") == "float32"


# ------------------------------------------------------------------ memory


def test_activation_memory_of_a_real_model(tflite):
    fp = devices.activation_memory(tflite["float32"])
    # the conv's input (32x32x3) and output (32x32x8) float32 tensors, alive together
    assert fp.peak_bytes == fp.largest_op_bytes == 4 * (32 * 32 * 3 + 32 * 32 * 8)
    assert fp.busiest_op.startswith("CONV_2D")
    # + pool (8x8x8), flatten (512), dense and softmax outputs (10 each), without reuse
    assert fp.total_bytes == fp.peak_bytes + 4 * (512 + 512 + 10 + 10)
    q = devices.activation_memory(tflite["int8"].read_bytes())
    assert q.peak_bytes == 32 * 32 * 3 + 32 * 32 * 8  # one byte per element
    with pytest.raises(ValueError, match="not a TFLite model"):
        devices.activation_memory(b"PK\x03\x04 not a model")


def test_memory_check_on_a_microcontroller_and_a_board(catalog):
    mcu, pi4 = catalog["mcu-cortex-m7"], catalog["raspberry-pi-4"]
    fits, why = devices.memory_fit(mcu, weight_bytes=3 * 2**20, activation_bytes=1000)
    assert fits is False and "flash" in why
    fits, why = devices.memory_fit(mcu, weight_bytes=100_000, activation_bytes=600 * 1024)
    assert fits is False and "contiguous SRAM" in why and "600 KiB" in why
    fits, why = devices.memory_fit(mcu, weight_bytes=1_900_000, activation_bytes=400 * 1024)
    assert fits is True and "flash" in why
    assert devices.memory_fit(pi4, weight_bytes=3 * 2**20, activation_bytes=600 * 1024)[0]
    fits, why = devices.memory_fit(pi4, weight_bytes=2**29, activation_bytes=2**29 + 1)
    assert fits is False and "RAM" in why
    assert devices.memory_fit(pi4, weight_bytes=1, activation_bytes=None)[0] is None
    rows = devices.estimate([variant("big", weights=3 * 2**20)], devices=[mcu, pi4], peak=AVX2)
    assert [(r["device"], r["fits_memory"]) for r in rows] == [
        ("mcu-cortex-m7", False),
        ("raspberry-pi-4", True),
    ]


def test_variants_from_the_manifest(tflite, tmp_path):
    for path in tflite.values():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    entries = [
        {"variant": "float32", "file": "float32.tflite", "recipe": "TFLite float32",
         "p50_ms": 0.2, "macs": 300_000, "input_dtype": "float32"},
        {"variant": "int8", "file": "int8.tflite", "recipe": "TFLite int8", "p50_ms": 0.1,
         "macs": 300_000, "input_dtype": "int8"},
    ]  # fmt: skip
    runtime.write_manifest(tmp_path, entries, default="int8")
    got = {v.variant: v for v in devices.variants_from_manifest(tmp_path)}
    assert got["int8"].kernels == "int8" and got["float32"].kernels == "float32"
    assert got["int8"].weight_bytes == tflite["int8"].stat().st_size
    assert got["int8"].activation_bytes == 32 * 32 * 11
    (tmp_path / "int8.tflite").unlink()
    with pytest.raises(FileNotFoundError, match="int8.tflite"):
        devices.variants_from_manifest(tmp_path)


# ------------------------------------------------------------------ recorded results


def test_measured_rows_merge_by_device_and_variant(tmp_path):
    path = tmp_path / "devices.json"
    assert devices.read_measured(path) == []
    devices.record_measured(
        [
            {"device": "pi", "variant": "a", "p50_ms": 1.0},
            {"device": "pi", "variant": "b", "p50_ms": 2.0},
        ],
        path,
    )
    devices.record_measured([{"device": "pi", "variant": "a", "p50_ms": 3.0}], path)
    rows = {r["variant"]: r for r in devices.read_measured(path)}
    assert {k: r["p50_ms"] for k, r in rows.items()} == {"a": 3.0, "b": 2.0}
    assert {r["source"] for r in rows.values()} == {"measured"}
    devices.record_estimated([{"device": "x", "variant": "a"}], path, hardware="here")
    assert len(devices.read_measured(path)) == 2  # estimates do not touch measurements
    path.write_text("{not json")
    with pytest.raises(devices.ResultsError, match="not valid JSON"):
        devices.record_measured([{"device": "pi", "variant": "a", "p50_ms": 1.0}], path)
    assert path.read_text() == "{not json"  # nothing lost


def test_the_device_table_prefers_measurements(catalog):
    measured = [
        {"device": "my-pi", "device_class": "raspberry-pi-4", "device_name": "Raspberry Pi 4 "
         "Model B Rev 1.4", "variant": "a", "p50_ms": 9.0, "p95_ms": 9.5},
        {"device": "bench-board", "device_class": None, "variant": "a", "p50_ms": 4.0},
    ]  # fmt: skip
    table = devices.device_table(
        [variant("a")],
        measured=measured,
        devices=[catalog["raspberry-pi-4"], catalog["raspberry-pi-5"]],
        peak=AVX2,
    )
    got = {(r["device"], r["variant"]): r for r in table}
    assert set(got) == {
        ("raspberry-pi-4", "a"),
        ("raspberry-pi-5", "a"),
        ("bench-board", "a"),
    }
    assert got["raspberry-pi-4", "a"]["source"] == "measured"
    assert got["raspberry-pi-4", "a"]["p50_ms"] == 9.0
    assert got["raspberry-pi-5", "a"]["source"] == "estimated"
    assert got["bench-board", "a"]["source"] == "measured"
    keys = {"device", "device_name", "source", "variant", "p50_ms", "fits_memory", "note"}
    assert all(keys <= set(r) for r in table)
    assert got["raspberry-pi-5", "a"]["note"] == "", "an estimate made needs no excuse"


# ------------------------------------------------------------------ the device-side runner


class FakeClock:
    """perf_counter advancing 1 ms per reading, so two timers can be compared exactly."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1e-3
        return self.t


@pytest.mark.parametrize("max_seconds", [0.02, 0.0, None])  # stops early, at 5 samples, never
def test_the_runner_times_as_the_workbench_does(monkeypatch, max_seconds):
    samples = [0.5, 0.1, 0.3, 2.0, 0.2, 0.25]
    assert device_runner.summarize(samples, 7.0) == timing.summarize_ms(samples, 7.0).as_dict()
    results = []
    for measure in (
        lambda fn: timing.measure_latency(
            fn, warmup=3, repeats=50, max_seconds=max_seconds
        ).as_dict(),
        lambda fn: device_runner.measure_latency(fn, 3, 50, max_seconds),
    ):
        monkeypatch.setattr("time.perf_counter", FakeClock())
        calls = []
        results.append((measure(lambda calls=calls: calls.append(1)), len(calls)))
    assert results[0] == results[1]
    expected_n = {0.02: results[0][0]["n"], 0.0: 5, None: 50}[max_seconds]
    assert results[0][0]["n"] == expected_n and (max_seconds != 0.02 or expected_n < 50)
    defaults = remote.protocol()
    assert set(defaults) == {"warmup", "repeats", "max_seconds"}
    assert defaults["repeats"] == runtime.EdgeModel.benchmark.__kwdefaults__["repeats"]


def test_the_runner_runs_alone_and_reports_a_bad_model(tflite, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all")
    script = tmp_path / "runner.py"  # a copy outside the package: no workbench import
    script.write_text(Path(device_runner.__file__).read_text())
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            str(script),
            "--threads",
            "1",
            "--warmup",
            "2",
            "--repeats",
            "5",
            "--max-seconds",
            "10",
            str(tflite["int8"]),
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(s for s in proc.stdout.splitlines() if s.startswith(device_runner.MARKER))
    doc = json.loads(line[len(device_runner.MARKER) :])
    good, broken = doc["results"]
    assert good["n"] == 5 and good["p95_ms"] >= good["p50_ms"] > 0 and good["first_ms"] > 0
    assert good["input_dtype"] == "int8" and good["input_shape"] == [32, 32, 3]
    assert "error" in broken and broken["file"] == "bad.tflite"
    assert doc["device"]["machine"] == platform.machine()
    assert doc["protocol"] == {"warmup": 2, "repeats": 5, "max_seconds": 10.0, "threads": 1}
    with pytest.raises(SystemExit):  # the protocol comes from the caller, never a default
        device_runner.main([str(tflite["int8"]), "--threads", "1", "--repeats", "5"])


# ------------------------------------------------------------------ ssh command lines


def test_ssh_and_scp_command_lines(tmp_path):
    key = tmp_path / "id"
    key.write_text("key")
    t = remote.Target("pi@board", port=2222, identity=key, connect_timeout_s=7)
    ssh = t.ssh("true")
    assert ssh[0] == "ssh" and ssh[-3:] == ["--", "pi@board", "true"]
    for opt in ("BatchMode=yes", "ConnectTimeout=7", "StrictHostKeyChecking=accept-new"):
        assert opt in ssh
    assert ssh[ssh.index("-p") + 1] == "2222" and ssh[ssh.index("-i") + 1] == str(key)
    scp = t.scp([Path("m0.tflite")], "/tmp/workbench-bench.x")
    assert scp[scp.index("-P") + 1] == "2222" and scp[-1] == "pi@board:/tmp/workbench-bench.x/"
    assert Path(scp[-2]).is_absolute()
    no = remote.Target("pi@board", host_key_checking="no", known_hosts=tmp_path / "kh")
    assert "StrictHostKeyChecking=no" in no.ssh("x") and "-p" not in no.ssh("x")
    for bad, match in (
        (dict(host="-oProxyCommand=x"), "user@device"),
        (dict(host="pi@board", port=0), "between 1 and 65535"),
        (dict(host="pi@board", identity=tmp_path / "missing"), "no such key file"),
        (dict(host="pi@board", host_key_checking="maybe"), "choose one of"),
        (dict(host="pi@board", python=" "), "--python"),
    ):
        with pytest.raises(remote.DeviceError, match=match):
            remote.Target(**bad)


@pytest.mark.parametrize(
    "stderr, expected",
    [
        ("pi@board: Permission denied (publickey).", "refused"),
        ("Host key verification failed.", "host key"),
        ("ssh: connect to host board port 22: Connection refused", "Could not reach"),
        ("ssh: Could not resolve hostname board: Name or service not known", "Could not reach"),
        ("ssh: connect to host 10.0.0.9 port 22: Connection timed out", "Could not reach"),
        ("kex_exchange_identification: something odd", "ssh to pi@board failed"),
    ],
)
def test_ssh_failures_are_explained(stderr, expected):
    assert expected in remote.explain(remote.Target("pi@board"), stderr, "testing")


def test_models_from_files_or_the_manifest(tflite, tmp_path):
    got = remote.models_from([tflite["int8"]])
    assert got == {"int8": tflite["int8"]}
    (tmp_path / "x.tflite").write_bytes(b"nope")
    with pytest.raises(remote.DeviceError, match="not a TFLite model"):
        remote.models_from([tmp_path / "x.tflite"])
    with pytest.raises(remote.DeviceError, match="notebook 03"):
        remote.models_from(None, tmp_path)


# ------------------------------------------------------------------ the command


def test_devices_commands(tflite, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path / "reports"))
    assert main(["devices", "list"]) == 0
    out = capsys.readouterr().out
    assert all(d.id in out for d in devices.load_catalog()) and "unsure" in out
    edge = tmp_path / "edge"
    edge.mkdir()
    (edge / "int8.tflite").write_bytes(tflite["int8"].read_bytes())
    runtime.write_manifest(
        edge,
        [
            {
                "variant": "int8",
                "file": "int8.tflite",
                "recipe": "TFLite int8",
                "p50_ms": 0.05,
                "macs": 300_000,
                "input_dtype": "int8",
            }
        ],
        default="int8",
    )
    assert main(["devices", "estimate", "--edge-dir", str(edge)]) == 0
    assert "ESTIMATED" in capsys.readouterr().out
    recorded = devices.read_results(tmp_path / "reports" / "results" / "devices.json")
    assert len(recorded["estimated"]) == len(devices.load_catalog())
    assert {r["source"] for r in recorded["estimated"]} == {"estimated"}
    code = main(["devices", "bench", "--host", "pi@board", "--edge-dir", str(tmp_path / "none")])
    assert code == 2 and "notebook 03" in capsys.readouterr().err
