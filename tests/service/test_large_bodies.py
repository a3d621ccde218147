"""Large JSON bodies are decoded, and large JSON answers written, in a worker process
(``service/decoding.py``): the numbers and the errors are exactly those of a body decoded
in place, or an answer written in place, for V2 and TF Serving, on a real uvicorn."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest
from live_server import running_server, write_model

from layerserve import examples, initializers
from layerserve.layers import Dense
from layerserve.models import Sequential
from layerserve.service.decoding import OFF_LOOP_BYTES, OFF_LOOP_VALUES, BodyDecoder
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


# ---- large answers ----------------------------------------------------------------------
def wide() -> Sequential:
    """4 inputs, 4,096 outputs a row (96 rows answer 393,216 values); seeded weights."""
    kernel = initializers.glorot_uniform(seed=7)
    return Sequential([Dense(4096, input_shape=(4,), kernel_initializer=kernel, name="wide")])


WIDE_ROWS = 96


@pytest.fixture(scope="module")
def wide_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("wide")
    write_model(root, "wide", wide(), "1", {"max_batch_size": 128})
    apps = []
    with running_server(Settings(model_repository=root), customize=apps.append) as url:
        yield Served(url, apps[0].state.dataplane.decoder)


def wide_v2_body(x: np.ndarray, binary_output: bool = False) -> bytes:
    tensor = {"name": "wide_input", "shape": list(x.shape), "datatype": "FP32"}
    document = {"inputs": [{**tensor, "data": x.tolist()}]}
    if binary_output:
        document["outputs"] = [{"name": "wide", "parameters": {"binary_data": True}}]
    return orjson.dumps(document)


def test_a_large_answer_is_written_in_the_worker_with_the_numbers_of_a_small_one(wide_server):
    x = np.random.default_rng(3).random((WIDE_ROWS, 4), dtype=np.float32)
    assert WIDE_ROWS * 4096 > OFF_LOOP_VALUES
    small = post(wide_server, "/v2/models/wide/infer", wide_v2_body(x[:2]))
    binary = post(wide_server, "/v2/models/wide/infer", wide_v2_body(x, binary_output=True))
    assert binary.status_code == 200, binary.text
    assert wide_server.decoder.workers() == []  # binary answers are written in place
    response = post(wide_server, "/v2/models/wide/infer", wide_v2_body(x))
    assert len(wide_server.decoder.workers()) == 1  # ... a large JSON one in the worker
    assert response.status_code == 200, response.text
    data = response.json()["outputs"][0]["data"]
    assert small.json()["outputs"][0]["data"] == data[: 2 * 4096]
    expected = wide().predict(x)
    np.testing.assert_allclose(np.reshape(data, (WIDE_ROWS, 4096)), expected, atol=1e-6)
    predicted = post(
        wide_server, "/v1/models/wide:predict", orjson.dumps({"instances": x.tolist()})
    )
    assert predicted.status_code == 200, predicted.text
    np.testing.assert_allclose(predicted.json()["predictions"], expected, atol=1e-6)
