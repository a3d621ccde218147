"""The direct lane (``service/http_protocol.py``, ``service/api/direct_lane.py``).

On a real uvicorn over raw sockets, with a stand-in answer for the data plane that echoes
each body (``tests/support/direct_stand_in.py``): a plain admitted request is answered by
the connection and never reaches the ASGI application, its body whole and byte for byte
however the client's bytes are cut;
any request that is not plain (100 Continue, an encoded or chunked body, HTTP/1.0)
reaches the application with its admission; pipelined requests are answered in order; the
admission is released once whatever happens to the request (answered, its body stalled, its
client gone); a drain closes the connection after the answer, which a graceful shutdown
waits for.

On the real application: the same requests to a server with the lane and to one without get
the same status, headers and body, the same access log line and the same failure counts,
and the predictions Keras gives, for small bodies and for bodies of several reads.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time

import httpx
import numpy as np
import orjson
import pytest
from direct_stand_in import BODY_TIMEOUT, connect, post, stand_in_server, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_server import running_server, write_model
from raw_http import closed_by_server, read_response, read_responses

from layerserve import examples
from layerserve.service.api.direct_lane import DirectLane
from layerserve.service.settings import Settings


@pytest.fixture
def stand_in():
    with stand_in_server() as running:
        yield running


def test_a_plain_request_is_answered_by_the_connection(stand_in):
    app, _, _, port = stand_in
    body = bytes(range(256)) * 800  # past uvicorn's 64 KiB flow-control mark
    with connect(port) as sock:
        sock.sendall(post("/direct", body))
        status, headers, content = read_response(sock)
    assert (status, content) == (200, b"direct:" + body)
    assert headers["content-length"] == str(len(content))
    assert app.app_calls == []
    assert [p.releases for p in app.places] == [1]


def send_in_pieces(sock: socket.socket, data: bytes, cuts: list[int]) -> None:
    """``data`` sent cut at ``cuts``, each piece given time to arrive as a read of its own."""
    start = 0
    for cut in [*sorted({c % len(data) for c in cuts} - {0}), len(data)]:
        sock.sendall(data[start:cut])
        start = cut
        time.sleep(0.002)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from([1, 65_535, 65_537, 200_000, 262_144, 900_000])
            | st.integers(1, 400_000),
            st.sampled_from(["/direct", "/other"]),
        ),
        min_size=1,
        max_size=4,
    ),
    cuts=st.lists(st.integers(0, 4_000_000), max_size=6),
)
def test_every_body_arrives_whole_however_it_is_cut(stand_in, requests, cuts):
    app, _, _, port = stand_in
    app.answered.clear()  # one server for every example: keep only this one's bodies
    bodies = [np.random.default_rng(seed).bytes(size) for seed, (size, _) in enumerate(requests)]
    stream = b"".join(post(path, body) for (_, path), body in zip(requests, bodies, strict=True))
    with connect(port) as sock:
        send_in_pieces(sock, stream, cuts)
        answers = read_responses(sock, len(requests))
    for (_, path), body, (status, _, content) in zip(requests, bodies, answers, strict=True):
        assert status == 200
        # one behind a request still answered goes to the application, as pipelined ones do
        expected = {b"app:" + path.encode() + b":" + body}
        if path == "/direct":
            expected.add(b"direct:" + body)
        assert content in expected, (path, len(body), content[:40])


@pytest.mark.parametrize(
    ("extra", "version"),
    [
        (("Expect: 100-continue",), "1.1"),
        (("Content-Encoding: identity",), "1.1"),
        ((), "1.0"),
    ],
)
def test_a_request_that_is_not_plain_reaches_the_application_with_its_admission(
    stand_in, extra, version
):
    app, _, _, port = stand_in
    request = post("/direct", b"abc", *extra, version=version)
    with connect(port) as sock:
        if "Expect: 100-continue" in extra:  # the body follows the interim response
            sock.sendall(request[:-3])
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            request = request[-3:]
        sock.sendall(request)
        status, _, content = read_response(sock)
    assert (status, content) == (200, b"app:/direct:abc")
    assert app.answered == []
    assert app.app_calls == [("/direct", app.places[0])]
    assert app.places[0].releases == 1


@pytest.mark.parametrize(("connection", "closes"), [("keep-alive", False), ("close", True)])
def test_the_lane_keeps_or_closes_the_connection_as_asked(stand_in, connection, closes):
    app, _, _, port = stand_in
    with connect(port) as sock:
        sock.sendall(post("/direct", b"abc", f"Connection: {connection}"))
        status, headers, content = read_response(sock)
        assert (status, content) == (200, b"direct:abc")
        assert (headers.get("connection") == "close") is closes
        if not closes:
            sock.sendall(post("/direct", b"again"))
            assert read_response(sock)[2] == b"direct:again"
        else:
            assert closed_by_server(sock)
    assert app.app_calls == []


def test_a_chunked_body_reaches_the_application(stand_in):
    app, _, _, port = stand_in
    with connect(port) as sock:
        sock.sendall(
            b"POST /direct HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
        )
        status, _, content = read_response(sock)
    assert (status, content) == (200, b"app:/direct:abc")
    assert app.answered == []


def test_pipelined_requests_are_answered_in_order(stand_in):
    app, _, _, port = stand_in
    app.hold = asyncio.Event()  # the first answer waits until the others have arrived
    with connect(port) as sock:
        sock.sendall(post("/direct", b"one") + post("/other", b"two") + post("/direct", b"three"))
        wait_for(app.answering.is_set)
        time.sleep(0.1)  # the pipelined requests are read meanwhile
        assert app.app_calls == []  # queued behind the running answer
        app.let_go()
        answers = [content for _, _, content in read_responses(sock, 3)]
    assert answers == [b"direct:one", b"app:/other:two", b"app:/direct:three"]
    # the third one came behind a running request: not admitted from its head, it goes
    # to the application, which admits it itself
    assert [p.releases for p in app.places] == [1]
    assert app.app_calls == [("/other", None), ("/direct", None)]


@pytest.mark.parametrize(
    ("refused", "status"),
    [
        (b"GET /x HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", 431),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
    ],
)
def test_a_refused_pipelined_request_is_answered_after_the_one_before_it(stand_in, refused, status):
    """RFC 9112 section 9.3.2: answers go in the order of the requests. A request
    refused from its head (too many header fields, not HTTP) waits for the answer to the
    request before it; written at once, its client took it for that answer."""
    app, _, _, port = stand_in
    app.hold = asyncio.Event()
    with connect(port) as sock:
        sock.sendall(post("/direct", b"one") + refused)
        wait_for(app.answering.is_set)
        time.sleep(0.1)  # the refused request is read meanwhile
        app.let_go()
        answers = read_responses(sock, 2)
        assert closed_by_server(sock)
    assert [(s, c) for s, _, c in answers][0] == (200, b"direct:one")
    assert answers[1][0] == status, answers[1]


def test_a_pipelined_body_the_server_holds_unread_is_not_timed(stand_in):
    """A request pipelined behind one still answered is not read until that answer is
    out: the rest of its body, sent meanwhile, is no stall of the client's (it got 408,
    and the 408 went out before the first answer)."""
    app, _, _, port = stand_in
    app.hold = asyncio.Event()
    second = post("/other", b"x" * 100)
    with connect(port) as sock:
        sock.sendall(post("/direct", b"one") + second[:-10])
        wait_for(app.answering.is_set)
        time.sleep(BODY_TIMEOUT * 3)
        sock.sendall(second[-10:])
        time.sleep(BODY_TIMEOUT * 3)
        app.let_go()
        answers = [(status, content) for status, _, content in read_responses(sock, 2)]
    assert answers == [(200, b"direct:one"), (200, b"app:/other:" + b"x" * 100)]


@pytest.mark.parametrize("coding", ["gzip, chunked", "Deflate,chunked"])
def test_a_transfer_coding_other_than_chunked_is_a_501(stand_in, coding):
    """RFC 9112 section 6.1: the parser takes a body as chunked only, so a gzip transfer
    coding under chunked reached the application still gzipped (codings it cannot read
    at all, gzip alone, are its 400)."""
    app, _, _, port = stand_in
    with connect(port) as sock:
        head = f"POST /other HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n"
        sock.sendall(head.encode() + b"3\r\nabc\r\n0\r\n\r\n")
        status, _, content = read_response(sock)
        assert closed_by_server(sock)
    assert status == 501, content
    assert "Transfer-Encoding" in orjson.loads(content)["error"]
    assert app.app_calls == []


def test_a_stalled_body_gets_408_and_gives_its_place_back(stand_in):
    app, _, _, port = stand_in
    with connect(port) as sock:
        sock.sendall(post("/direct", b"x" * 100)[:-60])
        started = time.monotonic()
        status, _, content = read_response(sock)
        assert status == 408, content
        assert BODY_TIMEOUT * 0.8 < time.monotonic() - started < BODY_TIMEOUT + 2
        assert closed_by_server(sock)
    wait_for(lambda: app.places[0].releases == 1)
    assert app.answered == []
    wait_for(lambda: app.abandoned == [(b"-", 408)])
    time.sleep(0.2)
    assert app.abandoned == [(b"-", 408)]  # once: not again when the connection closed


def test_a_client_gone_mid_body_gives_its_place_back(stand_in):
    app, _, _, port = stand_in
    with connect(port) as sock:
        sock.sendall(post("/direct", b"x" * 100, "X-Request-ID: gone")[:-60])
        wait_for(lambda: len(app.places) == 1)
    wait_for(lambda: app.places[0].releases == 1)
    assert app.answered == []
    wait_for(lambda: app.abandoned == [(b"gone", 499)])


def test_a_client_gone_while_answered_gives_its_place_back_once(stand_in):
    app, _, _, port = stand_in
    app.hold = asyncio.Event()
    with connect(port) as sock:
        sock.sendall(post("/direct", b"abc"))
        wait_for(app.answering.is_set)
    time.sleep(0.1)
    app.let_go()
    wait_for(lambda: app.answered == [b"abc"])
    wait_for(lambda: app.places[0].releases == 1)
    assert app.abandoned == []  # its body was whole: it was answered, not abandoned


def test_a_drain_answers_the_requests_in_flight_then_closes(stand_in):
    app, policy, server, port = stand_in
    app.hold = asyncio.Event()
    with connect(port) as sock:
        sock.sendall(post("/direct", b"abc") + post("/other", b"next"))
        wait_for(app.answering.is_set)
        policy.draining = True  # as layerserve's server sets it on SIGTERM
        server.should_exit = True  # graceful shutdown: waits for both answers
        wait_for(lambda: refused(port))  # the server has stopped listening
        time.sleep(0.1)
        app.let_go()
        (status, headers, content), (status2, headers2, content2) = read_responses(sock, 2)
        assert (status, content) == (200, b"direct:abc")
        # the drain closes the connection after its newest request, as uvicorn does
        assert headers.get("connection") is None
        assert (status2, content2) == (200, b"app:/other:next")
        assert headers2.get("connection") == "close"
        assert closed_by_server(sock)


@pytest.mark.parametrize(
    ("path", "answer"), [("/direct", b"direct:two"), ("/other", b"app:/other:two")]
)
def test_a_request_sent_on_an_idle_keep_alive_connection_as_the_drain_starts_is_answered(
    stand_in, path, answer
):
    """Between two requests a keep-alive connection is idle; closed at once when the drain
    starts, the request its client sends just then would be lost. It is answered, with
    ``Connection: close``, by the direct lane as by the application."""
    _, policy, server, port = stand_in
    with connect(port) as sock:
        sock.sendall(post(path, b"one"))
        assert read_response(sock)[0] == 200  # the connection stays open, idle
        policy.draining = True  # as layerserve's server sets it on SIGTERM
        server.should_exit = True
        wait_for(lambda: refused(port))  # stopped listening: every connection told to drain
        sock.sendall(post(path, b"two"))
        status, headers, content = read_response(sock)
        assert (status, content) == (200, answer)
        assert headers.get("connection") == "close"
        assert closed_by_server(sock)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


# ---- the real application, with and without the lane --------------------------------
X = np.random.default_rng(1).random((3, 784), dtype=np.float32)
# bodies past 64 KiB, which arrive in several reads
X64 = np.random.default_rng(2).random((64, 784), dtype=np.float32)
X24 = X64[:24]


def binary_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = (
        b'{"inputs":[{"name":"hidden_1_input","shape":[%d,784],"datatype":"FP32",'
        b'"parameters":{"binary_data_size":%d}}],'
        b'"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}'
    ) % (len(x), x.nbytes)
    return header + x.astype("<f4").tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def json_body(x: np.ndarray, shape: list[int] | None = None) -> bytes:
    tensor = {"name": "hidden_1_input", "shape": shape or list(x.shape), "datatype": "FP32"}
    return orjson.dumps({"inputs": [{**tensor, "data": x.ravel().tolist()}]})


REQUESTS = {  # path, body, headers, the status expected
    "binary": ("/v2/models/mlp/infer", *binary_body(X), 200),
    "JSON": ("/v2/models/mlp/versions/1/infer", json_body(X), {}, 200),
    "wrong shape": ("/v2/models/mlp/infer", json_body(X[:, :5]), {}, 400),
    "bad header length": (
        "/v2/models/mlp/infer",
        binary_body(X)[0],
        {"Inference-Header-Content-Length": "many"},
        400,
    ),
    "too large for the model": ("/v2/models/mlp/infer", b"[" + b" " * 600_000 + b"]", {}, 413),
    "too large, bad header length": (
        "/v2/models/mlp/infer",
        b"[" + b" " * 600_000 + b"]",
        {"Inference-Header-Content-Length": "many"},
        400,
    ),
    "too many rows": ("/v2/models/mlp/infer", *binary_body(np.vstack([X, X])), 400),
    "TF Serving rows": ("/v1/models/mlp:predict", orjson.dumps({"instances": X.tolist()}), {}, 200),
    "TF Serving columns": (
        "/v1/models/mlp/versions/1:predict",
        orjson.dumps({"inputs": X.tolist()}),
        {},
        200,
    ),
    "TF Serving wrong shape": (
        "/v1/models/mlp:predict",
        orjson.dumps({"instances": X[:, :5].tolist()}),
        {},
        400,
    ),
    "TF Serving not JSON": ("/v1/models/mlp:predict", b'{"instances": [', {}, 400),
    "TF Serving too large": ("/v1/models/mlp:predict", b"{" + b" " * 600_000 + b"}", {}, 413),
    "binary, 64 rows": ("/v2/models/mlp64/infer", *binary_body(X64), 200),
    "TF Serving rows, 24 rows": (
        "/v1/models/mlp64:predict",
        orjson.dumps({"instances": X24.tolist()}),
        {},
        200,
    ),
}


def with_nan(body: bytes) -> bytes:
    """A TF Serving rows body whose first value is NaN (Python's json parses it)."""
    start = body.index(b"[[") + 2
    return body[:start] + b"NaN" + body[body.index(b",", start) :]


REQUESTS["TF Serving NaN, 24 rows"] = (
    "/v1/models/mlp64:predict",
    with_nan(REQUESTS["TF Serving rows, 24 rows"][1]),
    {},
    200,
)
# the requests whose predictions are checked against Keras
INPUTS = {
    "binary": X,
    "binary, 64 rows": X64,
    "TF Serving rows": X,
    "TF Serving columns": X,
    "TF Serving rows, 24 rows": X24,
}


TAKEN: list[str] = []  # the paths of the requests that took the direct lane
# answered by the application before their bodies arrive (the lane leaves them to it)
REFUSED_BY_THE_HEAD = {
    "bad header length",
    "too large for the model",
    "too large, bad header length",
    "TF Serving too large",
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("lanes")
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 4})
    write_model(root, "mlp64", examples.mlp(), "1", {"max_batch_size": 64})
    # a stalled body is answered 408 after a second
    base = Settings(model_repository=root, access_log=True, body_timeout_seconds=1.0)
    real_request = DirectLane.request

    def counted(self, model, version, admission, url, tf_serving=False):  # type: ignore[no-untyped-def]
        TAKEN.append(url.decode())
        return real_request(self, model, version, admission, url, tf_serving)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DirectLane, "request", counted)
        with (
            running_server(base) as lane,
            running_server(base.model_copy(update={"direct_lane": False})) as whole,
        ):
            yield lane, whole


