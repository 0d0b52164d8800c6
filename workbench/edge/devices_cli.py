"""``python -m workbench devices {list,estimate,bench}``: the device catalog, latency estimated
per device class, and latency measured on a real device over SSH."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.edge import devices, remote

EXAMPLES = """examples:
  workbench devices list                              the catalog, with each figure's source
  workbench devices estimate                          notebook 03's edge models on every class
  workbench devices bench --host pi@192.168.1.20      measure them on a Raspberry Pi
  workbench devices bench --host pi@raspberrypi.local --name raspberry-pi-5 \\
      --identity ~/.ssh/id_ed25519 --python /home/pi/venv/bin/python --repeats 100"""
LIST_EXAMPLES = """examples:
  workbench devices list
  workbench devices list --json > catalog.json"""
ESTIMATE_EXAMPLES = """examples:
  workbench devices estimate                      the models of artifacts/edge (notebook 03)
  workbench devices estimate --edge-dir reports/assess-mine/edge --json"""
BENCH_EXAMPLES = """examples:
  workbench devices bench --host pi@192.168.1.20
  workbench devices bench --host pi@raspberrypi.local --name raspberry-pi-5 \\
      --identity ~/.ssh/id_ed25519 --python /home/pi/venv/bin/python --repeats 100
  workbench devices bench --host me@phone-or-board --port 8022 --models a.tflite b.tflite"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``devices`` sub-commands and their flags."""
    sub = parser.add_subparsers(dest="devices_command", required=True)

    show = sub.add_parser(
        "list",
        help="print the device catalog: peak MAC rates, memory, what is unsure",
        description="Print the edge device classes of the catalog shipped with the workbench "
        "(workbench/edge/devices.json): clock, peak float32 and int8 MAC rates per core and "
        "for the cores a model would use, RAM and flash, and the figures marked unsure. "
        "The file names the source of every figure and writes out each derivation.",
        epilog=LIST_EXAMPLES,
    )
    show.add_argument("--json", action="store_true", help="print the rows as JSON")

    est = sub.add_parser(
        "estimate",
        help="ESTIMATE each edge model's latency and memory fit on every device class",
        description="Scale each edge model's latency measured on this CPU to every device "
        "class in the catalog (same share of the peak MAC rate), check it fits the class's "
        "memory, print the table and record it in reports/results/devices.json.",
        epilog=ESTIMATE_EXAMPLES,
    )
    est.add_argument(
        "--edge-dir",
        default=None,
        metavar="DIR",
        help="folder with notebook 03's manifest.json (default: artifacts/edge)",
    )
    est.add_argument("--json", action="store_true", help="print the rows as JSON")

    bench = sub.add_parser(
        "bench",
        help="MEASURE the edge models on a real device over SSH (Python + ai-edge-litert there)",
        description="Copy TFLite files to a device over SSH, time them there with the "
        "workbench's protocol (first call apart, warm-up, p50/p95) and record the measured "
        "rows in reports/results/devices.json. The device needs an SSH server that accepts "
        "your key, Python 3 and `pip install ai-edge-litert` (or tflite-runtime).",
        epilog=BENCH_EXAMPLES,
    )
    bench.add_argument("--host", required=True, help="user@device, e.g. pi@192.168.1.20")
    bench.add_argument(
        "--port", type=int, default=None, metavar="N", help="SSH port (default: ssh's, 22)"
    )
    bench.add_argument(
        "--identity", type=Path, default=None, metavar="FILE", help="private key file (ssh -i)"
    )
    bench.add_argument(
        "--python",
        default="python3",
        help="Python on the device, e.g. a virtual environment's bin/python",
    )
    bench.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="FILE",
        help=".tflite files (default: the edge manifest's)",
    )
    bench.add_argument(
        "--edge-dir",
        default=None,
        metavar="DIR",
        help="folder with notebook 03's manifest.json (default: artifacts/edge)",
    )
    proto = remote.protocol()
    bench.add_argument(
        "--repeats",
        type=int,
        default=None,
        metavar="N",
        help=f"timed runs per model ({proto['repeats']})",
    )
    bench.add_argument(
        "--warmup",
        type=int,
        default=None,
        metavar="N",
        help=f"untimed runs first ({proto['warmup']})",
    )
    bench.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="interpreter threads, as the workbench measures here",
    )
    bench.add_argument(
        "--name",
        default=None,
        metavar="NAME",
        help="device name in the results; a catalog id (see `devices "
        "list`) puts the measurement in place of that class's estimate",
    )
    bench.add_argument(
        "--strict-host-key-checking",
        default="accept-new",
        choices=remote.HOST_KEY_CHECKING,
        help="ssh's StrictHostKeyChecking (accept-new: trust a new device, refuse a changed key)",
    )
    bench.add_argument(
        "--known-hosts",
        type=Path,
        default=None,
        metavar="FILE",
        help="known_hosts file (default: ~/.ssh/known_hosts)",
    )
    bench.add_argument(
        "--connect-timeout",
        type=int,
        default=10,
        metavar="S",
        help="seconds to wait for the SSH connection",
    )
    bench.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds for the timing run on the device",
    )


