"""Access and transport: bearer tokens, TLS and mutual TLS on REST and gRPC (the official
``tensorflow-serving-api`` stubs), Host and Origin checks, and the warning for a server that
listens beyond loopback. Certificates are made for the test with ``cryptography``."""

from __future__ import annotations

import ssl

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from security_helpers import certificates, token_file
from serving_helpers import export_tiny
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from workbench.cloud import serving
from workbench.cloud.serving import security
from workbench.cloud.serving.options import ServerOptions

IMAGES = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)


# ---------------------------------------------------------------- the parts, in process


def test_tokens_are_compared_whole_and_by_scheme(tmp_path):
    path, tokens = token_file(tmp_path)
    read = security.read_tokens(path)
    assert read == [t.encode() for t in tokens]  # the comment and blank lines are skipped
    assert security.token_matches(f"Bearer {tokens[1]}", read)
    assert security.token_matches(f"bearer  {tokens[0]} ".encode(), read)
    for wrong in (None, "", tokens[0], f"Basic {tokens[0]}", f"Bearer {tokens[0][:-1]}"):
        assert not security.token_matches(wrong, read)
    (tmp_path / "short").write_text("secret\n")
    with pytest.raises(ValueError, match="shorter than"):
        security.read_tokens(tmp_path / "short")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no token"):
        security.read_tokens(tmp_path / "empty")


def test_listening_beyond_loopback_warns_about_what_is_open(tmp_path):
    assert security.exposure_warnings(ServerOptions(host="127.0.0.1")) == []
    bare = security.exposure_warnings(ServerOptions(host="0.0.0.0", port=8501))
    assert len(bare) == 2 and "anyone who can reach" in bare[0] and "clear text" in bare[1]
    certs = certificates(tmp_path)
    locked = ServerOptions(
        host="0.0.0.0",
        auth_token_file=str(token_file(tmp_path)[0]),
        ssl_certfile=str(certs["server_cert"]),
        ssl_keyfile=str(certs["server_key"]),
    )
    assert security.exposure_warnings(locked) == []


@pytest.mark.filterwarnings("ignore:Using `httpx`")
def test_hosts_origins_and_tokens_in_process(tmp_path):
    from starlette.testclient import TestClient

    from workbench.cloud.serving.registry import VersionPolicy
    from workbench.cloud.serving.rest import build_app
    from workbench.cloud.serving.service import Service

    class Empty:
        policy, poll_error = VersionPolicy.parse("latest"), None

        def served(self):
            return {}

        def status(self, name, version=None):
            from workbench.cloud.serving.errors import RequestError

            raise RequestError(f"Could not find any versions of model {name}", "NOT_FOUND")

        def errors(self):
            return {}

        def close(self):
            pass

    path, tokens = token_file(tmp_path)
    options = ServerOptions(
        auth_token_file=str(path),
        open_health_metrics=True,
        allowed_origins="http://localhost:8888",
    )
    service = Service(options, registry=Empty())
    auth = {"Authorization": f"Bearer {tokens[0]}"}
    with TestClient(build_app(service), base_url="http://127.0.0.1:8501") as client:
        assert client.get("/healthz").status_code == 200  # open: probes need no token
        assert client.get("/metrics").status_code == 200
        r = client.get("/v1/models/m")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/v1/models/m", headers=auth).status_code == 404  # in, no such model
        assert client.get("/openapi.json").status_code == 401
        evil = {"Host": "evil.example:8501", **auth}  # DNS rebinding: a foreign name
        assert client.get("/v1/models/m", headers=evil).status_code == 400
        cross = {"Origin": "http://evil.example", **auth}
        assert client.post("/v1/models/m:predict", headers=cross, content=b"{}").status_code == 403
        ok_origins = ("http://localhost:8888", "http://127.0.0.1:8501")  # allowed, same-origin
        for origin in ok_origins:
            r = client.get("/v1/models/m", headers={"Origin": origin, **auth})
            assert r.status_code == 404, origin
        metrics = client.get("/metrics").text
    assert 'workbench_rejected_requests_total{reason="token"}' in metrics
    assert 'workbench_rejected_requests_total{reason="origin"}' in metrics
    service.close()


# ---------------------------------------------------------------- a real server, tokens


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("serving")
    export_tiny(path, 1)
    return path


