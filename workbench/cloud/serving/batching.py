"""Server-side dynamic batching, as TensorFlow Serving's ``--enable_batching``.

Concurrent requests to the same signature wait in a queue; a batch thread takes the oldest
and every compatible request behind it (same input shapes) up to ``max_batch_size``
instances, waiting at most ``batch_timeout_micros`` after the oldest arrived for more to come,
then makes **one** model call and hands each request its rows. Bigger batches use the CPU's
vector units and TensorFlow's thread pool better (more throughput); the price is the wait
(more latency when traffic is light). Parameters keep TF Serving's names:

- ``max_batch_size``: instances per model call (also the cap on one request);
- ``batch_timeout_micros``: the longest the oldest request waits for company (0, the
  default and TF Serving's advice for online serving: no waiting; requests that arrive
  while the model is busy still form a batch);
- ``num_batch_threads``: model calls that may run at once;
- ``max_enqueued_batches``: queue length, in batches; beyond it requests get
  ``UNAVAILABLE`` (HTTP 503) at once instead of waiting without bound.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from workbench.cloud.serving.errors import RequestError

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class BatchInfo:
    """What one request's batch looked like."""

    batch_size: int  # instances in the model call
    requests: int  # requests merged into it
    queue_s: float  # this request's wait before the call started
    compute_s: float  # the model call


@dataclass
class _Task:
    inputs: Arrays
    size: int
    key: tuple
    enqueued: float
    future: Future


class Batcher:
    """Merge concurrent requests into model calls.

    Args:
        run: the model call, ``run(inputs) -> outputs``, every array batch-major.
        max_batch_size: most instances in one call.
        batch_timeout_micros: longest wait for a batch to fill after its oldest request.
        num_batch_threads: calls that may run at once.
        max_enqueued_batches: queue capacity in batches (``UNAVAILABLE`` beyond).
        on_batch: called as ``on_batch(batch_size, compute_s)`` after each call (metrics).
    """

    def __init__(
        self,
        run: Callable[[Arrays], Arrays],
        *,
        max_batch_size: int,
        batch_timeout_micros: int,
        num_batch_threads: int = 1,
        max_enqueued_batches: int = 16,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "batcher",
    ) -> None:
        self.run = run
        self.max_batch_size = max_batch_size
        self.timeout_s = batch_timeout_micros / 1e6
        self.capacity = max_enqueued_batches * max_batch_size
        self.on_batch = on_batch
        self._queue: deque[_Task] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, num_batch_threads))
        ]
        for t in self._threads:
            t.start()

    def submit(self, inputs: Arrays) -> Future:
        """Queue one request; the future resolves to ``(outputs, BatchInfo)``."""
        size = len(next(iter(inputs.values())))
        key = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(inputs.items()))
        task = _Task(inputs, size, key, time.monotonic(), Future())
        with self._cond:
            if self._closed:
                raise RequestError(
                    "This model version was unloaded while the request waited; retry",
                    "UNAVAILABLE",
                    retry_after_s=1,
                )
            if self._queued + size > self.capacity:
                raise RequestError(
                    f"The batching queue is full ({self._queued} instances waiting); retry shortly",
                    "UNAVAILABLE",
                    retry_after_s=1,
                )
            self._queue.append(task)
            self._queued += size
            self._cond.notify()
        return task.future

    def close(self) -> None:
        """Finish what is queued, then stop the threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=30)

    # ------------------------------------------------------------ batch threads

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._execute(batch)

    def _take(self) -> list[_Task] | None:
        with self._cond:
            while True:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return None
                first = self._queue[0]
                deadline = first.enqueued + self.timeout_s
                while self._queue and self._queue[0] is first and not self._closed:
                    ready = sum(t.size for t in self._queue if t.key == first.key)
                    remaining = deadline - time.monotonic()
                    if ready >= self.max_batch_size or remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._queue and self._queue[0] is first:
                    return self._pop(first.key)

    def _pop(self, key: tuple) -> list[_Task]:
        batch, rest, total = [], deque(), 0
        for task in self._queue:
            if task.key == key and total + task.size <= self.max_batch_size:
                batch.append(task)
                total += task.size
            else:
                rest.append(task)
        self._queue = rest
        self._queued -= total
        return batch

    def _execute(self, batch: list[_Task]) -> None:
        started = time.monotonic()
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = {k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs}
        total = sum(t.size for t in batch)
        try:
            outputs = self.run(inputs)
            compute = time.monotonic() - started
            bad = [k for k, v in outputs.items() if v.ndim == 0 or len(v) != total]
            if bad:
                raise RuntimeError(
                    f"Outputs {bad} are not batch-major (first dimension {total}); "
                    "this model cannot be served with --enable-batching"
                )
        except RequestError as err:
            if len(batch) > 1:  # one request's input broke the call: answer each on its own
                for task in batch:
                    self._execute([task])
                return
            batch[0].future.set_exception(err)
            return
        except Exception as err:  # noqa: BLE001 - handed to every waiting request
            for task in batch:
                task.future.set_exception(err)
            return
        if self.on_batch:
            self.on_batch(total, compute)
        offset = 0
        for task in batch:
            rows = {k: v[offset : offset + task.size] for k, v in outputs.items()}
            offset += task.size
            info = BatchInfo(total, len(batch), started - task.enqueued, compute)
            task.future.set_result((rows, info))
