"""The model server's parts without TensorFlow: decoding and limits, version policy and
registry (with a fake loader), batching, local storage, options, and the REST error path."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from workbench.cloud.serving import decode, storage
from workbench.cloud.serving.batching import Batcher
from workbench.cloud.serving.decode import Limits, TensorSpec, derive_limits
from workbench.cloud.serving.errors import RequestError
from workbench.cloud.serving.options import ServerOptions, add_arguments, from_args
from workbench.cloud.serving.registry import Registry, VersionPolicy

IMAGES = TensorSpec("images", "float32", (None, 32, 32, 3))
PNGS = TensorSpec("image_bytes", "string", (None,))
SIGNATURES = {"serving_default": {"images": IMAGES}, "predict_png": {"image_bytes": PNGS}}


@pytest.fixture
def limits() -> Limits:
    return derive_limits(SIGNATURES, max_batch_size=8)


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- limits from signatures


def test_limits_come_from_the_signatures(limits):
    assert limits.image_shape == (32, 32, 3)
    assert limits.max_batch_size == 8
    # the largest legitimate JSON body: 8 images of 3072 numbers, verbose floats
    assert 8 * 3072 * 20 < limits.max_body_bytes < 8 * 200_000
    assert limits.max_values >= 8 * 3072


def test_largest_legitimate_request_passes_the_structure_check(limits):
    body = json.dumps({"instances": (np.ones((8, 32, 32, 3)) * 254.9999).tolist()}, indent=1)
    assert len(body) <= limits.max_body_bytes
    decode.check_structure(body.encode(), limits)
    doc = decode.parse_json(body.encode(), limits)
    arrays, fmt = decode.decode_json_request(doc, SIGNATURES["serving_default"], limits)
    assert arrays["images"].shape == (8, 32, 32, 3) and fmt == "row"


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [' + b"0," * 400_000 + b"0]}",  # a flood of values
        b'{"instances": [' + b"[]," * 100_000 + b"[]]}",  # a flood of empty lists
        b'{"instances": [' + b"{}," * 100_000 + b"{}]}",  # a flood of objects
    ],
)
def test_a_body_holding_more_than_a_batch_is_refused_before_parsing(limits, body):
    with pytest.raises(RequestError, match="max-batch-size"):
        decode.parse_json(body, limits)


def test_too_many_instances_is_400(limits):
    doc = {"instances": np.zeros((9, 32, 32, 3)).tolist()}
    with pytest.raises(RequestError, match="at most 8"):
        decode.decode_json_request(doc, SIGNATURES["serving_default"], limits)


@pytest.mark.parametrize(
    "value, fragment",
    [
        ([[[[1e39, 0, 0]] * 32] * 32], "not finite as float32"),
        ([[[[-1e39, 0, 0]] * 32] * 32], "not finite as float32"),
        ([[[[[[[[1]]]]]]]], "nested more than 4 levels"),
        ([[[[0, 0, 0]] * 32] * 31], "shape"),
        ([[[["a", "b", "c"]] * 32] * 32], "expected numbers"),
        ([[[[0, 0]] * 32] * 32, [[[0, 0, 0]] * 32] * 32], "ragged"),
    ],
)
def test_numeric_inputs_are_strict(limits, value, fragment):
    with pytest.raises(RequestError, match=fragment):
        decode.json_to_array(value, IMAGES, "input", limits)


def test_deep_nesting_is_400_not_a_recursion_error(limits):
    deep: list = ["x"]
    for _ in range(600):
        deep = [deep]
    for spec in (IMAGES, PNGS):
        with pytest.raises(RequestError, match="nested"):
            decode.json_to_array(deep, spec, "input", limits)
    body = json.dumps({"signature_name": "predict_png", "instances": deep}).encode()
    doc = decode.parse_json(body, limits)
    with pytest.raises(RequestError):
        decode.decode_json_request(doc, SIGNATURES["predict_png"], limits)


def test_int8_range_and_integrality():
    spec = TensorSpec("a", "int8", (None, 2))
    lim = derive_limits({"s": {"a": spec}}, max_batch_size=4)
    assert decode.json_to_array([[1, -128]], spec, "a", lim).dtype == np.int8
    with pytest.raises(RequestError, match="range"):
        decode.json_to_array([[300, 0]], spec, "a", lim)
    with pytest.raises(RequestError, match="integers"):
        decode.json_to_array([[1.5, 0]], spec, "a", lim)


# ---------------------------------------------------------------- images: header first


def test_image_header_is_checked_before_decoding(limits):
    good = png(32, 32)
    assert decode.check_image_header(good, "x", limits) == 32 * 32 * 3
    bomb = png(12000, 12000, "L")  # ~140 KB of PNG, 144 MB once decoded
    assert len(bomb) < 1_000_000
    with pytest.raises(RequestError, match="12000x12000"):
        decode.check_image_header(bomb, "x", limits)
    with pytest.raises(RequestError, match="4 channel"):
        decode.check_image_header(png(32, 32, "RGBA"), "x", limits)
    with pytest.raises(RequestError, match="cannot be read"):
        decode.check_image_header(b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "x", limits)
    assert decode.check_image_header(b"raw activation bytes", "x", limits) == 0


def test_b64_strings_go_through_the_image_check(limits):
    value = [{"b64": base64.b64encode(png(64, 64)).decode()}]
    with pytest.raises(RequestError, match="64x64"):
        decode.json_to_array(value, PNGS, "input", limits)
    ok = decode.json_to_array([{"b64": base64.b64encode(png(32, 32)).decode()}], PNGS, "i", limits)
    assert ok.shape == (1,)


# ---------------------------------------------------------------- responses


def test_float32_outputs_are_written_at_float32_precision():
    out = {"p": np.array([[0.1, 1 / 3]], dtype=np.float32)}
    assert decode.encode_json_response(out, "row") == b'{"predictions":[[0.1,0.33333334]]}'
    two = {"a": np.array([1.5], np.float32), "b": np.array([[1, 2]], np.int64)}
    assert json.loads(decode.encode_json_response(two, "row")) == {
        "predictions": [{"a": 1.5, "b": [1, 2]}]
    }
    assert json.loads(decode.encode_json_response(two, "columnar")) == {
        "outputs": {"a": [1.5], "b": [[1, 2]]}
    }


# ---------------------------------------------------------------- versions


@pytest.mark.parametrize(
    "text, kind, versions, n",
    [
        ("latest", "latest", (), 1),
        ("latest:2", "latest", (), 2),
        ("all", "all", (), 1),
        ("specific:3,1", "specific", (1, 3), 1),
    ],
)
def test_version_policy_parses(text, kind, versions, n):
    policy = VersionPolicy.parse(text)
    assert (policy.kind, policy.versions, policy.num_latest) == (kind, versions, n)
    assert VersionPolicy.parse(str(policy)) == policy


@pytest.mark.parametrize("text", ["newest", "latest:0", "specific:", "specific:a", "all:2"])
def test_bad_version_policy_is_refused(text):
    with pytest.raises(ValueError, match="Invalid version policy"):
        VersionPolicy.parse(text)


@pytest.mark.parametrize("text", ["1", "007", "123456789012345678"])
def test_versions_are_ascii_digits(text):
    assert storage.parse_version(text) == int(text)


@pytest.mark.parametrize("text", ["١", "²", "-1", "1.0", "1234567890123456789", "", " 1"])
def test_non_ascii_or_huge_versions_are_not_versions(text):
    assert storage.parse_version(text) is None


class FakeBase:
    """A model base in memory: {name: {version: fingerprint}}; 'broken' fingerprints fail."""

    url = "memory://"

    def __init__(self):
        self.versions: dict[str, dict[int, str]] = {"m": {}}
        self.released: list[int] = []

    def scan(self):
        return {n: dict(v) for n, v in self.versions.items()}

    def fetch(self, name, version):
        return f"{name}/{version}"

    def release(self, name, version):
        self.released.append(version)


class FakeModel:
    def __init__(self, version):
        self.version = version
        self.closed = False

    def close(self):
        self.closed = True


def fake_loader(path, name, version):
    if "broken" in path:
        raise ValueError("not a SavedModel")
    return FakeModel(version)


def registry(policy: str) -> tuple[Registry, FakeBase]:
    base = FakeBase()
    loaded = []

    def loader(path, name, version):
        loaded.append(version)
        fp = base.versions[name][version]
        return fake_loader(f"{path}-{fp}", name, version)

    reg = Registry(base, policy=VersionPolicy.parse(policy), loader=loader)
    reg.loaded = loaded  # type: ignore[attr-defined]
    return reg, base


def states(reg: Registry) -> dict[int, str]:
    return {s.version: s.state for s in reg.status("m")}


def test_latest_policy_swaps_versions_and_falls_back():
    reg, base = registry("latest")
    base.versions["m"] = {1: "a"}
    reg.refresh()
    assert reg.served() == {"m": [1]}
    base.versions["m"][2] = "b"
    reg.refresh()
    assert reg.served() == {"m": [2]} and states(reg) == {2: "AVAILABLE", 1: "END"}
    with pytest.raises(RequestError) as err:
        reg.get("m", 1)
    assert err.value.code == "NOT_FOUND"
    del base.versions["m"][2]  # removed: the previous one comes back
    reg.refresh()
    assert reg.served() == {"m": [1]} and states(reg)[2] == "END"


def test_a_broken_version_is_reported_and_the_good_one_keeps_serving():
    reg, base = registry("latest")
    base.versions["m"] = {1: "a", 2: "broken"}
    reg.refresh()
    assert reg.served() == {"m": [1]}
    broken = reg.status("m", 2)[0]
    assert broken.state == "END" and "not a SavedModel" in broken.error_message
    assert "m/2" in reg.errors()
    reg.refresh()
    assert reg.loaded.count(2) == 1  # the same broken files are not retried every poll
    base.versions["m"][2] = "fixed"
    reg.refresh()
    assert reg.served() == {"m": [2]} and reg.errors() == {}


def test_all_and_specific_policies():
    reg, base = registry("all")
    base.versions["m"] = {1: "a", 2: "b", 3: "c"}
    reg.refresh()
    assert reg.served() == {"m": [1, 2, 3]}
    reg, base = registry("specific:1,3")
    base.versions["m"] = {1: "a", 2: "b", 3: "c"}
    reg.refresh()
    assert reg.served() == {"m": [1, 3]}
    with pytest.raises(RequestError, match="Could not find version 2"):
        reg.status("m", 2)


def test_unknown_model_is_not_found():
    reg, _ = registry("latest")
    reg.refresh()
    with pytest.raises(RequestError, match="Servable not found"):
        reg.get("nope")
    with pytest.raises(RequestError, match="Could not find any versions"):
        reg.status("nope")


def test_a_scan_failure_keeps_serving():
    reg, base = registry("latest")
    base.versions["m"] = {1: "a"}
    reg.refresh()
    base.scan = lambda: (_ for _ in ()).throw(OSError("bucket gone"))
    reg.refresh()
    assert reg.served() == {"m": [1]} and "bucket gone" in reg.poll_error


# ---------------------------------------------------------------- local storage


def test_local_scan_sees_only_complete_ascii_versions(tmp_path):
    for version in ("1", "2", "١", "tmp", ".3"):
        (tmp_path / "m" / version).mkdir(parents=True)
        (tmp_path / "m" / version / "saved_model.pb").write_bytes(b"x")
    (tmp_path / "m" / "4").mkdir()  # no saved_model.pb yet: not a version
    found = storage.LocalBase(tmp_path).scan()
    assert sorted(found["m"]) == [1, 2]
    before = found["m"][1]
    (tmp_path / "m" / "1" / "variables").mkdir()
    (tmp_path / "m" / "1" / "variables" / "v.data").write_bytes(b"yy")
    assert storage.LocalBase(tmp_path).scan()["m"][1] != before


def test_missing_local_base_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        storage.LocalBase(tmp_path / "nope").check()


# ---------------------------------------------------------------- batching


def test_concurrent_requests_are_batched_and_answered_with_their_own_rows():
    calls = []

    def run(inputs):
        calls.append(len(inputs["x"]))
        time.sleep(0.01)
        return {"y": inputs["x"] * 2}

    batcher = Batcher(run, max_batch_size=8, batch_timeout_micros=50_000)
    try:
        with ThreadPoolExecutor(16) as pool:
            futures = [
                pool.submit(lambda i=i: batcher.submit({"x": np.full((1, 2), i)}).result(30))
                for i in range(16)
            ]
            results = [f.result(timeout=60) for f in futures]
    finally:
        batcher.close()
    for i, (rows, info) in enumerate(results):
        assert rows["y"].tolist() == [[2 * i, 2 * i]]
        assert 1 <= info.batch_size <= 8
    assert sum(calls) == 16 and max(calls) > 1 and max(calls) <= 8


def test_a_bad_request_in_a_batch_fails_alone():
    def run(inputs):
        if (inputs["x"] < 0).any():
            raise RequestError("negative")
        return {"y": inputs["x"]}

    batcher = Batcher(run, max_batch_size=4, batch_timeout_micros=100_000)
    try:
        good = batcher.submit({"x": np.ones((1, 1))})
        bad = batcher.submit({"x": -np.ones((1, 1))})
        assert good.result(timeout=30)[0]["y"].tolist() == [[1.0]]
        with pytest.raises(RequestError, match="negative"):
            bad.result(timeout=30)
    finally:
        batcher.close()


def test_a_full_batching_queue_answers_unavailable():
    taken, release = threading.Event(), threading.Event()
    batcher = Batcher(
        lambda x: (taken.set(), release.wait(30), {"y": x["x"]})[2],
        max_batch_size=1,
        batch_timeout_micros=0,
        max_enqueued_batches=2,
    )
    try:
        first = batcher.submit({"x": np.ones((1, 1))})
        assert taken.wait(30), "the batch thread never took the first request"  # and blocks
        batcher.submit({"x": np.ones((1, 1))})
        batcher.submit({"x": np.ones((1, 1))})
        with pytest.raises(RequestError) as err:
            batcher.submit({"x": np.ones((1, 1))})
        assert err.value.code == "UNAVAILABLE" and err.value.http_status == 503
    finally:
        release.set()
        first.result(timeout=5)
        batcher.close()


# ---------------------------------------------------------------- options and the CLI


def test_options_round_trip_through_the_flags():
    import argparse

    opts = ServerOptions(
        model_base="s3://b/p",
        port=1234,
        grpc_port=8500,
        enable_batching=True,
        max_batch_size=16,
        version_policy="all",
        poll_seconds=0.5,
        trust_model=True,
        prefer_tflite_model=True,
        auth_token_file="tokens.txt",
        ssl_certfile="server.crt",
        ssl_keyfile="server.key",
        body_timeout_s=12.5,
        max_connections=64,
        allowed_hosts="models.example.org",
    )
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert from_args(parser.parse_args(opts.to_args())) == opts


# ---------------------------------------------------------------- the REST app's error path


class _Broken:
    """A registry whose lookups fail like a bug would."""

    policy = VersionPolicy.parse("latest")
    poll_error = None

    def get(self, name, version=None):
        raise RuntimeError("simulated bug")

    def served(self):
        return {}

    def errors(self):
        return {}

    def close(self):
        pass


@pytest.mark.filterwarnings("ignore:Using `httpx`")
def test_a_500_is_json_and_logged_with_its_traceback(caplog):
    from starlette.testclient import TestClient

    from workbench.cloud.serving.rest import build_app
    from workbench.cloud.serving.service import Service

    service = Service(ServerOptions(), registry=_Broken())
    with TestClient(  # a loopback Host: a server bound to 127.0.0.1 answers no other name
        build_app(service), base_url="http://127.0.0.1", raise_server_exceptions=False
    ) as client:
        with caplog.at_level(logging.ERROR, logger="workbench.cloud.serving"):
            r = client.post("/v1/models/m:predict", content=b"{}")
        assert r.status_code == 500 and "simulated bug" in r.json()["error"]
        assert any(
            rec.exc_info and "simulated bug" in str(rec.exc_info[1]) for rec in caplog.records
        )
        assert client.get("/v1/models/m/versions/%D9%A1").status_code == 400  # Arabic-Indic 1
        assert client.get("/v1/models/m/versions/" + "9" * 5000).status_code == 400
        assert client.get("/healthz").json()["status"] == "ok"
    service.close()


# ---------------------------------------------------------------- admission


def test_admission_counts_bodies_as_they_arrive_and_slots_apart():
    from workbench.cloud.serving.metrics import ServerMetrics
    from workbench.cloud.serving.service import Admission

    admission = Admission(max_requests=2, max_bytes=1000, metrics=ServerMetrics())
    with admission.body() as slow, admission.body() as big:
        slow.add(1)  # a body trickling in holds almost nothing ...
        big.add(900)
        with pytest.raises(RequestError, match="max-inflight-bytes") as err:
            slow.add(200)  # ... until the budget is spent by others: 503
        assert err.value.http_status == 503 and err.value.retry_after_s == 1
        with admission.slot(), admission.slot():  # slots count requests, not bodies
            with pytest.raises(RequestError, match="max-concurrent-requests"):
                with admission.slot():
                    pass
    with admission.body() as alone:
        alone.add(5_000)  # one request alone may exceed the budget (it would never fit else)
    assert admission.bytes == 0 and admission.requests == 0
