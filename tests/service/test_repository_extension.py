"""The model repository extension on a real uvicorn: POST /v2/repository/index, load
(also reload, with requests in flight) and unload, through httpx and tritonclient; bad
model files fail their load with a 4xx while every other model keeps serving.

Each test gets its own server on its own repository (mlp and hadamard), since these
tests change what is loaded."""

from __future__ import annotations

import shutil
import threading

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from live_server import running_server, write_model
from tritonclient.utils import InferenceServerException

from layerserve import examples, initializers
from layerserve.layers import Dense
from layerserve.models import Sequential
from layerserve.service.settings import Settings

ATOL = 1e-5
X = np.random.default_rng(0).random((2, 784), dtype=np.float32)
LEFT, RIGHT = examples.example_inputs(examples.hadamard_model(), batch=2, seed=1)


@pytest.fixture
def repo(tmp_path):
    write_model(tmp_path, "mlp", examples.mlp(), "1", {"max_batch_size": 64})
    write_model(tmp_path, "hadamard", examples.hadamard_model())
    return tmp_path


@pytest.fixture
def server(repo):
    # No polling (Triton's explicit model control): changes on disk wait for a load.
    with running_server(Settings(model_repository=repo, repository_poll_seconds=0)) as url:
        with httpx.Client(base_url=url, timeout=30) as http:
            yield http, triton.InferenceServerClient(url.removeprefix("http://"))


def mlp_infer(http: httpx.Client, x: np.ndarray = X) -> httpx.Response:
    document = {
        "inputs": [
            {
                "name": "hidden_1_input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.reshape(-1).tolist(),
            }
        ]
    }
    return http.post("/v2/models/mlp/infer", json=document)


def assert_mlp_serves(http: httpx.Client, version: str = "1", model=examples.mlp) -> None:
    response = mlp_infer(http)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == version
    values = np.array(body["outputs"][0]["data"], np.float32).reshape(2, 10)
    np.testing.assert_allclose(values, model().predict(X), rtol=0, atol=ATOL)


def assert_hadamard_serves(http: httpx.Client, version: str = "1") -> None:
    document = {
        "inputs": [
            {"name": n, "shape": [2, 8], "datatype": "FP32", "data": a.reshape(-1).tolist()}
            for n, a in (("left", LEFT), ("right", RIGHT))
        ],
        "outputs": [{"name": "hadamard_1"}],
    }
    response = http.post("/v2/models/hadamard/infer", json=document)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == version
    total = examples.hadamard_model().predict([LEFT, RIGHT])[1]
    np.testing.assert_allclose(response.json()["outputs"][0]["data"], total, rtol=0, atol=ATOL)


def index(http: httpx.Client, **body) -> list[dict]:
    response = (
        http.post("/v2/repository/index", json=body) if body else http.post("/v2/repository/index")
    )
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    for fragment in fragments:
        assert fragment in body["error"], body["error"]
    if status == 503:
        assert response.headers["retry-after"].isdigit()
    return body["error"]


READY = [
    {"name": "hadamard", "version": "1", "state": "READY"},
    {"name": "mlp", "version": "1", "state": "READY"},
]


def test_index_with_and_without_ready_filter(server, repo):
    http, client = server
    assert index(http) == READY
    assert index(http, ready=True) == READY
    assert index(http, ready=False) == READY
    assert client.get_model_repository_index() == READY
    # A model put on disk after start is listed, not loaded, until someone loads it.
    write_model(repo, "late", examples.masking_lstm())
    assert index(http) == [
        READY[0],
        {"name": "late", "state": "UNAVAILABLE", "reason": "not loaded"},
        READY[1],
    ]
    assert index(http, ready=True) == READY
    # A model arriving on disk does not make a serving server unready while it waits.
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert_error(http.get("/v2/models/late/ready"), 404, "'late' is not found")
    client.load_model("late")
    assert {"name": "late", "version": "1", "state": "READY"} in index(http, ready=True)
    assert http.get("/v2/health/ready").json() == {"ready": True}
    x = examples.example_inputs(examples.masking_lstm(), batch=2, seed=2)[0]
    request = triton.InferInput("masking_input", list(x.shape), "FP32")
    request.set_data_from_numpy(x)
    result = client.infer("late", [request])
    np.testing.assert_allclose(
        result.as_numpy("lstm"), examples.masking_lstm().predict(x), rtol=0, atol=ATOL
    )


