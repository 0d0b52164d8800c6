"""Measure edge models on a real device over SSH (``python -m workbench devices bench``).

:func:`bench` makes a temporary folder on the device, copies the TFLite files and the
self-contained runner (:mod:`workbench.edge.device_runner`) there with ``scp``, runs it with
the device's Python and LiteRT under the same protocol as
:meth:`workbench.edge.runtime.EdgeModel.benchmark` (its defaults are read, not copied:
:func:`protocol`), removes the folder, and returns **measured** rows that
:func:`workbench.edge.devices.record_measured` keeps in ``reports/results/devices.json``.

SSH runs non-interactively (``BatchMode=yes``: keys only, never a password prompt) with a
connect timeout and a configurable ``StrictHostKeyChecking``. Every way it commonly fails
(host unreachable, key refused, host key unknown or changed, no Python, no LiteRT on the
device) raises :class:`DeviceError` with what to do.
"""

from __future__ import annotations

import datetime
import inspect
import json
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from workbench.edge import device_runner, devices, runtime

HOST_KEY_CHECKING = ("accept-new", "yes", "no")
REMOTE_DIR = re.compile(r"^/[^\s'\"]*/workbench-bench\.[A-Za-z0-9]+$")
SSH_FAILED = 255  # ssh's own exit status (the remote command's is passed through otherwise)


class DeviceError(RuntimeError):
    """The device cannot be reached or cannot run the benchmark; the message says what to do."""


@dataclass(frozen=True)
class Target:
    """A device reachable with ``ssh``.

    Args:
        host: ``user@device`` (or a ``Host`` alias from ``~/.ssh/config``).
        port: SSH port (None: ssh's default or the alias's).
        identity: private key file (``ssh -i``); only it is offered (``IdentitiesOnly``).
        python: the device's Python command, optionally with arguments (a virtual
            environment's ``/home/pi/venv/bin/python``).
        host_key_checking: ``accept-new`` (trust a device on first contact, refuse a changed
            key), ``yes`` (only hosts already in known_hosts) or ``no``.
        known_hosts: known-hosts file to use instead of ``~/.ssh/known_hosts``.
        connect_timeout_s: seconds to wait for the TCP connection and handshake.
    """

    host: str
    port: int | None = None
    identity: Path | None = None
    python: str = "python3"
    host_key_checking: str = "accept-new"
    known_hosts: Path | None = None
    connect_timeout_s: int = 10

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-") or any(c.isspace() for c in self.host):
            raise DeviceError(
                f"--host {self.host!r}: give it as user@device, e.g. pi@192.168.1.20."
            )
        if self.port is not None and not 0 < self.port < 65536:
            raise DeviceError(f"--port {self.port}: a TCP port is between 1 and 65535.")
        if self.identity is not None and not Path(self.identity).is_file():
            raise DeviceError(
                f"--identity {self.identity}: no such key file. Create one with "
                "`ssh-keygen -t ed25519` and copy it to the device with `ssh-copy-id`."
            )
        if self.host_key_checking not in HOST_KEY_CHECKING:
            raise DeviceError(
                f"--strict-host-key-checking {self.host_key_checking!r}: choose one of "
                f"{', '.join(HOST_KEY_CHECKING)}."
            )
        if not shlex.split(self.python):
            raise DeviceError("--python is empty: give the device's Python, e.g. python3.")

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    def options(self) -> list[str]:
        """ssh/scp options: keys only, a connect timeout, the host-key policy."""
        opts = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={int(self.connect_timeout_s)}",
            "-o", f"StrictHostKeyChecking={self.host_key_checking}",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        if self.known_hosts is not None:
            opts += ["-o", f"UserKnownHostsFile={Path(self.known_hosts).resolve()}"]
        if self.identity is not None:
            opts += ["-o", "IdentitiesOnly=yes", "-i", str(Path(self.identity).resolve())]
        return opts

    def ssh(self, command: str) -> list[str]:
        """The ``ssh`` command line that runs ``command`` (a shell line) on the device."""
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", *self.options(), *port, "--", self.host, command]

    def scp(self, files: list[Path], remote_dir: str) -> list[str]:
        """The ``scp`` command line that copies ``files`` into ``remote_dir`` on the device."""
        port = ["-P", str(self.port)] if self.port else []
        local = [str(Path(f).absolute()) for f in files]  # a ':' never reads as a host
        return ["scp", "-q", *self.options(), *port, "--", *local, f"{self.host}:{remote_dir}/"]


