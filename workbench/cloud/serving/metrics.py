"""The server's Prometheus metrics (scraped at ``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
COMPUTE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    """Counters and histograms of one server, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "workbench_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "workbench_request_latency_seconds",
            "Request latency inside the server",
            ["route"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.grpc_requests = Counter(
            "workbench_grpc_requests_total",
            "gRPC calls by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.compute = Histogram(
            "workbench_model_compute_seconds",
            "Model compute time per model call (one batch when batching)",
            ["model", "signature"],
            registry=r,
            buckets=COMPUTE_BUCKETS,
        )
        self.items = Counter(
            "workbench_predicted_items_total", "Instances predicted", ["model"], registry=r
        )
        self.batch_size = Histogram(
            "workbench_batch_size",
            "Instances per batched model call (with --enable-batching)",
            ["model", "signature"],
            registry=r,
            buckets=BATCH_BUCKETS,
        )
        self.rejected = Counter(
            "workbench_rejected_requests_total",
            "Requests refused before any work: overload (503) or over a size limit",
            ["reason"],
            registry=r,
        )

    def text(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
