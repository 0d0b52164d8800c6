"""The one atomic writer: a reader sees the old content or the new, never half; leftovers go."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workbench.core import atomic


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


def _leftover(target: Path, kind: str, pid: int) -> Path:
    """A name as a writer with ``pid`` on this host would have left beside ``target``."""
    return target.parent / f".{target.name}.{kind}-{atomic._HOST}-{pid}-abc123_x{target.suffix}"


def test_writes_replace_the_target_and_leave_nothing_else(tmp_path):
    target = tmp_path / "sub" / "r.json"
    atomic.write_json(target, {"b": 1, "a": [1, 2]}, sort_keys=True)
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    atomic.write_text(target, "second")
    assert target.read_text() == "second"
    atomic.write_bytes(target, b"\x00third")
    assert target.read_bytes() == b"\x00third"
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]


def test_new_files_get_the_umask_mode_and_replaced_ones_keep_theirs(tmp_path):
    old = os.umask(0o022)
    try:
        fresh = atomic.write_text(tmp_path / "new.txt", "x")
        assert fresh.stat().st_mode & 0o777 == 0o644  # not tempfile's private 0600
        os.chmod(fresh, 0o640)
        atomic.write_text(fresh, "y")
        assert fresh.stat().st_mode & 0o777 == 0o640
        with atomic.temp_dir(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("z")
        assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(old)


def test_a_failure_mid_write_leaves_the_old_file_intact(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic.open_file(target, "w", encoding="utf-8") as f:
            f.write("half of the new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failing_rename_leaves_the_old_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "m.keras"
    target.write_bytes(b"old")

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", no_rename)
    with pytest.raises(OSError, match="No space left"):
        with atomic.temp_path(target) as tmp:
            assert tmp.suffix == ".keras" and tmp.parent == tmp_path  # Keras needs the suffix
            tmp.write_bytes(b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.keras"]


def test_an_unserialisable_object_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic.write_json(tmp_path / "x.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writer_leaves_the_old_file_and_its_leftover_is_cleaned(tmp_path):
    target = tmp_path / "runs.json"
    target.write_text("old")
    script = textwrap.dedent(
        f"""
        import os, signal
        from workbench.core import atomic
        with atomic.open_file({str(target)!r}) as f:
            f.write(b"half")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert target.read_text() == "old"
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".runs.json.tmp-")
    atomic.write_text(target, "new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        target = tmp_path / "a.txt"
        live = _leftover(target, "tmp", sleeper.pid)
        live.write_text("in progress")
        dead = _leftover(target, "tmp", _dead_pid())
        dead.write_text("abandoned")
        other_host = tmp_path / f".a.txt.tmp-elsewhere-{_dead_pid()}-abc123_x.txt"
        other_host.write_text("another machine's")
        atomic.write_text(target, "x")
        assert live.exists() and other_host.exists() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "serving" / "m" / "1"
    with atomic.temp_dir(target) as tmp:
        (tmp / "saved_model.pb").write_text("v1")
    with atomic.temp_dir(target) as tmp:
        (tmp / "saved_model.pb").write_text("v2")
        (tmp / "variables").mkdir()
        assert (target / "saved_model.pb").read_text() == "v1"  # old one in place meanwhile
    assert (target / "saved_model.pb").read_text() == "v2" and (target / "variables").is_dir()
    with pytest.raises(OSError, match="disk full"):
        with atomic.temp_dir(target) as tmp:
            (tmp / "saved_model.pb").write_text("v3 half")
            raise OSError("disk full")
    assert (target / "saved_model.pb").read_text() == "v2"
    assert [p.name for p in target.parent.iterdir()] == ["1"]


def test_folder_replacement_without_an_atomic_exchange(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # e.g. not Linux
    target = tmp_path / "1"
    for version in ("v1", "v2"):
        with atomic.temp_dir(target) as tmp:
            (tmp / "saved_model.pb").write_text(version)
    assert (target / "saved_model.pb").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["1"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux-only")
def test_linux_exchanges_folders_atomically(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not atomic._exchange(a, b):
        pytest.skip("this file system cannot exchange (the fallback is tested above)")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_stale_leftovers_are_removed_and_a_lost_version_restored(tmp_path):
    target = tmp_path / "1"
    pid = _dead_pid()
    stale_tmp = _leftover(target, "tmp", pid)
    stale_tmp.mkdir()
    (stale_tmp / "half").write_text("x")
    old = _leftover(target, "old", pid)  # a writer died between its two renames
    old.mkdir()
    (old / "saved_model.pb").write_text("previous")
    with pytest.warns(UserWarning, match="restored"):
        cleaned = atomic.clean_stale(target)
    assert set(cleaned) == {stale_tmp, old}
    assert (target / "saved_model.pb").read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["1"]
    again = _leftover(target, "old", _dead_pid())  # with the target present: just removed
    again.mkdir()
    with atomic.temp_dir(target) as tmp:
        (tmp / "saved_model.pb").write_text("new")
    assert (target / "saved_model.pb").read_text() == "new" and not again.exists()
