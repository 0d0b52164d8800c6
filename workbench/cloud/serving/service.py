"""What both APIs do: look up a model, admit a request, decode it, run it, describe models.

:class:`Service` is shared by the REST app (:mod:`~workbench.cloud.serving.rest`) and the gRPC
servicers (:mod:`~workbench.cloud.serving.grpc_api`), so both answer the same way and count
against the same limits:

- **admission**: at most ``--max-inflight-bytes`` of request bodies in memory (counted as
  they arrive, so a body trickling in holds almost nothing) and at most
  ``--max-concurrent-requests`` predicts in progress, a slot taken only once the body is
  complete; more get ``UNAVAILABLE`` (HTTP 503 with ``Retry-After``) at once instead of
  queueing without bound;
- **decoding** of JSON bodies one at a time (it holds the GIL anyway), so only one request's
  Python objects exist at once;
- **model calls**: through the batcher with ``--enable-batching``, else at most one per CPU
  core at a time.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from workbench.cloud.serving import storage
from workbench.cloud.serving.batching import Batcher
from workbench.cloud.serving.decode import decode_json_request, encode_json_response, parse_json
from workbench.cloud.serving.errors import RequestError
from workbench.cloud.serving.metrics import ServerMetrics
from workbench.cloud.serving.options import ServerOptions
from workbench.cloud.serving.registry import Registry, VersionPolicy, VersionStatus
from workbench.cloud.serving.servable import LoadedModel, Signature, load_saved_model

# The longest a request waits for its batched model call (queue and compute) before it gets
# DEADLINE_EXCEEDED (504): far above any real batch, it only bounds a batch thread that hangs.
BATCH_RESULT_TIMEOUT_S = 600.0

NONCE_ENV = "WORKBENCH_SERVER_NONCE"


class Admission:
    """Admit work while fewer than ``max_requests`` predicts and ``max_bytes`` of request
    bodies are in progress (one request alone may exceed ``max_bytes``)."""

    def __init__(self, max_requests: int, max_bytes: int, metrics: ServerMetrics) -> None:
        self.max_requests, self.max_bytes = max_requests, max_bytes
        self.requests = self.bytes = 0
        self._lock = threading.Lock()
        self._metrics = metrics

    def _busy(self, what: str) -> RequestError:
        self._metrics.rejected.labels("overload").inc()
        return RequestError(
            f"The server is at its limit ({what}: {self.requests} predict requests, "
            f"{self.bytes:,} bytes of requests in progress); retry shortly",
            "UNAVAILABLE",
            retry_after_s=1,
        )

    def reserve(self, nbytes: int, held: int = 0) -> None:
        """Count ``nbytes`` more of a request already holding ``held``, or raise 503."""
        with self._lock:
            if self.bytes > held and self.bytes + nbytes > self.max_bytes:
                raise self._busy("--max-inflight-bytes")
            self.bytes += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.bytes -= nbytes

    @contextlib.contextmanager
    def body(self) -> Iterator[BodyBytes]:
        """The bytes of one request body, counted as they arrive and released at the end."""
        held = BodyBytes(self)
        try:
            yield held
        finally:
            self.release(held.nbytes)

    @contextlib.contextmanager
    def slot(self, nbytes: int = 0) -> Iterator[None]:
        """Hold a predict slot (and ``nbytes`` of request not counted yet), or raise 503."""
        with self._lock:
            if self.requests >= self.max_requests:
                raise self._busy("--max-concurrent-requests")
            self.requests += 1
        try:
            self.reserve(nbytes)
        except RequestError:
            with self._lock:
                self.requests -= 1
            raise
        try:
            yield
        finally:
            with self._lock:
                self.requests -= 1
                self.bytes -= nbytes


class BodyBytes:
    """What one request body holds against :class:`Admission`'s byte budget."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.nbytes = 0

    def add(self, nbytes: int) -> None:
        """Count a chunk that arrived, or raise 503 when the budget is spent by others."""
        self.admission.reserve(nbytes, held=self.nbytes)
        self.nbytes += nbytes


