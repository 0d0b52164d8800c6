"""Deadlines for the tests' waits: a stuck child process or thread fails its test within a
limit sized for a busy 2-core machine, saying what it waited for and what the child printed.

pytest-timeout (``timeout`` in pyproject.toml) stays the last resort for a whole test; these
limits fire first, with a message that names the wait.
"""

from __future__ import annotations

import shlex
import subprocess
import threading

import pytest


def output_so_far(err: subprocess.TimeoutExpired, *, chars: int = 3000) -> str:
    """The end of what a timed-out child wrote (``subprocess.run`` keeps it as bytes)."""
    parts = [
        p.decode(errors="replace") if isinstance(p, bytes) else p for p in (err.stdout, err.stderr)
    ]
    text = "\n".join(p for p in parts if p)
    return text[-chars:] if text else "(no output captured)"


def run(cmd: list, *, timeout_s: float, what: str, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, **kwargs)`` with a deadline: past ``timeout_s`` the child is killed
    and the test fails, naming ``what``, the command and the end of its output so far."""
    try:
        return subprocess.run(cmd, timeout=timeout_s, **kwargs)
    except subprocess.TimeoutExpired as err:
        pytest.fail(
            f"{what} did not finish within {timeout_s:g} s and was stopped.\n"
            f"$ {shlex.join(map(str, cmd))}\n{output_so_far(err)}",
            pytrace=False,
        )


def join(thread: threading.Thread, *, timeout_s: float, what: str) -> None:
    """``thread.join()`` with a deadline; the test fails if ``thread`` still runs after it."""
    thread.join(timeout_s)
    if thread.is_alive():
        pytest.fail(f"{what}: still running after {timeout_s:g} s", pytrace=False)
