"""Progress bars that leave one summary line behind, live and in a saved notebook.

A tqdm bar closed with ``leave=False`` vanishes from a live notebook, but a saved notebook
keeps whatever it showed last: a bar frozen at 81-94%. :class:`ProgressBar` draws the bar in
place while the work runs and, when it ends, replaces it with one line saying what was done
(``fine-tune: 800 steps in 12.3 s (65 steps/s); loss 1.234, accuracy 0.567``):

- in a Jupyter kernel, as a display updated in place (``display_id``), so the saved
  notebook holds the summary only;
- in a terminal, as a tqdm bar on stderr that is cleared when it ends, then the summary;
- elsewhere (a log file, a captured stream), the summary only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from workbench.core import quiet

T = TypeVar("T")
REDRAW_S = 0.5  # at most two redraws a second: cheap next to a training step


def metrics_text(metrics: dict[str, Any]) -> str:
    """``loss 1.234, accuracy 0.567`` (numbers to 3 decimals, in the given order)."""
    return ", ".join(
        f"{k} {v:.3f}" if isinstance(v, int | float) else f"{k} {v}" for k, v in metrics.items()
    )


def plural(unit: str) -> str:
    """``step`` -> ``steps``, ``batch`` -> ``batches``."""
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


class ProgressBar:
    """A bar over ``total`` units of work that ends as one summary line.

    Args:
        total: units of work expected (None if unknown).
        desc: what is being done (the bar's and the summary's first words).
        unit: the unit's name, singular (``step``, ``batch``).
        mode: ``"display"`` (a Jupyter kernel), ``"terminal"`` (tqdm on stderr), ``"quiet"``
            (summary only), ``"off"`` (nothing shown, as tqdm's ``disable``) or None to
            choose from where the process runs.
        stream: where the terminal bar and the summary go (default: stdout for the
            summary, stderr for a terminal bar).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "step",
        mode: str | None = None,
        stream=None,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self.metrics: dict[str, Any] = {}
        self.mode = mode or self._default_mode()
        self.stream = stream
        self.start = time.perf_counter()
        self._last_draw = -float("inf")
        self._handle = None
        self._tqdm = None
        self.closed = False
        self.end: float | None = None
        if self.mode == "display":
            from IPython.display import Pretty, display

            self._handle = display(Pretty(self._bar_text()), display_id=True)
        elif self.mode == "terminal":
            from tqdm import tqdm

            self._tqdm = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                leave=False,
                mininterval=REDRAW_S,
                file=stream or sys.stderr,
            )

    @staticmethod
    def _default_mode() -> str:
        if quiet.in_kernel():
            return "display"
        isatty = getattr(sys.stderr, "isatty", lambda: False)
        return "terminal" if isatty() else "quiet"

    def update(self, n: int = 1, **metrics: Any) -> None:
        """Count ``n`` more units done; ``metrics`` (e.g. ``loss=...``) are shown and kept
        for the summary."""
        self.n += n
        self.metrics.update(metrics)
        if self._tqdm is not None:
            self._tqdm.update(n)
            if metrics:
                self._tqdm.set_postfix_str(metrics_text(self.metrics), refresh=False)
        elif self._handle is not None:
            now = time.perf_counter()
            if now - self._last_draw >= REDRAW_S:
                self._last_draw = now
                from IPython.display import Pretty

                self._handle.update(Pretty(self._bar_text()))

    def _bar_text(self) -> str:
        from tqdm import tqdm

        return tqdm.format_meter(
            self.n,
            self.total,
            time.perf_counter() - self.start,
            ncols=100,
            prefix=self.desc,
            unit=self.unit,
            postfix=metrics_text(self.metrics) or None,
        )

    def summary(self) -> str:
        """``desc: N units in S s (R units/s); metrics``."""
        seconds = (self.end or time.perf_counter()) - self.start
        units = plural(self.unit)
        rate = f" ({self.n / seconds:,.1f} {units}/s)" if seconds > 0 and self.n else ""
        of = f" of {self.total:,}" if self.total is not None and self.total != self.n else ""
        text = f"{self.desc}: {self.n:,}{of} {units} in {seconds:.1f} s{rate}"
        return text + (f"; {metrics_text(self.metrics)}" if self.metrics else "")

    def close(self, **metrics: Any) -> str:
        """End the bar: it is replaced by the summary line (returned). Idempotent."""
        if self.closed:
            return self.summary()
        self.closed = True
        self.end = time.perf_counter()
        self.metrics.update(metrics)
        text = self.summary()
        if self._handle is not None:
            from IPython.display import Pretty

            self._handle.update(Pretty(text))
        else:
            if self._tqdm is not None:
                self._tqdm.close()
            if self.mode != "off":
                print(text, file=self.stream or sys.stdout, flush=True)
        return text

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(
    iterable: Iterable[T],
    *,
    desc: str,
    unit: str = "item",
    total: int | None = None,
    disable: bool = False,
) -> Iterator[T]:
    """Iterate over ``iterable`` with a :class:`ProgressBar` that ends as one summary line
    (a drop-in for ``tqdm(iterable, desc=..., disable=...)``). The summary is written when
    the iteration ends, also on an early ``break`` or an error (it then says how far it
    got)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = ProgressBar(total, desc, unit=unit, mode="off" if disable else None)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
