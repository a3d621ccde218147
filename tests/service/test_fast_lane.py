"""The inference fast lane (``service/api/fast_lane.py``) answers exactly as the whole
application does: the same request to a real server (which the lane fronts) and to the
application alone (through Starlette's TestClient, past no lane) gets the same status,
body and headers, for answers and for every kind of refusal."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from live_server import running_server, write_model
from starlette.testclient import TestClient

from layerserve import examples
from layerserve.service.api.app import create_app
from layerserve.service.settings import Settings

TOKEN = "lane-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Request-ID": "same-id"}
X = np.random.default_rng(0).random((2, 784), dtype=np.float32)


def v2(x: np.ndarray, name: str = "hidden_1_input") -> dict:
    return {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}  # fmt: skip


def binary(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = (
        b'{"inputs":[{"name":"hidden_1_input","shape":[2,784],"datatype":"FP32",'
        b'"parameters":{"binary_data_size":6272}}],'
        b'"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}'
    )
    headers = {**AUTH, "Inference-Header-Content-Length": str(len(header))}
    return header + x.astype("<f4").tobytes(), headers


CASES = {
    "V2 JSON": ("/v2/models/mlp/infer", {"json": v2(X)}, AUTH),
    "V2 JSON, a version": ("/v2/models/mlp/versions/1/infer", {"json": v2(X)}, AUTH),
    "V2 binary": ("/v2/models/mlp/infer", {"content": binary(X)[0]}, binary(X)[1]),
    "TF Serving": ("/v1/models/mlp:predict", {"json": {"instances": X.tolist()}}, AUTH),
    "wrong shape": ("/v2/models/mlp/infer", {"json": v2(X[:, :10])}, AUTH),
    "wrong input name": ("/v2/models/mlp/infer", {"json": v2(X, "x")}, AUTH),
    "not JSON": ("/v2/models/mlp/infer", {"content": b"{not json"}, AUTH),
    "unknown model": ("/v2/models/nope/infer", {"json": v2(X)}, AUTH),
    "unknown version": ("/v2/models/mlp/versions/9/infer", {"json": v2(X)}, AUTH),
    "no token": ("/v2/models/mlp/infer", {"json": v2(X)}, {"X-Request-ID": "same-id"}),
    "wrong token": (
        "/v2/models/mlp/infer",
        {"json": v2(X)},
        {"Authorization": "Bearer wrong", "X-Request-ID": "same-id"},
    ),
    "TF Serving, no instances": ("/v1/models/mlp:predict", {"json": {"rows": []}}, AUTH),
}
COMPARED_HEADERS = ("content-type", "x-request-id", "www-authenticate", "retry-after",
                    "inference-header-content-length")  # fmt: skip


@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    repo = tmp_path_factory.mktemp("lane")
    write_model(repo, "mlp", examples.mlp(), "1", {"max_batch_size": 64})
    settings = Settings(model_repository=repo, api_token=TOKEN)
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as lane:
        with TestClient(create_app(settings)) as whole:
            yield lane, whole


@pytest.mark.parametrize("case", CASES)
def test_the_lane_answers_as_the_whole_application(clients, case):
    lane, whole = clients
    path, body, headers = CASES[case]
    fast = lane.post(path, headers=headers, **body)
    full = whole.post(path, headers=headers, **body)
    assert fast.status_code == full.status_code, (fast.text, full.text)
    assert fast.content == full.content
    for name in COMPARED_HEADERS:
        assert fast.headers.get(name) == full.headers.get(name), name
    if case.startswith(("V2 JSON", "TF Serving")) and fast.status_code == 200:
        document = fast.json()
        values = document["outputs"][0]["data"] if "outputs" in document else None
        values = values if values is not None else document["predictions"]
        got = np.asarray(values, np.float32).reshape(2, 10)
        np.testing.assert_allclose(got, examples.mlp().predict(X), rtol=1e-5, atol=1e-6)
