"""The server starts on a repository and answers the V2 basics (details live in the
protocol test files)."""

from __future__ import annotations

import httpx
import numpy as np
import tritonclient.http as triton

from layerserve import examples


def test_health_metadata_and_one_inference_with_tritonclient(server_url):
    client = triton.InferenceServerClient(server_url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_model_metadata("mlp")
    assert metadata["inputs"] == [
        {"name": "hidden_1_input", "datatype": "FP32", "shape": [-1, 784]}
    ]
    assert metadata["versions"] == ["1", "2"]
    x = np.random.default_rng(0).random((2, 784), dtype=np.float32)
    request = triton.InferInput("hidden_1_input", [2, 784], "FP32")
    request.set_data_from_numpy(x, binary_data=True)
    result = client.infer("mlp", [request])
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), examples.mlp().predict(x), rtol=1e-5, atol=1e-6
    )
    assert httpx.get(server_url + "/v2/health/live").json() == {"live": True}
