"""An object-store model base: versions uploaded to a real S3-compatible server (moto's
standalone server on 127.0.0.1, as s3fs's own tests do) are served and polled like a folder.

Needs s3fs (the "cloud" extra) and moto[server] (the "test" extra): skipped without them,
except in CI.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from serving_helpers import expected, export_tiny, require, wait_until

from workbench.cloud import serving
from workbench.cloud.serving import storage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on a free local port; yields the endpoint URL."""
    require("s3fs")
    require("moto.server")
    port = serving.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def bucket(s3, monkeypatch):
    """A fresh bucket; the environment points fsspec (here and in the server) at moto."""
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    fs = s3fs.S3FileSystem(endpoint_url=s3, key="testing", secret="testing")
    fs.mkdir("models")
    yield "s3://models/prefix"
    fs.rm("models", recursive=True)


def test_s3_model_base_is_served_and_polled(bucket, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    first = export_tiny(tmp_path, 1)
    storage.upload_saved_model(tmp_path / "tiny" / "1", f"{bucket}/tiny/1")
    with serving.serving(bucket, poll_seconds=0.5) as server:
        with serving.ServingClient(server.url, "tiny") as client:
            np.testing.assert_allclose(
                client.predict(images).outputs, expected(first, images), atol=1e-5
            )
        second = export_tiny(tmp_path, 2)
        storage.upload_saved_model(tmp_path / "tiny" / "2", f"{bucket}/tiny/2")

        def on_2() -> bool:
            with serving.ServingClient(server.url, "tiny") as client:
                return client.status()["model_version_status"][0]["state"] == "AVAILABLE" and (
                    client.metadata()["model_spec"]["version"] == "2"
                )

        took = wait_until(on_2, 30, "version 2 from S3 served")
        print(f"version 2 served {took:.1f} s after its upload")
        with serving.ServingClient(server.url, "tiny") as client:
            np.testing.assert_allclose(
                client.predict(images).outputs, expected(second, images), atol=1e-5
            )


def test_a_half_uploaded_version_is_invisible(bucket, tmp_path):
    import s3fs

    export_tiny(tmp_path, 1)
    fs = s3fs.S3FileSystem()
    local = tmp_path / "tiny" / "1"
    for path in local.rglob("*"):
        if path.is_file() and path.name != "saved_model.pb":
            fs.put_file(str(path), f"{bucket}/tiny/1/{path.relative_to(local).as_posix()}")
    base = storage.open_base(bucket)
    assert base.scan() == {"tiny": {}}  # no saved_model.pb yet: not a version
    fs.put_file(str(local / "saved_model.pb"), f"{bucket}/tiny/1/saved_model.pb")
    assert list(base.scan()["tiny"]) == [1]
    copy = storage.download_saved_model(f"{bucket}/tiny/1", tmp_path / "copy")
    files = [p.relative_to(copy) for p in copy.rglob("*") if p.is_file()]
    assert sorted(files) == sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())


def test_unreachable_bucket_is_explained(bucket):
    with pytest.raises(serving.ServingError, match="cannot be listed"):
        with serving.serving("s3://no-such-bucket/x", startup_timeout_s=60):
            pass


def test_a_key_that_climbs_out_of_its_folder_is_refused(bucket, tmp_path):
    """An object key is a string: ``tiny/1/variables/../../../x`` must not be written as a path."""
    import s3fs

    export_tiny(tmp_path, 1)
    fs = s3fs.S3FileSystem()
    storage.upload_saved_model(tmp_path / "tiny" / "1", f"{bucket}/tiny/1")
    escape = f"escape-{uuid.uuid4().hex}.txt"
    fs.pipe_file(f"{bucket}/tiny/1/variables/../../../{escape}", b"written outside the cache")
    assert any(".." in key for key in fs.find(f"{bucket}/tiny/1")), "moto keeps the raw key"
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="Refusing the object key"):
        storage.download_saved_model(f"{bucket}/tiny/1", cache / "copy")
    assert not list(tmp_path.rglob(escape)) and not (cache / "copy").exists()

    # the server: the version is refused with the reason, nothing lands outside its cache
    with serving.serving(bucket, poll_seconds=0) as server:
        with server.client("tiny") as client:
            status = client.status()["model_version_status"][0]
        assert status["state"] == "END" and "Refusing the object key" in str(status)
    assert not (Path(tempfile.gettempdir()) / escape).exists()
    assert not list(tmp_path.rglob(escape))


@pytest.mark.parametrize(
    "key", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a\\..\\b", "a/\0b", ""]
)
def test_unsafe_keys_are_refused(key):
    with pytest.raises(ValueError, match="Refusing the object key"):
        storage.safe_relative(key, where="s3://b/p")
    assert str(storage.safe_relative("variables/variables.index", where="s3://b/p")) == (
        "variables/variables.index"
    )
