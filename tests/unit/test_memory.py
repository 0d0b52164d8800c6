"""How a notebook's memory is measured and capped (the Binder-sized checks rest on it)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from workbench.core import memory

MiB = 2**20


def test_process_memory_splits_private_from_the_total():
    total, private = memory.process_memory(os.getpid())
    assert 0 < private <= total
    grown = bytearray(64 * MiB)
    grown[::4096] = b"x" * len(grown[::4096])  # touch every page
    after = memory.process_memory(os.getpid())
    assert after.private - private >= 60 * MiB and after.total - total >= 60 * MiB


def test_sampler_sees_a_child_that_allocates():
    script = (
        "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(3)"
    )
    with memory.MemorySampler(interval_s=0.1) as sampler:
        subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert sampler.peak_private >= 180 * MiB, sampler.peak_private / MiB
    assert sampler.peak >= sampler.peak_private


def test_sampler_ignores_children_that_ran_before_it():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(20)"])
    try:
        sampler = memory.MemorySampler()
        assert sampler.sample() == (0, 0)
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)


# The cap moves the calling process into the cgroup, so these run it in a fresh interpreter.
CAPPED = textwrap.dedent(
    """
    import subprocess, sys
    from workbench.core import memory
    with memory.MemoryLimit({cap} * 2**20, drop_page_cache=False) as limit:
        child = subprocess.run([sys.executable, "-c",
            "b = bytearray({alloc} * 2**20); b[::4096] = b'x' * len(b[::4096])"], timeout=120)
        print(child.returncode, limit.oom_kills(), limit.peak_bytes() // 2**20)
    """
)


@pytest.mark.skipif(
    memory.MemoryLimit.unavailable() is not None,
    reason=f"no memory cgroup here: {memory.MemoryLimit.unavailable()}",
)
@pytest.mark.parametrize(("alloc", "killed"), [(60, False), (400, True)])
def test_memory_cap_kills_what_does_not_fit(alloc, killed):
    out = subprocess.run(
        [sys.executable, "-c", CAPPED.format(cap=250, alloc=alloc)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.split()
    returncode, oom_kills, peak_mib = map(int, out)
    assert (returncode == -9) is killed, out
    assert (oom_kills > 0) is killed, out
    assert 0 < peak_mib <= 250


def test_memory_cap_says_why_it_is_unavailable(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    if sys.platform.startswith("linux"):
        assert "root" in memory.MemoryLimit.unavailable()
        with pytest.raises(RuntimeError, match="root"):
            memory.MemoryLimit(2**30).__enter__()
