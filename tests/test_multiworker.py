"""Multi-worker training for real: two worker processes on 127.0.0.1, each with its own TF_CONFIG.

What the README's cluster section promises, checked end to end with ``train.fit`` and the
export functions under ``MultiWorkerMirroredStrategy``:

- both workers finish one short run with identical weights (gradients are all-reduced);
- only the chief writes checkpoints, ``state.json``, TensorBoard logs and exports; the other
  worker writes into temporary folders and removes them. To see that, each worker runs in
  its own folder standing for its own machine's disk, with the same relative paths;
- a second run resumes from the chief's checkpoint on every worker (here the chief's
  checkpoint folder is shared with the other worker, as cluster storage would be).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
WORKER_DEADLINE_S = 240  # one worker process: its TensorFlow import and a short run

WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import numpy as np

    from workbench.cloud import export, train

    out = Path(sys.argv[1])
    epochs = int(sys.argv[2])
    rng = np.random.default_rng(0)  # the same data on every worker
    x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 64)
    result = train.fit(
        "student_cnn", x, y, x_val=x[:16], y_val=y[:16], epochs=epochs, batch_size=8,
        checkpoint_dir=Path("ckpt"), tensorboard_dir=Path("tb"), progress=False,
    )
    export.export_saved_model(result.model, base="serving", name="m", version=1)
    export.save_keras(result.model, Path("cloud") / "m.keras")
    export.write_metadata(Path("cloud") / "m.json", {"epochs": epochs})
    np.savez(out / "weights.npz", *result.model.get_weights())
    (out / "result.json").write_text(json.dumps({
        "resumed_from": result.resumed_from, "epochs_run": result.epochs_run,
        "strategy": result.strategy, "chief": export.is_chief(result.model),
    }))
    """
)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _run_cluster(root: Path, epochs: int, run: str) -> list[dict]:
    """Start both workers, wait for both; return what each reported."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        disk, out, tmp = root / f"disk{index}", root / run / f"out{index}", root / f"tmp{index}"
        for folder in (disk, out, tmp):
            folder.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
            "TMPDIR": str(tmp),  # where a worker's temporary folders go
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(out), str(epochs)],
                cwd=disk,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for index, p in enumerate(procs):
            try:
                logs.append(p.communicate(timeout=WORKER_DEADLINE_S)[0])
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                pytest.fail(
                    f"worker {index} of {run!r} did not finish within {WORKER_DEADLINE_S} s "
                    f"(a worker waits for the other at every step). Its output:\n"
                    f"{p.communicate()[0][-4000:]}",
                    pytrace=False,
                )
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for index, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"worker {index} failed:\n{log[-4000:]}"
    return [json.loads((root / run / f"out{i}" / "result.json").read_text()) for i in range(2)]


def _weights(root: Path, run: str, index: int) -> list[np.ndarray]:
    with np.load(root / run / f"out{index}" / "weights.npz") as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_two_workers_train_alike_only_the_chief_writes_and_both_resume(tmp_path):
    first = _run_cluster(tmp_path, epochs=1, run="first")
    assert [r["chief"] for r in first] == [True, False]
    assert all("MultiWorkerMirroredStrategy with 2 replica(s)" in r["strategy"] for r in first)
    assert [r["resumed_from"] for r in first] == [0, 0]
    w0, w1 = _weights(tmp_path, "first", 0), _weights(tmp_path, "first", 1)
    assert all(np.array_equal(a, b) for a, b in zip(w0, w1, strict=True))

    chief, worker = tmp_path / "disk0", tmp_path / "disk1"
    chief_files = _tree(chief)
    assert {"ckpt/state.json", "ckpt/checkpoint", "serving/m/1/saved_model.pb"} <= chief_files
    assert {"cloud/m.keras", "cloud/m.json"} <= chief_files
    assert any(f.startswith("ckpt/ckpt-1.") for f in chief_files)
    assert any(f.startswith("tb/") for f in chief_files)
    assert not [f for f in chief_files if "workertemp" in f or ".tmp-" in f], chief_files
    # The other worker wrote nothing on its own disk, and removed its temporary folders.
    assert _tree(worker) == set(), _tree(worker)
    assert _tree(tmp_path / "tmp1") == set(), _tree(tmp_path / "tmp1")
    state = json.loads((chief / "ckpt" / "state.json").read_text())
    assert state["epoch"] == 1

    # Resume: the chief's checkpoint folder is now storage both workers see.
    (worker / "ckpt").symlink_to(chief / "ckpt", target_is_directory=True)
    second = _run_cluster(tmp_path, epochs=2, run="second")
    assert [r["resumed_from"] for r in second] == [1, 1]
    assert [r["epochs_run"] for r in second] == [1, 1]
    v0, v1 = _weights(tmp_path, "second", 0), _weights(tmp_path, "second", 1)
    assert all(np.array_equal(a, b) for a, b in zip(v0, v1, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(w0, v0, strict=True)), "no training"
    assert json.loads((chief / "ckpt" / "state.json").read_text())["epoch"] == 2
    assert any(p.name.startswith("ckpt-2.") for p in (chief / "ckpt").iterdir())
    assert _tree(worker) == {"ckpt"} and _tree(tmp_path / "tmp1") == set()
