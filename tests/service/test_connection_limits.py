"""Slow, idle, oversized and too many clients, on a real uvicorn over raw sockets: each is
answered (408, 431, 503) or closed within its limit, and well-behaved clients go on being
served. Every response, the protocol-level ones included, names layerserve as its server."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as tg
from live_server import free_port, running_server, write_model
from raw_http import closed_by_server, read_response
from tritonclient.utils import InferenceServerException

from layerserve import __version__, examples
from layerserve.service.settings import Settings

HEADER_TIMEOUT = 0.6
BODY_TIMEOUT = 0.6
MAX_HEADER_BYTES = 4096
MAX_HEADER_COUNT = 24
MAX_CONNECTIONS = 12
SERVER = f"layerserve/{__version__}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 8})
    settings = Settings(
        model_repository=root,
        header_timeout_seconds=HEADER_TIMEOUT,
        body_timeout_seconds=BODY_TIMEOUT,
        max_header_bytes=MAX_HEADER_BYTES,
        max_header_count=MAX_HEADER_COUNT,
        max_connections=MAX_CONNECTIONS,
    )
    with running_server(settings) as url:
        yield url


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


@contextlib.contextmanager
def raw(url: str) -> Iterator[socket.socket]:
    sock = socket.create_connection(address(url), timeout=5)
    try:
        yield sock
    finally:
        sock.close()


def test_an_idle_connection_is_closed_after_the_header_timeout(server):
    with raw(server) as sock:
        opened = time.monotonic()
        assert closed_by_server(sock)
        waited = time.monotonic() - opened
    assert HEADER_TIMEOUT * 0.8 < waited < HEADER_TIMEOUT + 2


def test_headers_dripped_a_byte_at_a_time_get_408_within_the_header_timeout(server):
    with raw(server) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        sock.settimeout(0.05)
        answer = b""
        while time.monotonic() - started < HEADER_TIMEOUT + 3:
            try:  # read first: the answer arrives between two drips
                chunk = sock.recv(65536)
            except TimeoutError:
                sock.sendall(b"a")
                continue
            answer += chunk
            if not chunk:
                break
        answered = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"\r\nconnection: close" in head
    assert f"\r\nserver: {SERVER}".encode() in head
    assert "LAYERSERVE_HEADER_TIMEOUT_SECONDS" in orjson.loads(body)["error"]
    assert HEADER_TIMEOUT * 0.8 < answered < HEADER_TIMEOUT + 2


def test_a_body_that_stops_arriving_gets_408_and_the_server_goes_on(server):
    with raw(server) as sock:
        sock.sendall(
            b"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 60000000\r\n\r\n{"ready":'
        )
        started = time.monotonic()
        status, headers, body = read_response(sock)
        assert status == 408
        assert "LAYERSERVE_BODY_TIMEOUT_SECONDS" in orjson.loads(body)["error"]
        assert BODY_TIMEOUT * 0.8 < time.monotonic() - started < BODY_TIMEOUT + 2
        assert closed_by_server(sock)
    assert httpx.post(server + "/v2/repository/index", json={}).status_code == 200


def test_a_body_that_trickles_is_not_cut_while_it_keeps_arriving(server):
    body = orjson.dumps({"ready": True})
    with raw(server) as sock:
        sock.sendall(
            b"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        # each pause is shorter than the body timeout, the whole body takes longer
        pieces = [body[i : i + 3] for i in range(0, len(body), 3)]
        pause = BODY_TIMEOUT * 1.5 / len(pieces) + 0.05
        for piece in pieces:
            time.sleep(pause)
            sock.sendall(piece)
        status, _, answer = read_response(sock)
    assert status == 200, answer
    assert pause * len(pieces) > BODY_TIMEOUT


@pytest.mark.parametrize(
    "head",
    [
        b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n",  # one huge header
        b"".join(b"X-F%d: v\r\n" % i for i in range(MAX_HEADER_COUNT + 1)),  # too many
        b"".join(b"X-F%d: %s\r\n" % (i, b"b" * 300) for i in range(MAX_HEADER_COUNT - 4)),
    ],
    ids=["one-megabyte-header", "too-many-fields", "many-medium-fields"],
)
def test_oversized_heads_get_431_and_the_connection_closes(server, head):
    with raw(server) as sock:
        with contextlib.suppress(ConnectionError):  # the server may close mid-upload
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
        status, headers, body = read_response(sock)
        assert status == 431
        assert headers["server"] == SERVER
        error = orjson.loads(body)["error"]
        assert "LAYERSERVE_MAX_HEADER" in error
        assert closed_by_server(sock)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}",
        b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"GET /v2/health/live HTTP/9.9 junk\r\n\r\n",
    ],
    ids=["header-without-colon", "two-content-lengths", "bad-chunk-size", "bad-request-line"],
)
def test_bytes_that_are_not_http_get_a_json_400_and_the_connection_closes(server, request_bytes):
    with raw(server) as sock:
        sock.sendall(request_bytes)
        status, headers, body = read_response(sock)
        assert status == 400
        assert headers["content-type"] == "application/json"
        assert orjson.loads(body) == {
            "error": "Invalid HTTP request received: it is not well-formed HTTP/1.1"
        }
        assert closed_by_server(sock)


def test_a_head_just_under_the_limits_is_served(server):
    headers = {f"x-f{i}": "v" * 100 for i in range(MAX_HEADER_COUNT - 6)}
    response = httpx.get(server + "/v2/health/live", headers=headers)
    assert response.status_code == 200
    assert response.headers["server"] == SERVER


def test_connections_past_the_cap_get_503_and_the_cap_frees_up(server):
    # the fixture's own probes may still hold a connection or two: fill up to the cap
    held = []
    try:
        answered = None
        for _ in range(MAX_CONNECTIONS + 4):
            sock = socket.create_connection(address(server), timeout=5)
            held.append(sock)
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_response(sock)
            if status == 503:
                answered = (headers, body)
                break
            assert status == 200
        assert answered is not None, "no connection was refused"
        headers, body = answered
        assert len(held) <= MAX_CONNECTIONS + 1
        assert headers["retry-after"] == "1"
        assert "LAYERSERVE_MAX_CONNECTIONS" in orjson.loads(body)["error"]
        assert closed_by_server(held.pop())
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while httpx.get(server + "/v2/health/live").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_keep_alive_clients_are_served_many_requests_on_one_connection(server):
    with raw(server) as sock:
        for _ in range(10):
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_response(sock)
            assert (status, orjson.loads(body)) == (200, {"live": True})
            assert headers["server"] == SERVER
            assert "connection" not in headers


def test_grpc_connections_past_the_cap_are_refused_and_the_client_backs_off(tmp_path, caplog):
    """The gRPC port counts its own connections against LAYERSERVE_MAX_CONNECTIONS: one
    past it is closed as it opens, which tritonclient reports as UNAVAILABLE; the client
    backs off rather than coming straight back, and the connections within the cap go
    on being served. The server logs each refusal, naming the setting."""
    write_model(tmp_path, "mlp", examples.mlp(), "1", {"max_batch_size": 8})
    port = free_port()
    settings = Settings(model_repository=tmp_path, grpc_port=port, max_connections=2)
    x = tg.InferInput("hidden_1_input", [1, 784], "FP32")
    x.set_data_from_numpy(np.zeros((1, 784), np.float32))
    expected = examples.mlp().predict(np.zeros((1, 784), np.float32))
    # a connection each (channels to one address in one process share one by default)
    own = [("grpc.use_local_subchannel_pool", 1)]
    target = f"127.0.0.1:{port}"
    with running_server(settings):
        clients = [tg.InferenceServerClient(target, channel_args=own) for _ in range(3)]
        try:
            for client in clients[:2]:
                answer = client.infer("mlp", [x]).as_numpy("probabilities")
                np.testing.assert_allclose(answer, expected, rtol=1e-5, atol=1e-6)
            with pytest.raises(InferenceServerException) as refused:
                clients[2].infer("mlp", [x])
            assert refused.value.status() == "StatusCode.UNAVAILABLE"
            time.sleep(1.0)  # a client that came straight back would be refused ~1000 times
            answer = clients[0].infer("mlp", [x]).as_numpy("probabilities")
            np.testing.assert_allclose(answer, expected, rtol=1e-5, atol=1e-6)
        finally:
            for client in clients:
                client.close()
    refusals = [r for r in caplog.records if "refused a gRPC connection" in r.getMessage()]
    assert 1 <= len(refusals) <= 5
    assert "LAYERSERVE_MAX_CONNECTIONS" in refusals[0].getMessage()
