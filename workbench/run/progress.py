"""The run's progress line: each notebook's time against its estimate and the time left,
redrawn in a terminal, logged every so often elsewhere.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from workbench.run import estimates

# Progress lines: every second on a terminal, every 30 s when stdout is a file or a pipe.
TERMINAL_INTERVAL_S = 1.0


LOG_INTERVAL_S = 30.0


# ===================================================================== progress


class Progress:
    """One line of progress with an ETA while the notebooks run.

    On a terminal the line is redrawn about once a second; into a file or a pipe a line is
    written every :data:`LOG_INTERVAL_S` seconds instead (a log stays readable). After each
    notebook the remaining estimates are multiplied by actual / estimated so far (with
    :data:`RESCALE_PRIOR_S` counted as on target).

    Use :meth:`start` and :meth:`finish` around each notebook and :meth:`close` at the end
    (or ``with``); :meth:`write` prints a line without tearing the progress line.
    """

    def __init__(
        self,
        plan: estimates.Plan,
        *,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        clock_fn: Callable[[], float] = time.monotonic,
        thread: bool = True,
    ) -> None:
        self.stream = stream or sys.stdout
        if interactive is None:
            interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interactive = interactive
        self.interval_s = TERMINAL_INTERVAL_S if interactive else LOG_INTERVAL_S
        self.clock = clock_fn
        self.names = list(plan.estimates)
        self.raw = {n: e.seconds for n, e in plan.estimates.items()}
        self.factor = 1.0
        self.actual: dict[str, float] = {}
        self.run_start = clock_fn()
        self.current: str | None = None
        self.current_start = self.run_start
        self.last_line = -math.inf
        self._shown = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True) if thread else None
        if self._thread:
            self._thread.start()

    # ---------------------------------------------------------------- public

    def estimate(self, name: str) -> float | None:
        """The current estimate for ``name``: its planned one, rescaled once others ran."""
        raw = self.raw.get(name)
        return None if raw is None else raw * self.factor

    def start(self, name: str) -> None:
        with self._lock:
            self.current, self.current_start = name, self.clock()
            self.last_line = self.current_start  # the first log line comes an interval later

    def finish(self, name: str, seconds: float) -> str:
        """Record a finished notebook, rescale the rest; returns the line saying so."""
        with self._lock:
            self.actual[name] = seconds
            self.current = None
            was = self.estimate(name)
            estimated = [n for n in self.actual if self.raw.get(n) is not None]
            if estimated:
                actual = sum(self.actual[n] for n in estimated) + estimates.RESCALE_PRIOR_S
                ratio = actual / (sum(self.raw[n] for n in estimated) + estimates.RESCALE_PRIOR_S)
                self.factor = min(
                    max(ratio, estimates.RESCALE_BOUNDS[0]), estimates.RESCALE_BOUNDS[1]
                )
        if was is None:
            return f"    no estimate for {name}; took {estimates.clock(seconds)}"
        planned = self.raw[name]
        first = "" if abs(was - planned) < 0.5 else f" (planned {estimates.clock(planned)})"
        line = f"    estimate {estimates.clock(was)}{first}, took {estimates.clock(seconds)} ({seconds / was:.2f}x)"
        if all(n in self.actual for n in self.names):
            return line
        left = self.remaining()
        rest = "" if left is None else f"; remaining notebooks now ~{estimates.clock(left)}"
        return f"{line}; later estimates x{self.factor:.2f}{rest}"

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left for the run: the current notebook's rest and those not yet started
        (None when one of them has no estimate). While the current notebook runs over its
        estimate, the later ones are rescaled as if it finished now (they rise with it)."""
        now = self.clock() if now is None else now
        factor = self._live_factor(now)
        left = 0.0
        for name in self.names:
            if name in self.actual:
                continue
            if self.raw.get(name) is None:
                return None
            if name == self.current:
                left += max(self.estimate(name) - (now - self.current_start), 0.0)
            else:
                left += self.raw[name] * factor
        return left

    def _live_factor(self, now: float) -> float:
        """The rescaling factor, raised while the current notebook runs over its estimate."""
        raw = self.raw.get(self.current) if self.current else None
        elapsed = now - self.current_start
        if raw is None or elapsed <= raw * self.factor:
            return self.factor
        done = [n for n in self.actual if self.raw.get(n) is not None]
        actual = sum(self.actual[n] for n in done) + elapsed + estimates.RESCALE_PRIOR_S
        planned = sum(self.raw[n] for n in done) + raw + estimates.RESCALE_PRIOR_S
        return min(max(self.factor, actual / planned), estimates.RESCALE_BOUNDS[1])

    def status(self, now: float | None = None) -> str:
        """The progress line: notebook, its elapsed time against its estimate, the run's ETA."""
        now = self.clock() if now is None else now
        elapsed_run = now - self.run_start
        if self.current is None:
            return f"run {estimates.clock(elapsed_run)} elapsed"
        index = self.names.index(self.current) + 1 if self.current in self.names else 0
        elapsed = now - self.current_start
        est = self.estimate(self.current)
        mine = (
            f"{estimates.clock(elapsed)} / ~{estimates.clock(est)}"
            if est is not None
            else estimates.clock(elapsed)
        )
        if est is not None and elapsed > est:
            mine += " (over)"
        left = self.remaining(now)
        if left is None:
            eta = "ETA unknown"
        else:
            at = time.strftime("%H:%M", time.localtime(time.time() + left))
            eta = f"~{estimates.clock(left)} left, ETA {at}"
        return f"[{index}/{len(self.names)}] {self.current} {mine} | run {estimates.clock(elapsed_run)}, {eta}"

    def tick(self, now: float | None = None) -> None:
        """Draw the line (terminal) or write it when an interval has passed (log)."""
        now = self.clock() if now is None else now
        with self._lock:
            if self.current is None or now - self.last_line < self.interval_s:
                return
            self.last_line = now
            line = self.status(now)
            if self.interactive:
                width = _terminal_width() - 1
                self.stream.write("\r" + line[:width].ljust(width))
                self._shown = True
            else:
                self.stream.write(f"    ... {line}\n")
            self.stream.flush()

    def write(self, text: str) -> None:
        """Print ``text`` on its own lines (the terminal's progress line is redrawn after)."""
        with self._lock:
            self._clear()
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last_line = -math.inf if self.interactive else self.last_line

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            self._clear()
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _clear(self) -> None:
        if self.interactive and self._shown:
            self.stream.write("\r" + " " * (_terminal_width() - 1) + "\r")
            self._shown = False

    def _loop(self) -> None:
        while not self._stop.wait(min(self.interval_s, 1.0)):
            try:
                self.tick()
            except (OSError, ValueError):  # the stream went away: stop drawing, run on
                return


def _terminal_width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((100, 20)).columns)
