"""Data from the wild is sized from its headers before it is decoded, and ``--out`` only ever
replaces what the workbench wrote.

Crafted files: an ``.npz`` of 1.2 GB of zeros in about 1 MB, an ``.npz`` whose header claims
279 GiB, PNGs of 9000x9000 and 20000x20000 pixels in a few kB, a FIFO named ``x.png``. Each is
refused with a clear message (never a traceback), the inflating one with the process's peak
memory measured from outside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import deadlines
import numpy as np
import pytest
from serving_helpers import zero_png

from workbench.assess import flow
from workbench.data import datasets
from workbench.models import contract, loading

PEAK_LIMIT_MIB = 900


def write_npz_streaming(path: Path, arrays: dict[str, tuple[tuple[int, ...], int | None]]) -> Path:
    """An ``.npz`` of uint8 arrays ``{name: (shape, fill)}`` written chunk by chunk (never whole
    in memory); ``fill`` None writes only the header (a file whose header lies)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, (shape, fill) in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                header = {"descr": "|u1", "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(f, header)
                if fill is None:
                    continue
                left = int(np.prod(shape))
                chunk = np.full(min(left, 16 * 2**20), fill, np.uint8).tobytes()
                while left:
                    f.write(chunk[:left])
                    left -= min(left, len(chunk))
    return path


def labels_and_test(n_train: int) -> dict:
    return {
        "y_train": ((n_train,), 0),
        "x_test": ((4, 32, 32, 3), 0),
        "y_test": ((4,), 0),
    }


@pytest.fixture(scope="module")
def inflating_npz(tmp_path_factory) -> Path:
    """1.2 GB of zero pixels (32x32x3 images) in an .npz of about a megabyte."""
    n = 1_200_000_000 // 3072
    path = tmp_path_factory.mktemp("bomb") / "inflating.npz"
    write_npz_streaming(path, {"x_train": ((n, 32, 32, 3), 0), **labels_and_test(n)})
    print(f"{path.stat().st_size:,} bytes on disk, {n * 3072:,} once inflated")
    return path


def small_model(path: Path, shape: tuple[int, int, int]) -> Path:
    import tf_keras as keras

    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]
    )
    model.save(path)
    return path