def failures(url: str) -> int:
    stats = httpx.get(url + "/v2/models/mlp/stats").json()["model_stats"][0]
    return stats["inference_stats"]["fail"]["count"]


@pytest.mark.parametrize("case", REQUESTS)
def test_the_lane_answers_logs_and_counts_as_the_application(servers, case, caplog):
    path, body, headers, expected = REQUESTS[case]
    headers = {**headers, "X-Request-ID": "lane-" + re.sub(r"[^a-z0-9]+", "-", case)}
    answers, lines, counted, taken = [], [], [], []
    for url in servers:
        before = failures(url)
        caplog.clear()
        TAKEN.clear()
        with caplog.at_level(logging.INFO, logger="layerserve.service.requests"):
            response = httpx.post(url + path, content=body, headers=headers, timeout=30)
            # the application's line comes once the response is sent
            wait_for(lambda: any(r.name == "layerserve.service.requests" for r in caplog.records))
        taken.append(list(TAKEN))
        answers.append(
            (
                response.status_code,
                response.content,
                sorted((k, v) for k, v in response.headers.items() if k != "date"),
            )
        )
        lines.append(
            [
                {k: v for k, v in r.fields.items() if k != "duration_ms"}  # type: ignore[attr-defined]
                for r in caplog.records
                if r.name == "layerserve.service.requests"
            ]
        )
        counted.append(failures(url) - before)
    # the lane answered on the first server only, but for a request its head refuses
    assert taken == [[] if case in REFUSED_BY_THE_HEAD else [path], []]
    assert answers[0][0] == expected, answers[0][1]
    assert answers[0] == answers[1]
    assert lines[0] == lines[1] and len(lines[0]) == 1, lines
    assert counted[0] == counted[1] == (answers[0][0] != 200)
    if case not in INPUTS:
        return
    x = INPUTS[case]
    if case.startswith("binary"):
        got = np.frombuffer(answers[0][1][-x.shape[0] * 40 :], "<f4").reshape(-1, 10)
    else:
        document = orjson.loads(answers[0][1])
        got = np.array(document["predictions" if "rows" in case else "outputs"], np.float32)
    np.testing.assert_allclose(got, examples.mlp().predict(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", ["/v2/models/mlp/infer", "/v1/models/mlp:predict"])
def test_a_body_declared_too_large_is_refused_before_it_arrives(servers, path):
    """413 from the Content-Length alone, on either server: the client that waits for an
    early answer gets it, not the 408 of a body that never comes whole."""
    for url in servers:
        with connect(int(url.rsplit(":", 1)[1])) as sock:
            head = post(path, b"[" + b" " * 600_000 + b"]")
            sock.sendall(head[: head.index(b"\r\n\r\n") + 4 + 1000])
            status, _, body = read_response(sock)
        assert status == 413, body
        assert "exceeds the maximum allowed input size" in orjson.loads(body)["error"]


@pytest.mark.parametrize(
    ("path", "stalls", "status"),
    [
        ("/v2/models/mlp/infer?note=1", False, 499),
        ("/v1/models/mlp:predict", False, 499),
        ("/v2/models/mlp/infer", True, 408),
        ("/v2/models/mlp64/infer", False, 499),
        ("/v2/models/mlp64/infer", True, 408),
    ],
)
def test_a_body_never_whole_is_logged_as_the_application_logs_it(
    servers, path, stalls, status, caplog
):
    """A client gone mid-body is logged 499 (nginx's "client closed request"), not 500, by
    either way, and a stalled body with the 408 it was answered, with the same fields;
    nothing is counted as a failure (mlp64: a body of several reads)."""
    body = orjson.dumps({"instances": (X64 if "mlp64" in path else X).tolist()})
    lines, counted, taken = [], [], []
    for url in servers:
        before = failures(url)
        caplog.clear()
        TAKEN.clear()
        with caplog.at_level(logging.INFO, logger="layerserve.service.requests"):
            with connect(int(url.rsplit(":", 1)[1])) as sock:
                sock.sendall(post(path, body, "X-Request-ID: gone")[: -len(body) // 2])
                time.sleep(0.2)  # the head is read, the request under way
                if stalls:
                    assert read_response(sock)[0] == 408
            wait_for(lambda: any(r.name == "layerserve.service.requests" for r in caplog.records))
        taken.append(list(TAKEN))
        lines.append(
            [
                {k: v for k, v in r.fields.items() if k != "duration_ms"}  # type: ignore[attr-defined]
                for r in caplog.records
                if r.name == "layerserve.service.requests"
            ]
        )
        counted.append(failures(url) - before)
    assert taken == [[path], []]
    assert lines[0] == lines[1], lines
    assert lines[0] == [
        {
            "request_id": "gone",
            "method": "POST",
            "path": path.partition("?")[0],
            "status": status,
            "client": "127.0.0.1",
        }
    ]
    assert counted == [0, 0]