def protocol() -> dict:
    """``warmup``, ``repeats`` and ``max_seconds`` of :meth:`EdgeModel.benchmark` (its defaults)."""
    params = inspect.signature(runtime.EdgeModel.benchmark).parameters
    return {k: params[k].default for k in ("warmup", "repeats", "max_seconds")}


def explain(target: Target, stderr: str, step: str) -> str:
    """What an ssh/scp failure means for the user, from ssh's message."""
    text = stderr.strip()
    last = text.splitlines()[-1] if text else "no message"
    low = text.lower()
    if "permission denied" in low or "too many authentication failures" in low:
        key = f"the key {target.identity}" if target.identity else "your default keys"
        return (
            f"{target.where} refused {key} while {step} ({last}). Put the public key in "
            f"~/.ssh/authorized_keys of that user on the device (`ssh-copy-id -i KEY.pub "
            f"{target.host}`) or pass --identity with the right key; password log-ins are not "
            "used (BatchMode)."
        )
    if "host key verification failed" in low or "identification has changed" in low:
        return (
            f"The host key of {target.where} could not be verified while {step} ({last}). "
            "Connect once with plain `ssh` to check and accept it, or pass "
            "--strict-host-key-checking accept-new (trust on first contact); if the key "
            "changed, find out why before removing the old one with `ssh-keygen -R HOST`."
        )
    unreachable = (
        "connection refused",
        "timed out",
        "no route to host",
        "could not resolve",
        "network is unreachable",
        "connection closed",
        "connection reset",
        "name or service",
    )
    if any(s in low for s in unreachable):
        return (
            f"Could not reach {target.where} while {step} ({last}). Is the device on and on "
            "this network, and does it run an SSH server on that port (Raspberry Pi OS: "
            "`sudo raspi-config`, Interface Options, SSH; Debian/Ubuntu: `sudo apt install "
            "openssh-server`)? Check the address and --port."
        )
    return f"ssh to {target.where} failed while {step}: {text[-800:] or 'no message'}"


def _run(target: Target, argv: list[str], *, step: str, timeout_s: float):
    """Run ssh/scp; DeviceError when it cannot start, times out or fails to connect."""
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as err:
        raise DeviceError(
            f"No '{argv[0]}' command on this machine: install the OpenSSH client "
            "(Debian/Ubuntu: `sudo apt install openssh-client`)."
        ) from err
    except subprocess.TimeoutExpired as err:
        raise DeviceError(
            f"{target.where} did not finish {step} within {timeout_s:.0f} s: the device may be "
            "unreachable, overloaded or too slow for these models; try fewer --repeats or a "
            "longer --timeout."
        ) from err
    if proc.returncode == SSH_FAILED or (argv[0] == "scp" and proc.returncode != 0):
        raise DeviceError(explain(target, proc.stderr, step))
    return proc


def models_from(
    files: list[str | Path] | None = None, edge_dir: str | Path | None = None
) -> dict[str, Path]:
    """Variant name -> TFLite file: the given files (named by their stem), else every model
    in the edge manifest (notebook 03's ``artifacts/edge``)."""
    if files:
        out = {}
        for f in map(Path, files):
            if not f.is_file():
                raise DeviceError(f"--models: no file {f}.")
            if f.read_bytes()[4:8] != b"TFL3":
                raise DeviceError(f"--models: {f} is not a TFLite model (no 'TFL3' identifier).")
            if f.stem in out:
                raise DeviceError(f"--models: two files are named {f.stem}; rename one.")
            out[f.stem] = f
        return out
    from workbench.core import paths

    folder = Path(edge_dir) if edge_dir is not None else paths.edge_dir()
    try:
        manifest = runtime.read_manifest(folder)
    except FileNotFoundError as err:
        raise DeviceError(f"{err} Or pass --models FILE.tflite ...") from err
    return {e["variant"]: folder / e["file"] for e in manifest["models"]}


