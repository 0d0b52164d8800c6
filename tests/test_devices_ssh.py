"""``workbench devices bench`` end to end: a private OpenSSH server on 127.0.0.1 acts as the
device (its Python is this one, which has ai-edge-litert); the models really travel by scp
and really run under the device-side runner.

Needs Debian's openssh-server (``apt-get install -y openssh-server``; .ci/run installs it).
Outside CI the tests skip, with the reason, where sshd cannot be installed or started; in CI
(``CI`` set) that is a broken set-up and fails.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.cli import main
from workbench.edge import devices, remote

pytestmark = pytest.mark.slow

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (in CI the SSH test must run: .ci/run installs openssh-server)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A private sshd on a free port: its own host key, one authorized client key, no PAM."""
    if not Path(SSHD).exists() or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        unavailable("OpenSSH server or client not installed: apt-get install -y openssh-server")
    if os.geteuid() == 0:  # sshd started by root checks its privilege-separation folder
        try:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        except OSError as err:
            unavailable(f"cannot create /run/sshd for sshd: {err}")
    root = tmp_path_factory.mktemp("sshd")
    host_key, client_key = keygen(root / "host_key"), keygen(root / "client_key")
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    log = (root / "sshd.log").open("w")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    target = remote.Target(
        host=f"{getpass.getuser()}@127.0.0.1",
        port=port,
        identity=client_key,
        python=sys.executable,
        known_hosts=root / "known_hosts",
        connect_timeout_s=5,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            ok = subprocess.run(target.ssh("true"), capture_output=True, timeout=30)
            if ok.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                unavailable(f"sshd did not start: {(root / 'sshd.log').read_text()[-600:]}")
            time.sleep(0.3)
        yield {"target": target, "root": root, "port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
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
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for fmt in ("float32", "int8"):
        blob = convert.to_tflite(
            model, fmt, x_calibration=x, calibration_samples=32, input_scale=1 / 255
        )
        out[fmt] = folder / f"{fmt}.tflite"
        out[fmt].write_bytes(blob)
    return out


def cli_args(sshd, *extra: str) -> list[str]:
    t = sshd["target"]
    return [
        "devices", "bench", "--host", t.host, "--port", str(t.port),
        "--identity", str(t.identity), "--known-hosts", str(t.known_hosts),
        "--python", sys.executable, "--connect-timeout", "5", *extra,
    ]  # fmt: skip


def test_bench_over_ssh_records_measured_rows(sshd, models, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path / "reports"))
    files = [str(models["float32"]), str(models["int8"])]
    args = cli_args(sshd, "--models", *files, "--repeats", "12", "--name", "raspberry-pi-4")
    assert main(args) == 0, capsys.readouterr().err
    assert "MEASURED" in capsys.readouterr().out
    rows = devices.read_measured(tmp_path / "reports" / "results" / "devices.json")
    assert [r["variant"] for r in rows] == ["float32", "int8"]
    for r in rows:
        assert r["source"] == "measured" and r["device"] == "raspberry-pi-4"
        assert r["device_class"] == "raspberry-pi-4"  # --name is a catalog id
        assert r["n"] == 12 and r["p95_ms"] >= r["p50_ms"] > 0 and r["first_ms"] > 0
        assert r["machine"] == os.uname().machine and r["runtime"].startswith("ai-edge-litert")
        assert r["cpu"]
    variants = [
        devices.edge_variant(models[f], variant=f, macs=300_000, p50_ms=0.05, recipe=f"TFLite {f}")
        for f in ("float32", "int8")
    ]
    table = devices.device_table(variants, measured=rows)
    got = {(r["device"], r["variant"]): r["source"] for r in table}
    assert got["raspberry-pi-4", "int8"] == "measured"
    assert got["raspberry-pi-5", "int8"] == "estimated"


def test_bench_api_with_a_real_input_cleans_up(sshd, models):
    result = remote.bench(
        sshd["target"],
        {"int8": models["int8"]},
        repeats=6,
        x_one=np.full((32, 32, 3), 128.0, dtype=np.float32),
    )
    assert not result["errors"] and result["rows"][0]["n"] == 6
    assert result["device"]["device_class"] is None  # no --name, no Raspberry Pi device tree
    assert result["rows"][0]["device"] == result["device"]["name"]
    assert not Path(result["remote_dir"]).exists()  # the device (this machine) is left clean


def test_unreachable_host_is_explained(sshd, models):
    t = sshd["target"]
    closed = remote.Target(t.host, port=free_port(), identity=t.identity, connect_timeout_s=5)
    with pytest.raises(remote.DeviceError, match="Could not reach.*SSH server"):
        remote.bench(closed, {"int8": models["int8"]}, repeats=5)


def test_refused_key_is_explained(sshd, models, tmp_path):
    t = sshd["target"]
    stranger = remote.Target(
        t.host, port=t.port, identity=keygen(tmp_path / "other"), known_hosts=t.known_hosts
    )
    with pytest.raises(remote.DeviceError, match="refused the key.*authorized_keys"):
        remote.bench(stranger, {"int8": models["int8"]}, repeats=5)


def test_unknown_host_key_is_refused_when_strict(sshd, models, tmp_path):
    t = sshd["target"]
    strict = remote.Target(
        t.host,
        port=t.port,
        identity=t.identity,
        host_key_checking="yes",
        known_hosts=tmp_path / "empty_known_hosts",
    )
    with pytest.raises(remote.DeviceError, match="host key"):
        remote.bench(strict, {"int8": models["int8"]}, repeats=5)


def test_missing_python_or_litert_says_what_to_install(sshd, models, capsys):
    int8 = str(models["int8"])
    args = cli_args(sshd, "--models", int8, "--repeats", "5")
    python = args.index("--python") + 1
    args[python] = "/nonexistent/bin/python3"
    assert main(args) == 2
    assert "No Python at '/nonexistent/bin/python3'" in capsys.readouterr().err
    args[python] = f"{sys.executable} -S"  # no site-packages: no NumPy, no LiteRT
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cannot run TFLite models" in err and "pip install ai-edge-litert" in err