# `workbench assess` refuses these files from their headers within seconds (most of it the
# import of TensorFlow); the limit is for a hang.
ASSESS_DEADLINE_S = 540
PEAK = f"""
import resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout={ASSESS_DEADLINE_S})
sys.stderr.write(run.stderr)
print(run.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def assess_with_peak(*args: str) -> tuple[int, int, str]:
    """Run ``workbench assess`` in a fresh process: exit code, its peak RSS (MiB), stderr."""
    run = deadlines.run(
        [sys.executable, "-c", PEAK, sys.executable, "-m", "workbench", "assess", *args],
        timeout_s=ASSESS_DEADLINE_S + 60,  # the inner limit stops `workbench assess` first
        what="`workbench assess` with its peak memory measured",
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:  # the measuring parent failed: `workbench assess` overran
        pytest.fail(f"`workbench assess {' '.join(args)}` did not finish:\n{run.stderr[-3000:]}")
    code, peak = (int(x) for x in run.stdout.split())
    return code, peak, run.stderr


# ---------------------------------------------------------------- .npz


@pytest.mark.slow
@pytest.mark.parametrize("case", ["wrong shape for the model", "over --max-data-bytes"])
def test_an_inflating_npz_is_refused_from_its_headers(tmp_path, inflating_npz, case):
    shape = (8, 8, 1) if case == "wrong shape for the model" else (32, 32, 3)
    model = small_model(tmp_path / "model.h5", shape)
    args = ["--model", str(model), "--data", str(inflating_npz), "--out", str(tmp_path / "out")]
    if case == "over --max-data-bytes":
        args += ["--max-data-bytes", str(500 * 2**20)]
    code, peak, stderr = assess_with_peak(*args, "--quiet")
    print(f"{case}: exit {code}, peak RSS {peak} MiB\n{stderr[-600:]}")
    assert code == 2 and "Traceback" not in stderr
    assert ("Shape mismatch" if "shape" in case else "over the limit") in stderr
    assert peak < PEAK_LIMIT_MIB
    assert not (tmp_path / "out").exists()


def test_a_header_claiming_279_gib_is_refused_clearly(tmp_path):
    n = 279 * 2**30 // 3072
    path = write_npz_streaming(
        tmp_path / "liar.npz", {"x_train": ((n, 32, 32, 3), None), **labels_and_test(n)}
    )
    with pytest.raises(datasets.DatasetError, match=r"claims shape .* corrupt or crafted"):
        datasets.load_image_dataset(path)
    assert datasets.peek_image_shape(path) == (32, 32, 3)  # the header alone is fine to read


def test_the_memory_cap_is_checked_before_inflating(tmp_path):
    path = write_npz_streaming(
        tmp_path / "big.npz", {"x_train": ((2000, 32, 32, 3), 7), **labels_and_test(2000)}
    )
    with pytest.raises(datasets.DatasetError, match="over the limit of 1.0 MiB"):
        datasets.load_image_dataset(path, max_bytes=2**20)
    assert len(datasets.load_image_dataset(path).y_train) == 2000
    assert 0 < datasets.sizes.max_data_bytes() < 2**50


# ---------------------------------------------------------------- image folders


def image_folder(root: Path, png: bytes, *, per_class: int) -> Path:
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / cls / f"{i:03}.png").write_bytes(png)
    return root


def test_twelve_huge_pngs_are_refused_before_decoding(tmp_path):
    folder = image_folder(tmp_path / "huge", zero_png(9000, 9000), per_class=6)
    print(f"{(folder / 'cats' / '000.png').stat().st_size:,} bytes per 9000x9000 PNG")
    with pytest.raises(datasets.DatasetError, match=r"12 images of 9000x9000x3.*over the limit"):
        datasets.load_image_dataset(folder, max_bytes=256 * 2**20)
    model = loading.load_classifier(small_model(tmp_path / "m.h5", (32, 32, 3)), bridge=False)
    with pytest.raises(loading.ContractError, match=r"\(9000, 9000, 3\)"):
        contract.open_for_data(model.path, folder)  # the model's shape, from one header


def test_a_20000_pixel_square_png_is_a_bomb_not_a_traceback(tmp_path):
    folder = image_folder(tmp_path / "bomb", zero_png(20000, 20000), per_class=1)
    with pytest.raises(datasets.DatasetError, match="decompression bomb"):
        datasets.load_image_dataset(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_named_like_an_image_is_skipped_not_read(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    for cls in ("cats", "dogs"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (6, 4), (i, 0, 0)).save(folder / cls / f"{i}.png")
    os.mkfifo(folder / "cats" / "x.png")  # opening it would block until a writer comes
    result: list = []
    loader = threading.Thread(
        target=lambda: result.append(datasets.load_image_dataset(folder)), daemon=True
    )
    loader.start()
    loader.join(timeout=60)
    assert not loader.is_alive(), "the loader blocked on the FIFO"
    assert len(result[0].y_train) + len(result[0].y_test) == 6
    assert "skipped 1 non-image files" in result[0].source and "x.png" in result[0].source


# ---------------------------------------------------------------- --out


def test_out_refuses_to_replace_a_file_it_did_not_write(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "assessment.json").write_text("{}")  # looks like an assessment, but no record
    (out / "precious.txt").write_text("the user's own notes")
    with pytest.raises(flow.AssessError, match=r"precious\.txt.*refuses"):
        flow.assess(tmp_path / "no-model.keras", tmp_path / "no-data.npz", out)
    assert (out / "precious.txt").read_text() == "the user's own notes"

    # an earlier assessment records what it wrote: replacing exactly that is fine
    (out / "precious.txt").unlink()
    (out / "figures").mkdir()
    (out / "figures" / "a.png").write_bytes(b"png")
    entries = ["assessment.json", "figures", "figures/a.png", "index.html"]
    record = {flow.WRITTEN_BY_KEY: {"tool": flow.WRITTEN_BY, "entries": entries}}
    (out / "assessment.json").write_text(json.dumps(record))
    with pytest.raises(loading.ContractError, match="No model"):  # past the --out check
        flow.assess(tmp_path / "no-model.keras", tmp_path / "no-data.npz", out)
    (out / "figures" / "mine.csv").write_text("a,b")  # a foreign file inside a folder it wrote
    with pytest.raises(flow.AssessError, match=r"figures/mine\.csv"):
        flow.assess(tmp_path / "no-model.keras", tmp_path / "no-data.npz", out)


@pytest.mark.slow
def test_the_command_exits_2_and_keeps_the_foreign_file(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    run = subprocess.run(
        [sys.executable, "-m", "workbench", "assess", "--model", "m.keras", "--data", "d.npz"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and "precious.txt" in run.stderr and "Traceback" not in run.stderr
    assert (out / "precious.txt").read_text() == "keep me"