@pytest.mark.slow
def test_tokens_on_rest_and_grpc_with_the_official_stubs(base, tmp_path):
    path, tokens = token_file(tmp_path)
    with serving.serving(base, grpc=True, poll_seconds=0, auth_token_file=str(path)) as server:
        r = httpx.post(f"{server.url}/v1/models/tiny:predict", json={"instances": [[0]]})
        assert r.status_code == 401 and "bearer token" in r.json()["error"]
        assert httpx.get(f"{server.url}/healthz").status_code == 401  # not open by default
        with server.client("tiny") as client:  # carries the first token
            rest = client.predict(IMAGES).outputs
        with serving.ServingClient(server.url, "tiny", token=tokens[1]) as client:
            np.testing.assert_allclose(client.predict(IMAGES).outputs, rest, atol=1e-6)
        with serving.ServingClient(server.url, "tiny", token="x" * 40) as client:
            with pytest.raises(serving.ServingError) as err:
                client.predict(IMAGES)
            assert err.value.status == 401

        channel = grpc.insecure_channel(server.grpc_target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tiny"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(IMAGES.astype(np.float32)))
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=30, metadata=[("authorization", "Bearer wrong")])
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = stub.Predict(
            request, timeout=30, metadata=[("authorization", f"Bearer {tokens[0]}")]
        )
        np.testing.assert_allclose(
            tf.make_ndarray(answer.outputs["probabilities"]), rest, atol=1e-6
        )
        channel.close()
        with server.client("tiny", grpc=True) as client:
            np.testing.assert_allclose(client.predict(IMAGES).outputs, rest, atol=1e-6)
        metrics = serving.read_metrics(server.url, token=tokens[0])
    refused = {
        labels["reason"]: value for labels, value in metrics["workbench_rejected_requests_total"]
    }
    assert refused["token"] >= 5


# ---------------------------------------------------------------- a real server, mutual TLS


@pytest.mark.slow
def test_mutual_tls_on_rest_and_grpc_with_the_official_stubs(base, tmp_path):
    certs = certificates(tmp_path / "certs")
    path, tokens = token_file(tmp_path)
    with serving.serving(
        base,
        grpc=True,
        poll_seconds=0,
        auth_token_file=str(path),
        open_health_metrics=True,
        ssl_certfile=str(certs["server_cert"]),
        ssl_keyfile=str(certs["server_key"]),
        ssl_ca_certs=str(certs["ca"]),
        ca_bundle=certs["ca"],
        client_cert=(certs["client_cert"], certs["client_key"]),
    ) as server:
        assert server.url.startswith("https://") and server.grpc_url.startswith("grpcs://")
        with server.client("tiny") as client:
            rest = client.predict(IMAGES).outputs
        with server.client("tiny", grpc=True) as client:
            np.testing.assert_allclose(client.predict(IMAGES).outputs, rest, atol=1e-6)

        # REST: no client certificate, or a server checked against another CA: refused
        with pytest.raises(httpx.HTTPError):
            httpx.get(
                f"{server.url}/healthz", verify=ssl.create_default_context(cafile=certs["ca"])
            )
        other = ssl.create_default_context(cafile=certs["other_ca"])
        other.load_cert_chain(certs["client_cert"], certs["client_key"])
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{server.url}/healthz", verify=other)
        with pytest.raises(httpx.HTTPError):  # plain HTTP to a TLS port
            httpx.get(f"http://127.0.0.1:{server.port}/healthz")
        mine = ssl.create_default_context(cafile=certs["ca"])
        mine.load_cert_chain(certs["client_cert"], certs["client_key"])
        assert httpx.get(f"{server.url}/healthz", verify=mine).status_code == 200  # open
        assert httpx.get(f"{server.url}/v1/models/tiny", verify=mine).status_code == 401

        # gRPC with the official stubs: TLS with the client's certificate, and the token
        def stub(with_cert: bool):
            credentials = grpc.ssl_channel_credentials(
                root_certificates=certs["ca"].read_bytes(),
                private_key=certs["client_key"].read_bytes() if with_cert else None,
                certificate_chain=certs["client_cert"].read_bytes() if with_cert else None,
            )
            channel = grpc.secure_channel(f"localhost:{server.grpc_port}", credentials)
            return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tiny"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(IMAGES.astype(np.float32)))
        token = [("authorization", f"Bearer {tokens[0]}")]
        channel, good = stub(with_cert=True)
        answer = good.Predict(request, timeout=30, metadata=token)
        np.testing.assert_allclose(
            tf.make_ndarray(answer.outputs["probabilities"]), rest, atol=1e-6
        )
        with pytest.raises(grpc.RpcError) as err:
            good.Predict(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        channel.close()
        channel, bare = stub(with_cert=False)
        with pytest.raises(grpc.RpcError) as err:
            bare.Predict(request, timeout=30, metadata=token)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake was refused
        channel.close()
        insecure = grpc.insecure_channel(server.grpc_target)
        with pytest.raises(grpc.RpcError):
            prediction_service_pb2_grpc.PredictionServiceStub(insecure).Predict(
                request, timeout=10, metadata=token
            )
        insecure.close()
