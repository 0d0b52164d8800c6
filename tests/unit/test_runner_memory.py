"""How the runner measures and caps a notebook's memory (the Binder-sized checks rest on it)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from workbench import runner

MiB = 2**20


def test_process_memory_splits_heap_from_the_total():
    total, heap = runner.process_memory(os.getpid())
    assert 0 < heap <= total


def test_sampler_sees_a_child_that_allocates():
    script = (
        "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(3)"
    )
    with runner.MemorySampler(interval_s=0.1) as sampler:
        subprocess.run([sys.executable, "-c", script], check=True)
    assert sampler.peak_private >= 180 * MiB, sampler.peak_private / MiB
    assert sampler.peak >= sampler.peak_private


# The cap moves the calling process into the cgroup, so these run it in a fresh interpreter.
CAPPED = textwrap.dedent(
    """
    import subprocess, sys
    from workbench import runner
    with runner.MemoryLimit({cap} * 2**20, drop_page_cache=False) as limit:
        child = subprocess.run([sys.executable, "-c",
            "b = bytearray({alloc} * 2**20); b[::4096] = b'x' * len(b[::4096])"])
        print(child.returncode, limit.oom_kills(), limit.peak_bytes() // 2**20)
    """
)


@pytest.mark.skipif(
    runner.MemoryLimit.unavailable() is not None,
    reason=f"no memory cgroup here: {runner.MemoryLimit.unavailable()}",
)
@pytest.mark.parametrize(("alloc", "killed"), [(60, False), (400, True)])
def test_memory_cap_kills_what_does_not_fit(alloc, killed):
    out = subprocess.run(
        [sys.executable, "-c", CAPPED.format(cap=250, alloc=alloc)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    returncode, oom_kills, peak_mib = map(int, out)
    assert (returncode == -9) is killed, out
    assert (oom_kills > 0) is killed, out
    assert 0 < peak_mib <= 250


def test_memory_cap_says_why_it_is_unavailable(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    if sys.platform.startswith("linux"):
        assert "root" in runner.MemoryLimit.unavailable()
        with pytest.raises(RuntimeError, match="root"):
            runner.MemoryLimit(2**30).__enter__()


def test_a_recorded_run_reads_back(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path))
    sent = runner.Execution(
        "09-x",
        tmp_path / "executed" / "09-x.ipynb",
        12.3,
        900 * MiB,
        500 * MiB,
        2048 * MiB,
        1500 * MiB,
    )
    runner._record_run(sent, "smoke")
    assert runner.recorded_run("09-x") == sent
    with pytest.raises(KeyError, match="No recorded run of 10-y"):
        runner.recorded_run("10-y")
