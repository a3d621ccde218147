"""503 + Retry-After when the server is not ready or a queue is full, and 504 when a
request's queue timeout passes, on a real uvicorn; each made deterministic by the
batcher's queue delay."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from grpc_test_models import write_identity
from live_server import pending, running_server, write_model
from tritonclient.utils import InferenceServerException
from v2_mistakes import mlp_input, x_input

from layerserve import examples
from layerserve.service.settings import Settings

# Queue behaviour made deterministic: with max_queue_delay_us the batcher keeps the
# oldest request queued until the delay has passed (or max_batch_size rows are queued).
QUEUE_TIMEOUT = {"max_batch_size": 8, "max_queue_delay_us": 300_000, "queue_timeout_ms": 1}
DELAYED = {"max_batch_size": 8, "max_queue_delay_us": 200_000}
TINY_QUEUE = {"max_batch_size": 8, "max_queue_delay_us": 600_000, "max_queue_size": 1}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("queue_repository")
    write_identity(root, "queue_timeout", "FP32", QUEUE_TIMEOUT)
    write_identity(root, "delayed", "FP32", DELAYED)
    write_identity(root, "expiring", "FP32", DELAYED)
    write_identity(root, "tiny_queue", "FP32", TINY_QUEUE)
    with running_server(Settings(model_repository=root)) as server:
        yield server


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=30) as session:
        yield session


# ---- 503 when not ready -----------------------------------------------------------------
def test_not_ready_server_answers_503_with_retry_after(tmp_path):
    """A model that cannot load keeps the server live but not ready."""
    write_model(tmp_path, "mlp", examples.mlp(), "1", {"max_batch_size": 8})
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"this is not an ONNX file")
    with running_server(Settings(model_repository=tmp_path), wait_ready=False) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_live() and not client.is_server_ready()
        with httpx.Client(base_url=url) as http:
            ready = http.get("/v2/health/ready")
            assert ready.status_code == 503 and ready.headers["retry-after"].isdigit()
            assert "not ready" in ready.json()["error"]
            for response in (
                http.get("/v2/models/broken/ready"),
                http.get("/v2/models/broken"),
                http.post("/v2/models/broken/infer", json={"inputs": [mlp_input()]}),
            ):
                assert response.status_code == 503 and response.headers["retry-after"]
                message = response.json()["error"]
                assert "'broken' has no available versions" in message
                assert "cannot load" in message and "model.onnx" in message
            # The models that loaded keep serving.
            x = np.full((1, 784), 0.25, np.float32)
            response = http.post("/v2/models/mlp/infer", json={"inputs": [mlp_input()]})
            np.testing.assert_allclose(
                response.json()["outputs"][0]["data"],
                examples.mlp().predict(x).reshape(-1),
                atol=1e-5,
            )
            index = http.post("/v2/repository/index").json()
            broken = next(e for e in index if e["name"] == "broken")
            assert broken["state"] == "UNAVAILABLE" and "cannot load" in broken["reason"]


# ---- 504 queue timeouts -----------------------------------------------------------------
def wait_until_queued(url: str, model: str) -> None:
    """Until a request waits in ``model``'s queue (its pending gauge)."""
    deadline = time.monotonic() + 10
    while pending(httpx.get(url + "/metrics").text, model) < 1:
        assert time.monotonic() < deadline, "the first request was never queued"
        time.sleep(0.01)


def identity_request(value: float, **parameters) -> dict:
    document = {"inputs": [x_input("FP32", [value, value + 1, value + 2])]}
    if parameters:
        document["parameters"] = parameters
    return document


def test_queue_timeout_is_a_504(http):
    """queue_timeout_ms 1 while the batcher holds the request up to 300 ms for more
    rows: the request is still queued when its timeout passes."""
    response = http.post("/v2/models/queue_timeout/infer", json=identity_request(1.0))
    assert response.status_code == 504
    assert list(response.json()) == ["error"]
    assert "'queue_timeout' timed out after waiting" in response.json()["error"]


def test_request_timeout_parameter_shortens_the_queue_timeout(url, http):
    """The model's timeout is 30 s; a request's ``timeout`` (µs) below the 200 ms queue
    delay expires, one above it is served."""
    expired = http.post("/v2/models/delayed/infer", json=identity_request(1.0, timeout=1000))
    assert expired.status_code == 504
    assert "'delayed' timed out" in expired.json()["error"]
    served = http.post("/v2/models/delayed/infer", json=identity_request(1.0, timeout=5_000_000))
    assert served.status_code == 200
    assert served.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0]
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    request = triton.InferInput("x", [1, 3], "FP32")
    request.set_data_from_numpy(np.array([[4.0, 5.0, 6.0]], np.float32))
    with pytest.raises(InferenceServerException) as error:
        client.infer("delayed", [request], timeout=1000)
    assert error.value.status() == "504"


def test_a_request_expiring_behind_another_leaves_the_queue_serving(url):
    """A request queued behind another runs out of time first: it gets its 504, and the
    one ahead of it, and every later request, are still served (dropping it once stopped
    the model's queue for good, so that every later request waited out its client)."""

    def send(value: float, **parameters) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=10) as http:
            document = identity_request(value, **parameters)
            return http.post("/v2/models/expiring/infer", json=document)

    with ThreadPoolExecutor(2) as pool:
        ahead = pool.submit(send, 10.0)
        wait_until_queued(url, "expiring")
        behind = pool.submit(send, 20.0, timeout=1000)
        expired, served = behind.result(), ahead.result()
    assert expired.status_code == 504, expired.text
    assert "'expiring' timed out after waiting" in expired.json()["error"]
    assert served.status_code == 200, served.text
    assert served.json()["outputs"][0]["data"] == [10.0, 11.0, 12.0]
    later = send(30.0)
    assert later.status_code == 200, later.text
    assert later.json()["outputs"][0]["data"] == [30.0, 31.0, 32.0]


# ---- 503 queue full ---------------------------------------------------------------------
def test_queue_full_is_a_503_with_retry_after(url):
    """max_queue_size 1, and the batcher keeps the first request queued for 600 ms: the
    requests sent while it waits are refused, and the queued one is served."""

    def send(value: float) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30) as http:
            return http.post("/v2/models/tiny_queue/infer", json=identity_request(value))

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(send, 10.0)
        wait_until_queued(url, "tiny_queue")
        refused = [send(20.0), send(30.0)]
        served = first.result()
    assert served.status_code == 200, served.text
    assert served.json()["outputs"][0]["data"] == [10.0, 11.0, 12.0]
    for response in refused:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
        message = response.json()["error"]
        assert "'tiny_queue' exceeds maximum queue size 1" in message