class Service:
    """The model registry plus the shared request path of REST and gRPC.

    Args:
        options: the server's options.
        registry: a ready registry (tests); by default one over ``options.model_base``.
    """

    def __init__(self, options: ServerOptions, registry: Registry | None = None) -> None:
        from workbench.core import paths

        self.options = options
        self.metrics = ServerMetrics()
        if registry is None:
            base = storage.open_base(options.model_base or paths.serving_base())
            base.check()
            loader = functools.partial(
                load_saved_model,
                max_batch_size=options.max_batch_size,
                max_body_bytes=options.max_body_bytes,
                trust_model=options.trust_model,
                prefer_tflite_model=options.prefer_tflite_model,
            )
            policy = VersionPolicy.parse(options.version_policy)
            registry = Registry(base, policy=policy, loader=loader)
            registry.refresh()  # serve nothing before the first load is complete
        self.registry = registry
        self.admission = Admission(
            options.max_concurrent_requests, options.max_inflight_bytes, self.metrics
        )
        self.executor = ThreadPoolExecutor(
            max_workers=options.max_concurrent_requests, thread_name_prefix="predict"
        )
        self.nonce = os.environ.get(NONCE_ENV, "")
        self.grpc_port: int | None = None
        self._decode_lock = threading.Lock()
        self._compute = threading.BoundedSemaphore(os.cpu_count() or 1)

    # ------------------------------------------------------------ models

    def model(self, name: str, version: int | None) -> LoadedModel:
        return self.registry.get(name, version)

    def status(self, name: str, version: int | None) -> list[VersionStatus]:
        return self.registry.status(name, version)

    def health(self) -> dict:
        return {
            "status": "ok",
            "nonce": self.nonce,
            "pid": os.getpid(),
            "models": self.registry.served(),
            "runtimes": self._runtimes(),
            "load_errors": self.registry.errors(),
            "poll_error": self.registry.poll_error,
            "grpc_port": self.grpc_port,
            "version_policy": str(self.registry.policy),
            "batching": self.options.enable_batching,
        }

    def _runtimes(self) -> dict[str, str]:
        """``{"name/version": "TensorFlow" or "LiteRT"}`` of the served versions."""
        out = {}
        for name, versions in self.registry.served().items():
            for version in versions:
                with contextlib.suppress(RequestError):  # unloaded meanwhile
                    out[f"{name}/{version}"] = self.registry.get(name, version).runtime
        return out

    # ------------------------------------------------------------ predict

    def predict_json(self, model: LoadedModel, body: bytes) -> tuple[bytes, dict[str, float]]:
        """A REST predict: JSON body in, JSON body out, and the server-side timings (ms)."""
        t0 = time.perf_counter()
        with self._decode_lock:
            t1 = time.perf_counter()
            doc = parse_json(body, model.limits)
            signature = model.signature(doc.get("signature_name", "serving_default"))
            arrays, fmt = decode_json_request(doc, signature.inputs, model.limits)
            del doc
        t2 = time.perf_counter()
        outputs, timings = self.run(model, signature, arrays)
        content = encode_json_response(outputs, fmt)
        timings["parse"] = (t2 - t1) * 1e3
        timings["queue"] += (t1 - t0) * 1e3
        return content, timings

    def run(
        self, model: LoadedModel, signature: Signature, arrays: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Run checked inputs through the model (batched or not); outputs and timings (ms)."""
        n = len(next(iter(arrays.values())))
        if self.options.enable_batching:
            batcher = model.batcher(signature, functools.partial(self._make_batcher, model))
            try:  # a batch thread that died or hangs must not hold the request forever
                outputs, info = batcher.submit(arrays).result(timeout=BATCH_RESULT_TIMEOUT_S)
            except FutureTimeout:
                raise RequestError(
                    f"the batched model call of {model.name} did not finish within "
                    f"{BATCH_RESULT_TIMEOUT_S:.0f} s; the server's log says why (try again, or "
                    "restart the server without --enable-batching)",
                    "DEADLINE_EXCEEDED",
                ) from None
            timings = {"queue": info.queue_s * 1e3, "compute": info.compute_s * 1e3}
            timings["batch"] = info.batch_size
        else:
            t0 = time.perf_counter()
            with self._compute, signature.gate or contextlib.nullcontext():
                t1 = time.perf_counter()
                outputs = signature.run(arrays)
                t2 = time.perf_counter()
            self.metrics.compute.labels(model.name, signature.name).observe(t2 - t1)
            timings = {"queue": (t1 - t0) * 1e3, "compute": (t2 - t1) * 1e3}
        self.metrics.items.labels(model.name).inc(n)
        return outputs, timings

    def _make_batcher(self, model: LoadedModel, signature: Signature) -> Batcher:
        compute = self.metrics.compute.labels(model.name, signature.name)
        sizes = self.metrics.batch_size.labels(model.name, signature.name)

        def observe(size: int, seconds: float) -> None:
            compute.observe(seconds)
            sizes.observe(size)

        return Batcher(
            signature.run,
            max_batch_size=self.options.max_batch_size,
            batch_timeout_micros=self.options.batch_timeout_micros,
            num_batch_threads=self.options.num_batch_threads,
            max_enqueued_batches=self.options.max_enqueued_batches,
            on_batch=observe,
            name=f"batch-{model.name}-{model.version}-{signature.name}",
        )

    def close(self) -> None:
        self.registry.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def server_timing(timings: dict[str, float]) -> str:
    """The ``Server-Timing`` header value: ``parse;dur=0.1, queue;dur=0.0, compute;dur=1.2``."""
    return ", ".join(
        f"{k};dur={timings[k]:.3f}" for k in ("parse", "queue", "compute") if k in timings
    )
