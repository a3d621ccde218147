"""A model unloaded through the repository extension answers 503 (with Retry-After) on
every inference and metadata route of both protocols, saying it is unloaded and how to
load it, never "unknown model"; loaded again, it serves. A model that failed to load
says why and how to retry."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from live_server import running_server, write_model
from tritonclient.utils import InferenceServerException

from layerserve import examples
from layerserve.service.settings import Settings

UNLOADED = (
    "model 'mlp' has no available versions: it is unloaded; load it again with "
    "POST /v2/repository/models/mlp/load"
)
ROW = [0.25] * 784
V2_BODY = {
    "inputs": [{"name": "hidden_1_input", "shape": [1, 784], "datatype": "FP32", "data": ROW}]
}
REQUESTS = {
    "v2 infer": ("POST", "/v2/models/mlp/infer", V2_BODY),
    "v2 version infer": ("POST", "/v2/models/mlp/versions/1/infer", V2_BODY),
    "v2 metadata": ("GET", "/v2/models/mlp", None),
    "v2 ready": ("GET", "/v2/models/mlp/ready", None),
    "v2 config": ("GET", "/v2/models/mlp/config", None),
    "tfs metadata": ("GET", "/v1/models/mlp/metadata", None),
    "tfs predict": ("POST", "/v1/models/mlp:predict", {"instances": [ROW]}),
    "tfs version predict": ("POST", "/v1/models/mlp/versions/1:predict", {"instances": [ROW]}),
    "validate": ("POST", "/v1/models/mlp:validate", V2_BODY),
}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("unload_repository")
    write_model(root, "mlp", examples.mlp())
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not an ONNX file")
    with running_server(Settings(model_repository=root), wait_ready=False) as base:
        yield base


def test_an_unloaded_model_says_so_on_every_route_then_serves_when_loaded(url):
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/v2/models/mlp/infer", json=V2_BODY).status_code == 200
        assert http.post("/v2/repository/models/mlp/unload").status_code == 200
        for label, (method, path, body) in REQUESTS.items():
            response = http.request(method, path, json=body)
            assert response.status_code == 503, (label, response.text)
            assert response.headers["retry-after"] == "1"
            assert response.json() == {"error": UNLOADED}, label
        status = http.get("/v1/models/mlp").json()["model_version_status"]
        assert [v["state"] for v in status] == ["END"]

        client = triton.InferenceServerClient(url.removeprefix("http://"))
        tensor = triton.InferInput("hidden_1_input", [1, 784], "FP32")
        tensor.set_data_from_numpy(np.full((1, 784), 0.25, np.float32))
        with pytest.raises(InferenceServerException) as error:
            client.infer("mlp", [tensor])
        assert error.value.status() == "503"
        assert error.value.message() == UNLOADED

        assert http.post("/v2/repository/models/mlp/load").status_code == 200
        served = client.infer("mlp", [tensor]).as_numpy("probabilities")
        np.testing.assert_allclose(
            served, examples.mlp().predict(np.full((1, 784), 0.25, np.float32)), atol=1e-5
        )
        client.close()


def test_an_unknown_model_is_still_unknown(url):
    response = httpx.post(f"{url}/v2/models/nope/infer", json=V2_BODY)
    assert response.status_code == 404
    assert response.json() == {"error": "Request for unknown model: 'nope' is not found"}


def test_a_model_that_failed_to_load_says_why_and_how_to_retry(url):
    response = httpx.get(f"{url}/v2/models/broken")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error.startswith("model 'broken' has no available versions: it failed to load: ")
    assert "model.onnx" in error
    assert error.endswith(
        "; fix the model in the repository and load it (POST /v2/repository/models/broken/load)"
    )
