"""Versions as TensorFlow Serving handles them: a new version dropped into the model base is
served within seconds (the old one unloaded under the ``latest`` policy), a removed version
brings the previous one back, and a broken version is reported while the good one serves."""

from __future__ import annotations

import shutil
import threading

import deadlines
import httpx
import numpy as np
import pytest
from serving_helpers import expected, export_tiny, wait_until

from workbench.cloud import serving

pytestmark = pytest.mark.slow


def served(server) -> dict:
    return httpx.get(f"{server.url}/healthz", timeout=10).json()["models"]


def states(server) -> dict[str, tuple[str, str]]:
    doc = httpx.get(f"{server.url}/v1/models/tiny", timeout=10).json()
    return {
        s["version"]: (s["state"], s["status"]["error_message"])
        for s in doc["model_version_status"]
    }


def test_versions_come_and_go_while_serving(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    first = export_tiny(tmp_path, 1)
    with serving.serving(tmp_path, poll_seconds=0.2) as server:
        assert served(server) == {"tiny": [1]}
        failures, stop = [], threading.Event()

        def keep_asking() -> None:  # no request may fail while versions are swapped
            with serving.ServingClient(server.url, "tiny") as client:
                while not stop.is_set():
                    try:
                        client.predict(images)
                    except serving.ServingError as err:
                        failures.append(str(err))

        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            second = export_tiny(tmp_path, 2)
            took = wait_until(lambda: served(server) == {"tiny": [2]}, 20, "version 2 served")
            print(f"version 2 served {took:.1f} s after its export")
            with serving.ServingClient(server.url, "tiny") as client:
                np.testing.assert_allclose(
                    client.predict(images).outputs, expected(second, images), atol=1e-5
                )
            with serving.ServingClient(server.url, "tiny", version=1) as old:
                with pytest.raises(serving.ServingError, match="404"):
                    old.predict(images)
            assert states(server)["2"][0] == "AVAILABLE" and states(server)["1"][0] == "END"

            shutil.rmtree(tmp_path / "tiny" / "2")
            wait_until(lambda: served(server) == {"tiny": [1]}, 20, "version 1 back")
            with serving.ServingClient(server.url, "tiny") as client:
                np.testing.assert_allclose(
                    client.predict(images).outputs, expected(first, images), atol=1e-5
                )
        finally:
            stop.set()
            deadlines.join(asker, timeout_s=60, what="the client asking while versions swap")
        assert failures == []

        broken = tmp_path / "tiny" / "3"
        shutil.copytree(tmp_path / "tiny" / "1", broken)
        (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
        wait_until(lambda: "3" in states(server), 20, "version 3 tried")
        wait_until(lambda: states(server)["3"][0] == "END", 20, "version 3 failed")
        state, message = states(server)["3"]
        assert message, "a broken version must say why in status.error_message"
        assert served(server) == {"tiny": [1]}
        health = httpx.get(f"{server.url}/healthz").json()
        assert "tiny/3" in health["load_errors"]
        with serving.ServingClient(server.url, "tiny") as client:
            np.testing.assert_allclose(
                client.predict(images).outputs, expected(first, images), atol=1e-5
            )
        assert "Failed to load tiny version 3" in server.output()


def test_specific_policy_serves_only_the_named_versions(tmp_path):
    for version in (1, 2, 3):
        export_tiny(tmp_path, version)
    with serving.serving(tmp_path, version_policy="specific:1,3", poll_seconds=0) as server:
        assert served(server) == {"tiny": [1, 3]}
        r = httpx.get(f"{server.url}/v1/models/tiny/versions/2")
        assert r.status_code == 404