def run(args: argparse.Namespace) -> int:
    """Run a ``devices`` sub-command; a user mistake prints its message and returns 2."""
    try:
        if args.devices_command == "list":
            return _list(args)
        if args.devices_command == "estimate":
            return _estimate(args)
        return _bench(args)
    except (
        remote.DeviceError,
        devices.CatalogError,
        devices.ResultsError,
        FileNotFoundError,
    ) as err:
        print(f"workbench devices {args.devices_command}: {err}", file=sys.stderr)
        return 2


def _list(args) -> int:
    rows = devices.catalog_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"Device classes (peaks derived from clock x pipes x lanes; sources: {devices.CATALOG})")
    for r in rows:
        flash = f", flash {r['flash_bytes'] / 2**20:.0f} MiB" if r["flash_bytes"] else ""
        print(
            f"- {r['device']}: {r['name']}, {r['cpu']} @ {r['clock_ghz']} GHz\n"
            f"    peak per core: {r['float32_gmacs_per_core']:g} G float32 MAC/s, "
            f"{r['int8_gmacs_per_core']:g} G int8 MAC/s; x {r['cores_for_model']} core(s): "
            f"{r['float32_gmacs_all']:g} / {r['int8_gmacs_all']:g}\n"
            f"    memory: RAM {_size(r['ram_bytes'])}{flash}; runs {', '.join(r['formats'])}"
        )
        for note in r["unsure"]:
            print(f"    unsure: {note}")
    return 0


def _size(n: int) -> str:
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**10:g} KiB"


def _estimate(args) -> int:
    variants = devices.variants_from_manifest(args.edge_dir)
    rows = devices.estimate(variants)
    devices.record_estimated(rows)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("ESTIMATED latency (1 thread) from this CPU's efficiency; not measured on the devices.")
    print(f"{'device':<18} {'variant':<28} {'format':<13} {'p50 ms':>9}  fits memory")
    for r in rows:
        ms = f"{r['p50_ms']:.3f}" if r["p50_ms"] is not None else "-"
        fits = {True: "yes", False: "NO", None: "unknown"}[r["fits_memory"]]
        note = f"; {r['note']}" if r["note"] else ""
        print(
            f"{r['device']:<18} {r['variant']:<28} {r['format']:<13} {ms:>9}  "
            f"{fits}: {r['memory_why']}{note}"
        )
    print(f"Recorded in {devices.results_path()}")
    return 0


def _bench(args) -> int:
    target = remote.Target(
        host=args.host,
        port=args.port,
        identity=args.identity,
        python=args.python,
        host_key_checking=args.strict_host_key_checking,
        known_hosts=args.known_hosts,
        connect_timeout_s=args.connect_timeout,
    )
    models = remote.models_from(args.models, args.edge_dir)
    result = remote.bench(
        target,
        models,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        name=args.name,
        timeout_s=args.timeout,
    )
    info = result["device"]
    print(
        f"MEASURED on {info['name']} ({info.get('board') or info['machine']}, {info['cpu']}, "
        f"{info['cores']} cores, Python {info['python']}, {info.get('runtime')}), "
        f"{args.threads} thread(s):"
    )
    for r in result["rows"]:
        print(
            f"  {r['variant']:<28} p50 {r['p50_ms']:.3f} ms, p95 {r['p95_ms']:.3f} ms, "
            f"first {r['first_ms']:.3f} ms (n={r['n']})"
        )
    for e in result["errors"]:
        print(f"  {e['variant']:<28} FAILED: {e['error']}", file=sys.stderr)
    if result["rows"]:
        print(f"Recorded in {devices.record_measured(result['rows'])}")
    return 1 if result["errors"] else 0
