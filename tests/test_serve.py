"""The model server's REST API, started for real as a subprocess, and its client.

A tiny untrained CNN is exported twice (versions 1 and 2) in TensorFlow Serving's
layout and served with the ``all`` version policy; every endpoint and every bad-input case
is exercised over HTTP. gRPC, versions, limits, batching and S3 have their own files.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import orjson
import pytest
from serving_helpers import expected, export_tiny

from workbench.cloud import serving

pytestmark = pytest.mark.slow
MAX_BODY = 300_000
REST_ENCODINGS = sorted(e for e in serving.ENCODINGS if serving.encoding_protocol(e) == "rest")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving")
    models = {}
    for version in (1, 2):
        models[version] = export_tiny(base, version)
    return base, models


@pytest.fixture(scope="module")
def server(exported):
    base, _ = exported
    with serving.serving(base, max_body_bytes=MAX_BODY, version_policy="all") as running:
        yield running


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)


def post(server, path, body):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{server.url}{path}",
        content=content,
        timeout=30,
        headers={"Content-Type": "application/json"},
    )


# ---------------------------------------------------------------- the happy paths


def test_status_lists_versions_newest_first(server):
    r = httpx.get(f"{server.url}/v1/models/tiny").json()
    assert [s["version"] for s in r["model_version_status"]] == ["2", "1"]
    assert all(s["state"] == "AVAILABLE" for s in r["model_version_status"])
    r = httpx.get(f"{server.url}/v1/models/tiny/versions/1").json()
    assert r["model_version_status"][0]["version"] == "1"


def test_metadata_describes_signatures(server):
    meta = httpx.get(f"{server.url}/v1/models/tiny/metadata").json()
    assert meta["model_spec"] == {"name": "tiny", "signature_name": "", "version": "2"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    images = sigs["serving_default"]["inputs"]["images"]
    assert images["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "32", "32", "3"]
    assert sigs["predict_png"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert sigs["serving_default"]["method_name"] == "tensorflow/serving/predict"


@pytest.mark.parametrize("encoding", REST_ENCODINGS)
def test_predict_every_encoding_matches_the_model(server, exported, images, encoding):
    _, models = exported
    with serving.ServingClient(server.url, "tiny") as client:
        p = client.predict(images, encoding=encoding)
    np.testing.assert_allclose(p.outputs, expected(models[2], images), atol=1e-5)
    assert p.server_compute_ms is not None and p.server_compute_ms > 0
    assert p.request_bytes > 0 and p.response_bytes > 0


def test_specific_version_is_served(server, exported, images):
    _, models = exported
    with serving.ServingClient(server.url, "tiny", version=1) as client:
        np.testing.assert_allclose(
            client.predict(images).outputs, expected(models[1], images), atol=1e-5
        )


def test_row_format_with_named_inputs_and_columnar_object(server, exported, images):
    _, models = exported
    rows = post(server, "/v1/models/tiny:predict", {"instances": [{"images": images[0].tolist()}]})
    assert rows.status_code == 200
    np.testing.assert_allclose(
        rows.json()["predictions"], expected(models[2], images[:1]), atol=1e-5
    )
    cols = post(server, "/v1/models/tiny:predict", {"inputs": {"images": images[:2].tolist()}})
    assert cols.status_code == 200 and len(cols.json()["outputs"]) == 2
    timing = serving.parse_server_timing(cols.headers["server-timing"])
    assert set(timing) == {"parse", "queue", "compute"}


def test_float32_outputs_use_float32_digits(server, images):
    r = post(server, "/v1/models/tiny:predict", {"instances": images[:4].tolist()})
    values = np.asarray(r.json()["predictions"], dtype=np.float32)
    # the shortest text that reads back as the same float32, not float64's 17 digits
    assert r.content == orjson.dumps({"predictions": values}, option=orjson.OPT_SERIALIZE_NUMPY)


# ---------------------------------------------------------------- bad input: 4xx JSON, never 500

ONE = np.zeros((1, 32, 32, 3)).tolist()
DEEP = json.dumps({"instances": json.loads("[" * 600 + '"x"' + "]" * 600)}).encode()


@pytest.mark.parametrize(
    "path, body, status, fragment",
    [
        ("/v1/models/tiny:predict", b"{not json", 400, "JSON Parse error"),
        ("/v1/models/tiny:predict", b"[1, 2]", 400, "JSON object"),
        ("/v1/models/tiny:predict", {"instances": np.zeros((1, 28, 28, 3)).tolist()}, 400, "shape"),
        (
            "/v1/models/tiny:predict",
            {"instances": [[[["a"] * 3] * 32] * 32]},
            400,
            "expected numbers",
        ),
        ("/v1/models/tiny:predict", b'{"instances": [[[[NaN, 0, 0]]]]}', 400, "NaN"),
        (
            "/v1/models/tiny:predict",
            {"instances": (np.ones((1, 32, 32, 3)) * 1e39).tolist()},
            400,
            "finite",
        ),
        ("/v1/models/tiny:predict", DEEP, 400, "nested"),
        ("/v1/models/tiny:predict", {"instances": []}, 400, "empty"),
        ("/v1/models/tiny:predict", {"inputs": []}, 400, "empty"),
        ("/v1/models/tiny:predict", {"instances": ONE, "inputs": ONE}, 400, "exactly one"),
        ("/v1/models/tiny:predict", {"signature_name": "nope", "instances": ONE}, 400, "not found"),
        ("/v1/models/tiny:predict", {"instances": [[[1, 2, 3]], [1]]}, 400, "ragged"),
        ("/v1/models/tiny:predict", {"instances": [True]}, 400, "expected numbers"),
        (
            "/v1/models/tiny:predict",
            {"signature_name": "predict_png", "instances": [{"b64": "!!!"}]},
            400,
            "base64",
        ),
        (
            "/v1/models/tiny:predict",
            {
                "signature_name": "predict_png",
                "instances": [{"b64": base64.b64encode(b"not a png").decode()}],
            },
            400,
            "rejected",
        ),
        ("/v1/models/nope:predict", {"instances": ONE}, 404, "Servable not found"),
        ("/v1/models/tiny/versions/7:predict", {"instances": ONE}, 404, "Specific(tiny, 7)"),
        ("/v1/models/tiny/versions/x:predict", {"instances": ONE}, 400, "Invalid version"),
        ("/v1/models/tiny/versions/١:predict", {"instances": ONE}, 400, "Invalid version"),
        ("/v1/models/tiny:classify", {"instances": ONE}, 400, "Unsupported action"),
    ],
)
def test_bad_requests_get_4xx_json(server, path, body, status, fragment):
    r = post(server, path, body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


@pytest.mark.parametrize("version", ["²", "١", "9" * 5000, "-1", "1.0"])
def test_odd_versions_get_400_on_every_route(server, version):
    for suffix in ("", "/metadata"):
        r = httpx.get(f"{server.url}/v1/models/tiny/versions/{version}{suffix}")
        assert r.status_code == 400 and "Invalid version" in r.json()["error"], r.text


def test_body_over_limit_gets_413(server):
    big = {"instances": np.zeros((40, 32, 32, 3)).tolist()}  # > MAX_BODY as JSON
    r = post(server, "/v1/models/tiny:predict", big)
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_chunked_body_over_limit_gets_413(server):
    def chunks():
        yield b'{"instances": ['
        for _ in range(MAX_BODY // 1000 + 5):
            yield b"0," * 500
        yield b"0]}"

    r = httpx.post(f"{server.url}/v1/models/tiny:predict", content=chunks(), timeout=30)
    assert r.status_code == 413


def test_unknown_model_status_is_404(server):
    r = httpx.get(f"{server.url}/v1/models/nope")
    assert r.status_code == 404 and "error" in r.json()


# ---------------------------------------------------------------- operations


def test_health_and_metrics(server):
    health = httpx.get(f"{server.url}/healthz").json()
    assert health["status"] == "ok" and health["models"] == {"tiny": [1, 2]}
    assert health["nonce"] == server.nonce and health["pid"] == server.process.pid
    post(server, "/v1/models/tiny:predict", {"instances": ONE})
    text = httpx.get(f"{server.url}/metrics").text
    assert 'workbench_requests_total{route="predict",status="200"}' in text
    assert 'workbench_requests_total{route="predict",status="400"}' in text
    assert "workbench_request_latency_seconds_bucket" in text
    assert 'workbench_model_compute_seconds_count{model="tiny",signature="serving_default"}' in text


def test_concurrent_clients_get_correct_answers(server, exported):
    _, models = exported
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8) for _ in range(16)]
    want = [expected(models[2], b) for b in batches]

    def worker(i: int) -> int:
        wrong = 0
        with serving.ServingClient(server.url, "tiny") as client:
            for j in range(40):
                k = (i + j) % len(batches)
                if not np.allclose(client.predict(batches[k]).outputs, want[k], atol=1e-5):
                    wrong += 1
        return wrong

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert sum(results) == 0  # 320 requests, no failure (errors raise), all correct


def test_client_reports_unreachable_server_clearly():
    port = serving.free_port()
    with serving.ServingClient(f"http://127.0.0.1:{port}", "tiny", timeout_s=2) as client:
        with pytest.raises(serving.ServerUnreachableError, match="Is it running"):
            client.status()


def test_client_surfaces_server_errors(server):
    with serving.ServingClient(server.url, "nope") as client:
        with pytest.raises(serving.ServingError, match="404"):
            client.status()


def test_server_refuses_missing_model_base(tmp_path):
    with pytest.raises(serving.ServingError, match="does not exist"):
        with serving.serving(tmp_path / "missing", startup_timeout_s=60):
            pass


def test_a_foreign_process_on_the_port_is_not_taken_for_ours(exported):
    """Something else answers /healthz on the port: serving() must refuse, not use it."""

    class Impostor(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b'{"status": "ok", "nonce": "someone else"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    impostor = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Impostor)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    try:
        with pytest.raises(serving.ServingError, match="(taken|in use)"):
            with serving.serving(exported[0], port=impostor.server_address[1]):
                pass
    finally:
        impostor.shutdown()


def test_openapi_fuzz_has_no_server_errors(server):
    """Schemathesis generates requests from the OpenAPI schema; none may produce a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8, "the schema should describe every endpoint"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def fuzz(case):
            case.call_and_validate(base_url=server.url, checks=[not_a_server_error], timeout=30)

        fuzz()