def test_reload_keeps_serving_and_picks_up_a_new_version(server, repo):
    http, client = server
    failures: list[str] = []
    served: list[str] = []
    stop = threading.Event()

    def wait_for_more(requests: int) -> None:
        """Let the clients complete ``requests`` more inferences (the reloads overlap
        a steady stream of requests, not a quiet moment)."""
        target = len(served) + len(failures) + requests
        while len(served) + len(failures) < target and all(t.is_alive() for t in threads):
            threading.Event().wait(0.002)

    def keep_inferring() -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=30) as own:
            while not stop.is_set():
                response = mlp_infer(own)
                if response.status_code != 200:
                    failures.append(response.text)
                    continue
                values = np.array(response.json()["outputs"][0]["data"], np.float32)
                expected = {"1": examples.mlp, "2": second_mlp}[response.json()["model_version"]]
                if not np.allclose(values.reshape(2, 10), expected().predict(X), atol=ATOL):
                    failures.append("wrong values")
                else:
                    served.append(response.json()["model_version"])

    threads = [threading.Thread(target=keep_inferring) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            wait_for_more(5)
            assert http.post("/v2/repository/models/mlp/load").json() == {
                "name": "mlp",
                "load": True,
            }
            assert http.get("/v2/health/ready").status_code == 200
        write_model(repo, "mlp", second_mlp(), "2")
        wait_for_more(5)
        client.load_model("mlp")
        wait_for_more(5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert len(served) >= 20 and served[-1] == "2"
    assert http.get("/v2/models/mlp").json()["versions"] == ["1", "2"]
    assert_mlp_serves(http, version="2", model=second_mlp)
    assert http.get("/v2/models/mlp/versions/1/ready").json() == {"name": "mlp", "ready": True}


def second_mlp() -> Sequential:
    return Sequential(
        [
            Dense(
                10,
                activation="softmax",
                input_shape=(784,),
                kernel_initializer=initializers.glorot_uniform(seed=41),
                name="hidden_1",
            )
        ],
        name="mlp",
    )


def test_unload_then_load_again(server):
    http, client = server
    assert http.post("/v2/repository/models/mlp/unload").json() == {"name": "mlp", "unload": True}
    assert not client.is_model_ready("mlp")
    for response in (
        http.get("/v2/models/mlp/ready"),
        http.get("/v2/models/mlp/versions/1/ready"),
        http.get("/v2/models/mlp"),
        mlp_infer(http),
    ):
        assert_error(response, 503, "'mlp' has no available versions", "unloaded")
    request = triton.InferInput("hidden_1_input", [2, 784], "FP32")
    request.set_data_from_numpy(X)
    with pytest.raises(InferenceServerException) as error:
        client.infer("mlp", [request])
    assert error.value.status() == "503"
    assert index(http) == [READY[0], {"name": "mlp", "state": "UNAVAILABLE", "reason": "unloaded"}]
    assert index(http, ready=True) == [READY[0]]
    # An explicit unload is not a failure: the server stays ready, hadamard serves.
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert_hadamard_serves(http)
    # tritonclient's unload (it sends unload_dependents) of an already unloaded model.
    client.unload_model("mlp")
    client.load_model("mlp")
    assert client.is_model_ready("mlp") and index(http) == READY
    assert_mlp_serves(http)


@pytest.mark.parametrize("action", ["load", "unload"])
def test_load_or_unload_of_an_unknown_model_is_a_404(server, action):
    http, client = server
    assert_error(http.post(f"/v2/repository/models/resnet/{action}"), 404, "'resnet' is not found")
    with pytest.raises(InferenceServerException) as error:
        getattr(client, f"{action}_model")("resnet")
    assert error.value.status() == "404"
    assert index(http) == READY


def test_corrupt_model_fails_its_load_and_the_others_keep_serving(server, repo):
    http, client = server
    (repo / "corrupt" / "1").mkdir(parents=True)
    (repo / "corrupt" / "1" / "model.onnx").write_bytes(b"\x08\x07 not a protobuf")
    message = assert_error(
        http.post("/v2/repository/models/corrupt/load"), 400, "cannot load", "model.onnx"
    )
    with pytest.raises(InferenceServerException) as error:
        client.load_model("corrupt")
    assert error.value.status() == "400"
    entry = next(e for e in index(http) if e["name"] == "corrupt")
    assert entry["state"] == "UNAVAILABLE" and entry["reason"] == message
    assert_error(http.get("/v2/models/corrupt/ready"), 503, "cannot load")
    assert http.get("/v2/health/ready").status_code == 503
    assert_mlp_serves(http)
    assert_hadamard_serves(http)
    # Fixing the file and loading again makes it serve, and the server ready.
    write_model(repo, "corrupt", examples.mlp())
    client.load_model("corrupt")
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert client.is_model_ready("corrupt")


def test_failed_reload_keeps_the_loaded_versions_serving(server, repo):
    http, client = server
    (repo / "hadamard" / "2").mkdir()
    (repo / "hadamard" / "2" / "model.onnx").write_bytes(b"truncated")
    assert_error(http.post("/v2/repository/models/hadamard/load"), 400, "cannot load")
    assert index(http) == READY
    assert_hadamard_serves(http, version="1")
    (repo / "mlp" / "config.json").write_text("{not json")
    assert_error(http.post("/v2/repository/models/mlp/load"), 400, "config.json")
    assert_mlp_serves(http)
    assert http.get("/v2/health/ready").json() == {"ready": True}
    shutil.rmtree(repo / "hadamard" / "2")
    (repo / "mlp" / "config.json").write_text('{"max_batch_size": 4}')
    client.load_model("hadamard")
    client.load_model("mlp")
    assert client.get_model_config("mlp")["max_batch_size"] == 4
    assert_error(mlp_infer(http, np.zeros((5, 784), np.float32)), 400, "batch-size must be <= 4")
