"""Large JSON bodies are decoded in a worker process (``service/decoding.py``): the
numbers and the errors are exactly those of a body decoded in place, for V2 and TF
Serving, on a real uvicorn."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest
from live_server import running_server, write_model

from layerserve import examples
from layerserve.service.decoding import OFF_LOOP_BYTES, BodyDecoder
from layerserve.service.settings import Settings

ROWS = 160  # about 2.5 MB of JSON: past OFF_LOOP_BYTES


class Served(str):
    """The server's URL, with its body decoder."""

    def __new__(cls, url: str, decoder: BodyDecoder) -> Served:
        served = super().__new__(cls, url)
        served.decoder = decoder
        return served


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("large")
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 4096})
    apps = []
    with running_server(Settings(model_repository=root), customize=apps.append) as url:
        yield Served(url, apps[0].state.dataplane.decoder)


def v2_body(x: np.ndarray) -> bytes:
    tensor = {"name": "hidden_1_input", "shape": list(x.shape), "datatype": "FP32"}
    return orjson.dumps({"inputs": [{**tensor, "data": x.tolist()}]})


def post(url: str, path: str, body: bytes) -> httpx.Response:
    return httpx.post(
        url + path, content=body, headers={"Content-Type": "application/json"}, timeout=60
    )


def test_a_large_v2_body_gives_the_numbers_of_a_small_one(server):
    x = np.random.default_rng(0).random((ROWS, 784), dtype=np.float32)
    small = post(server, "/v2/models/mlp/infer", v2_body(x[:3]))
    assert server.decoder.workers() == []  # small bodies are decoded in place
    body = v2_body(x)
    assert len(body) > OFF_LOOP_BYTES
    response = post(server, "/v2/models/mlp/infer", body)
    assert len(server.decoder.workers()) == 1  # ... a large one in the worker process
    assert response.status_code == 200, response.text
    got = np.asarray(response.json()["outputs"][0]["data"], np.float32).reshape(ROWS, 10)
    np.testing.assert_allclose(got, examples.mlp().predict(x), rtol=1e-5, atol=1e-6)
    assert small.json()["outputs"][0]["data"] == response.json()["outputs"][0]["data"][:30]


def test_a_large_tf_serving_body_gives_the_numbers_of_a_small_one(server):
    x = np.random.default_rng(1).random((ROWS, 784), dtype=np.float32)
    body = orjson.dumps({"instances": x.tolist()})
    assert len(body) > OFF_LOOP_BYTES
    response = post(server, "/v1/models/mlp:predict", body)
    assert response.status_code == 200, response.text
    got = np.asarray(response.json()["predictions"], np.float32)
    np.testing.assert_allclose(got, examples.mlp().predict(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["inputs"][0]["data"][7].__setitem__(3, 3.5e38),
        lambda d: d["inputs"][0].__setitem__("datatype", "INT32"),
        lambda d: d["inputs"][0].__setitem__("name", "nope"),
        lambda d: d.__setitem__("outputs", [{"name": "nope"}]),
    ],
    ids=["fp32-overflow", "wrong-datatype", "unknown-input", "unknown-output"],
)
def test_errors_in_a_large_body_are_those_of_a_small_one(server, change):
    def answer(rows: int) -> httpx.Response:
        x = np.random.default_rng(2).random((rows, 784), dtype=np.float32)
        document = orjson.loads(v2_body(x))
        change(document)
        body = orjson.dumps(document)
        assert (len(body) > OFF_LOOP_BYTES) == (rows == ROWS)
        return post(server, "/v2/models/mlp/infer", body)

    large, small = answer(ROWS), answer(8)
    assert large.status_code == small.status_code == 400, large.text
    assert large.json() == small.json()