def bench(
    target: Target,
    models: dict[str, Path],
    *,
    threads: int = 1,
    warmup: int | None = None,
    repeats: int | None = None,
    max_seconds: float | None = None,
    name: str | None = None,
    x_one=None,
    timeout_s: float | None = None,
) -> dict:
    """Time ``models`` (variant -> ``.tflite``) on the device; return measured rows.

    Args:
        target: the device.
        models: what to time, e.g. :func:`models_from`.
        threads: interpreter threads (1, as the workbench measures here).
        warmup, repeats, max_seconds: the protocol; None takes :func:`protocol`'s.
        name: the device's name in the rows (default: the catalog class its device-tree
            model matches, else that model, else ``hostname (machine)``).
        x_one: one input image (model units) to time; default: seeded noise of the
            input's shape (a CNN's time does not depend on the pixel values).
        timeout_s: limit for the timing run on the device (default: generous for the
            protocol and the number of models).

    Returns:
        ``{"device": what the device reported, plus name and device_class, "rows":
        measured rows, "errors": [{"variant", "error"}], "remote_dir": the folder used}``.
        Each row has ``device``, ``device_class`` (catalog id or None), ``device_name``,
        ``source`` ("measured"), ``variant``, ``file``, ``cpu``, ``machine``, ``board``,
        ``runtime``, ``threads``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``first_ms``,
        ``mean_ms``, ``min_ms``, ``n``, ``host`` and ``measured_at``.

    Raises:
        DeviceError: unreachable host, refused key, unknown host key, no Python or no
            LiteRT on the device, a missing local file.
    """
    if not models:
        raise DeviceError("No models to time: pass --models or run notebook 03 first.")
    for variant, f in models.items():
        if not Path(f).is_file():
            raise DeviceError(f"{variant}: no file {f}; run notebook 03 again or pass --models.")
    proto = {
        **protocol(),
        **{
            k: v
            for k, v in dict(warmup=warmup, repeats=repeats, max_seconds=max_seconds).items()
            if v is not None
        },
    }
    limit = timeout_s or 120 + len(models) * (2 * (proto["max_seconds"] or 60) + 60)
    setup = target.connect_timeout_s + 60
    made = _run(
        target,
        target.ssh('mktemp -d "${TMPDIR:-/tmp}/workbench-bench.XXXXXXXX"'),
        step="creating a temporary folder",
        timeout_s=setup,
    )
    remote_dir = made.stdout.strip()
    if made.returncode != 0 or not REMOTE_DIR.match(remote_dir):
        raise DeviceError(
            f"Could not create a temporary folder on {target.where} with mktemp "
            f"(status {made.returncode}): {(made.stderr or made.stdout).strip()[-400:]}"
        )
    try:
        with tempfile.TemporaryDirectory(prefix="workbench-bench-") as tmp:
            files, names = [Path(device_runner.__file__)], {}
            for i, (variant, f) in enumerate(models.items()):
                link = Path(tmp) / f"m{i}.tflite"
                link.symlink_to(Path(f).resolve())  # short, safe names on the device
                files.append(link)
                names[link.name] = variant
            if x_one is not None:
                import numpy as np

                np.save(Path(tmp) / "input.npy", np.asarray(x_one, dtype=np.float32))
                files.append(Path(tmp) / "input.npy")
            _run(
                target,
                target.scp(files, remote_dir),
                step="copying the models",
                timeout_s=setup + sum(Path(f).stat().st_size for f in files) / 2**20,
            )
        argv = [
            *shlex.split(target.python),
            f"{remote_dir}/{Path(device_runner.__file__).name}",
            "--threads", str(threads),
            "--warmup", str(proto["warmup"]),
            "--repeats", str(proto["repeats"]),
            *(["--max-seconds", str(proto["max_seconds"])] if proto["max_seconds"] else []),
            *(["--input", f"{remote_dir}/input.npy"] if x_one is not None else []),
            *[f"{remote_dir}/{n}" for n in names],
        ]  # fmt: skip
        ran = _run(
            target,
            target.ssh(shlex.join(argv)),
            step="timing the models",
            timeout_s=limit,
        )
    finally:
        try:
            _run(
                target,
                target.ssh(f"rm -rf -- {shlex.quote(remote_dir)}"),
                step="removing the temporary folder",
                timeout_s=setup,
            )
        except DeviceError:
            pass  # the result matters more than a leftover folder in the device's /tmp
    doc = _result(target, ran)
    return _rows(
        doc, names, models, proto, threads=threads, name=name, target=target, remote_dir=remote_dir
    )


