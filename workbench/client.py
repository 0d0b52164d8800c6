"""The client side of the cloud tier: TensorFlow Serving's REST API from the edge.

- :class:`ServingClient` talks to :mod:`workbench.serve` or to a real TensorFlow
  Serving container, over one kept-alive HTTP connection.
- :func:`encode_images` builds predict bodies in several encodings (:data:`ENCODINGS`),
  because on a slow uplink the bytes decide.
- :func:`load_test` measures throughput and server utilisation with concurrent clients;
  :func:`read_metrics` and :func:`histogram_buckets` read the server's Prometheus metrics.
"""

import base64
import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass

import numpy as np

SERVER_TIMING = "Server-Timing"


class ServingError(RuntimeError):
    """The server answered with an error. ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerUnreachableError(ServingError):
    """No server answered at the URL (not started, wrong port, or network down)."""


@dataclass
class Prediction:
    """A prediction and what it cost on the wire."""

    outputs: np.ndarray
    elapsed_ms: float  # client-side wall time of the HTTP request
    server_compute_ms: float | None  # from Server-Timing (None against a real TF Serving)
    request_bytes: int
    response_bytes: int


class ServingClient:
    """A client for TensorFlow Serving's REST API (this server or a real TF Serving container).

    Keeps one HTTP/1.1 connection open (keep-alive), as a real edge client would, and
    reconnects once if the server closed it.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8501``.
        model: the model name.
        version: a version number, or ``None`` for the latest.
        timeout_s: per-request timeout.
    """

    def __init__(
        self, url: str, model: str, *, version: int | None = None, timeout_s: float = 30.0
    ) -> None:
        from urllib.parse import urlsplit

        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Not an http(s) URL: {url!r}")
        self._scheme, self._host = parts.scheme, parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self.model = model
        self.version = version
        self.timeout_s = timeout_s
        self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def model_path(self) -> str:
        v = f"/versions/{self.version}" if self.version is not None else ""
        return f"/v1/models/{self.model}{v}"

    def _connection(self):
        import http.client

        if self._conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = cls(self._host, self._port, timeout=self.timeout_s)
        return self._conn

    def _request(
        self, method: str, path: str, content: bytes | None = None
    ) -> tuple[int, dict, bytes]:
        import http.client

        headers = {"Content-Type": "application/json"} if content is not None else {}
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=content, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (ConnectionRefusedError, socket.gaierror, OSError) as err:
                self.close()
                stale = isinstance(
                    err, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                )
                if stale and attempt == 1:
                    continue  # the server closed a kept-alive connection: reconnect once
                if isinstance(err, TimeoutError | socket.timeout):
                    raise ServingError(
                        f"The model server at {self.url} did not answer within "
                        f"{self.timeout_s:g} s ({method} {path})."
                    ) from err
                raise ServerUnreachableError(
                    f"Cannot reach the model server at {self.url} ({type(err).__name__}: {err}). Is it "
                    "running? Start it with `python -m workbench serve` or `workbench.serve.serving()`, "
                    "and check host and port."
                ) from err
        if response.status >= 400:
            try:
                message = json.loads(data).get("error", data.decode(errors="replace"))
            except (ValueError, AttributeError):
                message = data.decode(errors="replace")
            raise ServingError(
                f"{method} {self.url}{path} -> {response.status}: {message}", response.status
            )
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def status(self) -> dict:
        return json.loads(self._request("GET", self.model_path)[2])

    def metadata(self) -> dict:
        return json.loads(self._request("GET", f"{self.model_path}/metadata")[2])

    def predict_body(self, body: bytes) -> Prediction:
        """POST a ready-made predict body; return outputs (predictions or outputs) and costs."""
        import orjson

        t0 = time.perf_counter()
        _, headers, data = self._request("POST", f"{self.model_path}:predict", content=body)
        elapsed = (time.perf_counter() - t0) * 1e3
        doc = orjson.loads(data)
        result = doc["predictions"] if "predictions" in doc else doc["outputs"]
        return Prediction(
            outputs=np.asarray(result, dtype=np.float32)
            if not isinstance(result, dict)
            else result,
            elapsed_ms=elapsed,
            server_compute_ms=parse_server_timing(headers.get("server-timing", "")).get("compute"),
            request_bytes=len(body),
            response_bytes=len(data),
        )

    def predict(self, images: np.ndarray, *, encoding: str = "json") -> Prediction:
        """Predict uint8 images (N, 32, 32, 3) with one of :data:`ENCODINGS`."""
        return self.predict_body(encode_images(images, encoding))


def parse_server_timing(header: str) -> dict[str, float]:
    """``"parse;dur=0.1, compute;dur=1.2"`` -> ``{"parse": 0.1, "compute": 1.2}`` (milliseconds)."""
    out = {}
    for part in header.split(","):
        name, *params = [p.strip() for p in part.split(";")]
        for p in params:
            if p.startswith("dur="):
                with contextlib.suppress(ValueError):
                    out[name] = float(p[4:])
    return out


ENCODINGS = {
    "json": "row format, pixel values as JSON integers (0-255)",
    "json_columnar": "columnar format ('inputs'), JSON integers",
    "json_float": "row format, pixels as JSON floats scaled to [0, 1] and back (what a naive client sends)",
    "png_b64": "row format, each image a base64 PNG for the predict_png signature",
}


def encode_images(images: np.ndarray, encoding: str) -> bytes:
    """A TF Serving predict body for uint8 images in one of :data:`ENCODINGS`."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if encoding == "json":
        doc = {"instances": images.astype(int).tolist()}
    elif encoding == "json_columnar":
        doc = {"inputs": images.astype(int).tolist()}
    elif encoding == "json_float":
        doc = {"instances": ((images.astype(np.float64) / 255.0).round(8) * 255.0).tolist()}
    elif encoding == "png_b64":
        doc = {
            "signature_name": "predict_png",
            "instances": [{"b64": base64.b64encode(png_bytes(img)).decode()} for img in images],
        }
    else:
        raise ValueError(f"Unknown encoding {encoding!r}; choose from {sorted(ENCODINGS)}")
    return json.dumps(doc, separators=(",", ":")).encode()


