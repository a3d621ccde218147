"""Refusing early under load, on a real uvicorn: a model whose queue and runs are full
answers 503 from the request's head, before its body is sent; a body larger than any valid
request for the model is refused from its Content-Length; admissions are given back
however a request ends, so a full model frees up. (The figures under load are in
``benchmarks/overload.py``.)"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest
from live_server import pending, running_server, write_model
from slow_model import FEATURES, OUTPUTS, slow_reference, write_slow_model

from layerserve import examples
from layerserve.service.api.shedding import GilHandoff
from layerserve.service.body_limits import ALLOWANCE_BYTES, JSON_BYTES_PER_VALUE
from layerserve.service.http_protocol import REPEATED_REFUSAL_PAUSE_SECONDS
from layerserve.service.settings import Settings

QUEUE = 2
# One instance, no merging: the model admits QUEUE queued requests and one running.
SLOW = {"max_batch_size": 0, "instances": 1, "intra_op_threads": 1, "max_queue_size": QUEUE}
WINDOW = QUEUE + 1
MLP_ROWS = 8
# Requests wait up to 600 ms to be merged, and one may wait: a model that holds its queue
# full while more requests arrive. It admits 1 + 8 requests at once.
GATHERING = {"max_batch_size": 8, "max_queue_delay_us": 600_000, "max_queue_size": 1}
KEEP_ALIVE = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("overload")
    write_slow_model(root, "slow", SLOW)
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": MLP_ROWS})
    write_model(root, "gathering", examples.mlp(), "1", GATHERING)
    settings = Settings(model_repository=root, keep_alive_seconds=KEEP_ALIVE)
    with running_server(settings) as url:
        yield url


def slow_body(x: np.ndarray) -> dict:
    return {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }


def head_only(url: str, path: str, content_length: int) -> tuple[int, dict[str, str], dict, float]:
    """Send a POST's head and no body; the answer, its headers and how long it took."""
    with socket.create_connection(_address(url), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {content_length}\r\n"
            f"X-Request-ID: early-{content_length}\r\n\r\n".encode()
        )
        status, headers, document = read_answer(sock)
        took = time.monotonic() - started
    return status, headers, document, took


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """One answer on a keep-alive connection: its status, headers and JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed without an answer"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = dict(line.lower().split(": ", 1) for line in head.decode().split("\r\n")[1:])
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(head.split()[1]), headers, orjson.loads(body)


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def mlp_body(x: np.ndarray) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {
                    "name": "hidden_1_input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        }
    )


def infer_head(model: str, body: bytes) -> bytes:
    return (
        b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (model.encode(), len(body))
    )


@contextlib.contextmanager
def gathering_held_full(url: str, body: bytes) -> Iterator[None]:
    """While one request waits in the 'gathering' queue (for up to 600 ms), which it fills."""
    held = threading.Thread(
        target=lambda: httpx.post(url + "/v2/models/gathering/infer", content=body, timeout=30)
    )
    held.start()
    deadline = time.monotonic() + 10
    while pending(httpx.get(url + "/metrics").text, "gathering") < 1:
        assert time.monotonic() < deadline, "the request was never queued"
        time.sleep(0.01)
    try:
        yield
    finally:
        held.join(timeout=30)


def failures(url: str, model: str) -> int:
    stats = httpx.get(f"{url}/v2/models/{model}/stats").json()["model_stats"]
    return sum(s["inference_stats"]["fail"]["count"] for s in stats)


def test_a_full_model_answers_503_from_the_head_before_the_body_is_sent(server):
    xs = [
        np.random.default_rng(i).random((4096, FEATURES), dtype=np.float32) for i in range(WINDOW)
    ]
    answers: list[httpx.Response] = []

    def send(x: np.ndarray) -> None:
        answers.append(httpx.post(server + "/v2/models/slow/infer", json=slow_body(x), timeout=60))

    normal_switch = sys.getswitchinterval()
    threads = [threading.Thread(target=send, args=(x,)) for x in xs]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    # until the model is full: one running and QUEUE queued
    while pending(httpx.get(server + "/metrics").text, "slow") < QUEUE:
        assert time.monotonic() < deadline, "the slow requests were not all queued"
        time.sleep(0.02)
    before = failures(server, "slow")
    status, headers, error, took = head_only(server, "/v2/models/slow/infer", 1_000_000)
    assert status == 503, error
    assert f"'slow' exceeds maximum queue size {QUEUE}" in error["error"]
    assert "max_queue_size" in error["error"]
    assert headers["retry-after"] == "1"
    assert headers["x-request-id"] == "early-1000000"
    assert took < 1.0  # answered at once, although the body never came
    # while refusing, the GIL changes hands quickly so the model's threads empty the queue
    assert sys.getswitchinterval() == pytest.approx(GilHandoff.SHEDDING_SWITCH_SECONDS)
    assert failures(server, "slow") == before + 1  # counted, as Triton counts a refusal
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r.status_code for r in answers) == [200] * WINDOW
    for response in answers:
        got = np.asarray(response.json()["outputs"][0]["data"], np.float32)
        assert got.shape == (4096 * OUTPUTS,)
    restored = time.monotonic() + 5
    while sys.getswitchinterval() != normal_switch:  # set back once refusals stop
        assert time.monotonic() < restored
        time.sleep(0.05)
    x = xs[0]
    again = httpx.post(server + "/v2/models/slow/infer", json=slow_body(x[:3]), timeout=60)
    assert again.status_code == 200  # every admission was given back
    got = np.asarray(again.json()["outputs"][0]["data"], np.float32).reshape(3, OUTPUTS)
    np.testing.assert_allclose(got, slow_reference(x[:3]), rtol=1e-4, atol=1e-5)


def test_requests_admitted_from_their_heads_are_never_refused_once_read(server):
    """Three heads reach a model whose queue holds one while its queue is empty: all three
    are admitted. Their bodies, sent only then, are queued although the first fills the
    queue, and all three are served (a refusal now would throw away the reading and
    decoding it was admitted for)."""
    xs = [np.random.default_rng(10 + i).random((1, 784), dtype=np.float32) for i in range(3)]
    bodies = [mlp_body(x) for x in xs]
    socks = [socket.create_connection(_address(server), timeout=10) for _ in bodies]
    try:
        for sock, body in zip(socks, bodies, strict=True):
            sock.sendall(infer_head("gathering", body))
        time.sleep(0.3)  # every head is read and admitted; no body has come
        for sock, body in zip(socks, bodies, strict=True):
            sock.sendall(body)
        answers = [read_answer(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    reference = examples.mlp().predict(np.concatenate(xs))
    for (status, _, document), expected in zip(answers, reference, strict=True):
        assert status == 200, document
        got = np.asarray(document["outputs"][0]["data"], np.float32)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # and once they are answered, the queue refuses as before: one waits, the next is 503
    with gathering_held_full(server, bodies[0]):
        refused = httpx.post(server + "/v2/models/gathering/infer", content=bodies[1])
    assert refused.status_code == 503, refused.text
    assert "'gathering' exceeds maximum queue size 1" in refused.json()["error"]


def test_a_client_that_resends_at_once_is_paced(server):
    """While a request fills the model, a keep-alive client resends at once after each
    503: its first and second requests are answered at once, and its third is read only
    after REPEATED_REFUSAL_PAUSE_SECONDS, since the second came within Retry-After of the
    first (it did not wait)."""
    body = mlp_body(np.random.default_rng(20).random((1, 784), dtype=np.float32))
    sent, answers = [], []
    with gathering_held_full(server, body):
        with socket.create_connection(_address(server), timeout=10) as sock:
            for _ in range(3):  # all within the 600 ms the queued request waits
                sent.append(time.monotonic())
                sock.sendall(infer_head("gathering", body) + body)
                answers.append((*read_answer(sock), time.monotonic()))
    for status, headers, document, _ in answers:
        assert status == 503, document
        assert headers["retry-after"] == "1"
        assert "'gathering' exceeds maximum queue size 1" in document["error"]
    # the third request waited in the socket for the pause that followed the second
    assert answers[2][3] - sent[1] >= REPEATED_REFUSAL_PAUSE_SECONDS


def test_a_refusal_is_logged_as_every_answered_request_is(tmp_path, caplog):
    """The access log line of a request refused from its head has the fields of any other
    request's line (``api/request_log.py``): its method, path without the query, status,
    duration and client."""
    write_model(tmp_path, "gathering", examples.mlp(), "1", GATHERING)
    body = mlp_body(np.random.default_rng(21).random((1, 784), dtype=np.float32))
    settings = Settings(model_repository=tmp_path, access_log=True)
    with (
        caplog.at_level(logging.INFO, logger="layerserve.service.requests"),
        running_server(settings) as url,
        gathering_held_full(url, body),
    ):
        status, _, _, _ = head_only(url, "/v2/models/gathering/infer?note=1", 1000)
    assert status == 503
    lines = [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "layerserve.service.requests" and r.fields["status"] == 503  # type: ignore[attr-defined]
    ]
    assert len(lines) == 1, lines
    duration = lines[0].pop("duration_ms")
    assert isinstance(duration, float) and 0 <= duration < 1000
    assert lines[0] == {
        "request_id": "early-1000",
        "method": "POST",
        "path": "/v2/models/gathering/infer",
        "status": 503,
        "client": "127.0.0.1",
    }
    answered = [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "layerserve.service.requests" and r.fields["status"] == 200  # type: ignore[attr-defined]
    ]
    assert answered and set(answered[0]) == {*lines[0], "duration_ms"}  # the held request's


def test_an_idle_connection_after_a_refusal_closes_after_the_keep_alive(server):
    """A 503 answered from the head leaves the connection open for the next request, and
    idle, it closes after keep_alive_seconds, as after any other answer."""
    body = mlp_body(np.random.default_rng(30).random((1, 784), dtype=np.float32))
    with gathering_held_full(server, body):
        with socket.create_connection(_address(server), timeout=10) as sock:
            sock.sendall(infer_head("gathering", body) + body)
            status, _, document = read_answer(sock)
            idle_from = time.monotonic()
            closed = sock.recv(1) == b""  # blocks until the server closes (or 10 s)
            idle = time.monotonic() - idle_from
    assert status == 503, document
    assert closed
    assert KEEP_ALIVE * 0.5 < idle < KEEP_ALIVE * 5


@pytest.mark.parametrize(
    "send",
    [
        lambda url: httpx.post(url + "/v2/models/slow/infer", content=b"{not json"),
        lambda url: httpx.post(url + "/v2/models/slow/infer", json={"inputs": []}),
        lambda url: httpx.post(
            url + "/v1/models/slow:predict", json={"instances": [[0.5] * FEATURES]}
        ),
        lambda url: httpx.post(
            url + "/v2/models/slow/infer",
            json={
                "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]
            },
        ),
    ],
    ids=["bad-json", "no-inputs", "tf-serving", "wrong-shape"],
)
def test_admissions_are_given_back_however_a_request_ends(server, send):
    for _ in range(WINDOW + 2):  # a leak would fill the model within the window
        assert send(server).status_code in (200, 400)
    x = np.random.default_rng(5).random((2, FEATURES), dtype=np.float32)
    response = httpx.post(server + "/v2/models/slow/infer", json=slow_body(x), timeout=60)
    assert response.status_code == 200, response.text


def test_a_body_larger_than_any_valid_request_is_refused_from_its_header(server):
    limit = MLP_ROWS * 784 * JSON_BYTES_PER_VALUE + ALLOWANCE_BYTES
    status, _, error, took = head_only(server, "/v2/models/mlp/infer", 60_000_000)
    assert status == 413
    assert f"maximum allowed input size of {limit} bytes" in error["error"]
    assert (
        f"the most a request for model 'mlp' can need: {MLP_ROWS} row(s) of 784 values"
        in error["error"]
    )
    assert took < 1.0
    # a full batch, pretty-printed, is well inside the limit and served
    x = np.random.default_rng(2).random((MLP_ROWS, 784), dtype=np.float32)
    body = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "hidden_1_input",
                    "shape": [MLP_ROWS, 784],
                    "datatype": "FP32",
                    "data": x.tolist(),
                }
            ]
        },
        option=orjson.OPT_INDENT_2,
    )
    assert len(body) < limit
    response = httpx.post(
        server + "/v2/models/mlp/infer", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    got = np.asarray(response.json()["outputs"][0]["data"], np.float32).reshape(MLP_ROWS, 10)
    np.testing.assert_allclose(got, examples.mlp().predict(x), rtol=1e-5, atol=1e-6)


def test_a_model_with_a_variable_size_keeps_the_server_limit(server):
    status, _, error, _ = head_only(server, "/v2/models/slow/infer", 65 * 1024 * 1024)
    assert status == 413
    assert "LAYERSERVE_MAX_REQUEST_BYTES" in error["error"]