def _result(target: Target, ran) -> dict:
    """The runner's JSON document, or a DeviceError that says what the device lacks."""
    line = next((s for s in ran.stdout.splitlines() if s.startswith(device_runner.MARKER)), None)
    python = target.python
    if ran.returncode in (126, 127) and line is None:
        raise DeviceError(
            f"No Python at '{python}' on {target.where} ({ran.stderr.strip()[-300:]}). Install "
            "Python 3 there (Debian/Raspberry Pi OS: `sudo apt install python3 python3-pip`) "
            "or pass --python with its path, e.g. a virtual environment's bin/python."
        )
    if line is None:
        hint = " The runner needs Python 3.6 or later." if "SyntaxError" in ran.stderr else ""
        raise DeviceError(
            f"The benchmark on {target.where} ended with status {ran.returncode} and no "
            f"result.{hint} Its error output: {ran.stderr.strip()[-800:] or 'none'}"
        )
    doc = json.loads(line[len(device_runner.MARKER) :])
    if ran.returncode == device_runner.EXIT_NO_RUNTIME:
        exe = doc.get("python_executable") or python
        raise DeviceError(
            f"{exe} on {target.where} cannot run TFLite models ({doc.get('error')}). Install "
            f"LiteRT there: `{python} -m pip install ai-edge-litert` (64-bit Linux or macOS, "
            "Python 3.9+); where it has no wheel (32-bit Raspberry Pi OS, older Python) "
            f"`{python} -m pip install tflite-runtime`. NumPy comes with either."
        )
    return doc


def _rows(doc, names, models, proto, *, threads, name, target, remote_dir) -> dict:
    info = doc["device"]
    catalog = devices.load_catalog()
    ids = {d.id for d in catalog}
    matched = devices.match_device_tree(info.get("board"), catalog)
    device = name or matched or info.get("board") or f"{info['hostname']} ({info['machine']})"
    device_class = device if device in ids else matched
    info.update(name=device, device_class=device_class)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    rows, errors = [], []
    for r in doc["results"]:
        variant = names[r["file"]]
        if "error" in r:
            errors.append({"variant": variant, "error": r["error"]})
            continue
        rows.append(
            {
                "device": device,
                "device_class": device_class,
                "device_name": info.get("board") or device,
                "source": "measured",
                "variant": variant,
                "file": str(models[variant]),
                "cpu": info.get("cpu"),
                "machine": info.get("machine"),
                "board": info.get("board"),
                "runtime": info.get("runtime"),
                "threads": threads,
                **{k: r[k] for k in ("p50_ms", "p95_ms", "p99_ms", "first_ms", "mean_ms")},
                **{k: r[k] for k in ("min_ms", "n")},
                "warmup": proto["warmup"],
                "host": target.host,
                "measured_at": now,
            }
        )
    return {"device": info, "rows": rows, "errors": errors, "remote_dir": remote_dir}