def png_bytes(image: np.ndarray) -> bytes:
    """Lossless PNG of one uint8 HWC image."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# ===================================================================== load and monitoring


def load_test(
    url: str,
    model: str,
    body: bytes,
    *,
    clients: int = 8,
    requests: int = 400,
    server_pid: int | None = None,
    timeout_s: float = 60.0,
) -> dict:
    """Send ``requests`` predict calls from ``clients`` concurrent clients; measure the server.

    Throughput = completed requests / wall time. Utilisation = server CPU time /
    (wall time x cores), read from the server process with psutil.

    Returns:
        throughput, latency percentiles under load, failures, CPU utilisation.
    """
    from concurrent.futures import ThreadPoolExecutor

    import psutil

    from workbench import bench

    proc = psutil.Process(server_pid) if server_pid else None
    cpu0 = sum(proc.cpu_times()[:2]) if proc else 0.0
    per_client = [
        requests // clients + (1 if i < requests % clients else 0) for i in range(clients)
    ]

    def worker(n: int) -> tuple[list[float], int]:
        lat, failed = [], 0
        with ServingClient(url, model, timeout_s=timeout_s) as client:
            for _ in range(n):
                try:
                    lat.append(client.predict_body(body).elapsed_ms)
                except ServingError:
                    failed += 1
        return lat, failed

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(worker, per_client))
    wall = time.perf_counter() - start
    cpu = (sum(proc.cpu_times()[:2]) - cpu0) if proc else float("nan")
    latencies = [x for lat, _ in results for x in lat]
    failures = sum(f for _, f in results)
    cores = os.cpu_count() or 1
    return {
        "clients": clients,
        "requests": requests,
        "failures": failures,
        "wall_s": wall,
        "throughput_rps": len(latencies) / wall,
        "latency": bench.summarize_ms(latencies).as_dict() if latencies else None,
        "server_cpu_s": cpu,
        "cores": cores,
        "cpu_utilisation": cpu / (wall * cores) if proc else float("nan"),
    }


def read_metrics(url: str) -> dict:
    """Scrape ``/metrics`` into ``{sample name: [(labels, value), ...]}``."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url.rstrip('/')}/metrics", timeout=10).text
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def histogram_buckets(metrics: dict, name: str, **labels: str) -> list[tuple[float, float]]:
    """Non-cumulative ``(upper bound, count)`` pairs of a scraped histogram with these labels."""
    rows = sorted(
        (float(lab["le"]), value)
        for lab, value in metrics.get(f"{name}_bucket", [])
        if all(lab.get(k) == v for k, v in labels.items())
    )
    counts, previous = [], 0.0
    for bound, cumulative in rows:
        counts.append((bound, cumulative - previous))
        previous = cumulative
    return counts
