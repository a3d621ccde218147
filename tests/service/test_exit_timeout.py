"""Requests the server stops before answering them, once ``exit_timeout_seconds`` has
passed: one waiting for the model behind slow ones and one whose body is still arriving
each get 503 with Retry-After, and one log line with the status the client got, by the
direct lane as by the application (499 for a client that had left: it heard nothing, as
a client gone before an answer the server did compute); over gRPC such calls end
UNAVAILABLE, and are logged so, apart from calls whose client left (CANCELLED) or whose
deadline passed (DEADLINE_EXCEEDED). The slow model is in ``tests/support/slow_model.py``."""

from __future__ import annotations

import logging
import socket
import time

import grpc
import httpx
import numpy as np
import orjson
import pytest
from live_server import free_port, running_server
from raw_http import read_response
from slow_model import FEATURES, write_slow_model

from layerserve.service.grpc.generated import grpc_service_pb2 as pb
from layerserve.service.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from layerserve.service.settings import Settings

ROWS = 15_000  # about 1.8 s in onnxruntime on one thread of a 2-core machine; under 1 MiB


def infer_request(rows: int, request_id: str) -> bytes:
    x = np.random.default_rng(rows).random((rows, FEATURES), dtype=np.float32)
    header = (
        b'{"inputs":[{"name":"x","shape":[%d,%d],"datatype":"FP32",'
        b'"parameters":{"binary_data_size":%d}}]}'
    ) % (rows, FEATURES, x.nbytes)
    body = header + x.tobytes()
    head = (
        "POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(body)}\r\nInference-Header-Content-Length: {len(header)}\r\n"
        f"X-Request-ID: {request_id}\r\n\r\n"
    )
    return head.encode() + body


def logged_once(caplog: pytest.LogCaptureFixture, path: str) -> dict[str, object]:
    """The access-log status of each request id on ``path``, which has one line each."""
    lines = [
        (r.fields["request_id"], r.fields["status"])  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "layerserve.service.requests" and r.fields["path"] == path  # type: ignore[attr-defined]
    ]
    logged = dict(lines)
    assert sorted(lines) == sorted(logged.items())  # one line each
    return logged


@pytest.mark.parametrize("direct_lane", [True, False], ids=["direct-lane", "application"])
def test_requests_cut_off_at_the_exit_timeout_get_503_and_are_logged_so(
    tmp_path, caplog, direct_lane
):
    write_slow_model(tmp_path, "slow", {"max_batch_size": 0, "instances": 1, "intra_op_threads": 1})
    settings = Settings(
        model_repository=tmp_path,
        access_log=True,
        exit_timeout_seconds=1.0,
        direct_lane=direct_lane,
    )
    names = ["first", "second", "queued", "arriving", "left"]
    with caplog.at_level(logging.INFO, logger="layerserve.service.requests"):
        server = running_server(settings)
        url = server.__enter__()
        port = int(url.rsplit(":", 1)[1])
        sockets = {n: socket.create_connection(("127.0.0.1", port), timeout=30) for n in names}
        try:
            for name in names[:3]:  # one model instance: they run one after the other
                sockets[name].sendall(infer_request(ROWS, name))
                time.sleep(0.05)
            sockets["arriving"].sendall(infer_request(100, "arriving")[:-1000])
            sockets["left"].sendall(infer_request(ROWS, "left"))  # queued last, then gone
            time.sleep(0.3)  # every head read
            sockets["left"].close()
            time.sleep(0.1)
            server.__exit__(None, None, None)  # stops the server: 1 s for what is in flight
            answers = {name: read_response(sockets[name]) for name in names[:4]}
        finally:
            for sock in sockets.values():
                sock.close()
    logged = logged_once(caplog, "/v2/models/slow/infer")
    heard = {name: status for name, (status, _, _) in answers.items()}
    assert logged == {**heard, "left": 499}
    # the third cannot be done within the exit timeout: it waits for two runs of the
    # model, each of about the timeout; the first two are answered or cut off too
    assert (logged["queued"], logged["arriving"]) == (503, 503)
    assert logged["first"] in (200, 503) and logged["second"] in (200, 503)
    status, headers, content = answers["queued"]
    assert headers["retry-after"] == "1" and "exit timeout" in orjson.loads(content)["error"]


@pytest.mark.parametrize("direct_lane", [True, False], ids=["direct-lane", "application"])
def test_a_client_gone_before_its_answer_is_logged_499_and_its_run_counted(
    tmp_path, caplog, direct_lane
):
    """The server runs the request and computes its answer, which nobody reads: the log
    line says what the client heard (nothing: 499), the statistics what the model did."""
    write_slow_model(tmp_path, "slow", {"max_batch_size": 0, "instances": 1, "intra_op_threads": 1})
    settings = Settings(model_repository=tmp_path, access_log=True, direct_lane=direct_lane)
    with caplog.at_level(logging.INFO, logger="layerserve.service.requests"):
        with running_server(settings) as url, httpx.Client(base_url=url) as http:
            port = int(url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(infer_request(ROWS // 5, "left"))  # about 0.4 s of running
                time.sleep(0.1)
            deadline = time.monotonic() + 30
            while not logged_once(caplog, "/v2/models/slow/infer"):
                assert time.monotonic() < deadline, "no access-log line"
                time.sleep(0.05)
            stats = http.get("/v2/models/slow/stats").json()["model_stats"][0]
    assert logged_once(caplog, "/v2/models/slow/infer") == {"left": 499}
    assert stats["inference_stats"]["success"]["count"] == 1


def grpc_request(rows: int) -> pb.ModelInferRequest:
    x = np.random.default_rng(rows).random((rows, FEATURES), dtype=np.float32)
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)
    return pb.ModelInferRequest(
        model_name="slow", inputs=[tensor], raw_input_contents=[x.tobytes()]
    )


def test_grpc_calls_are_logged_with_the_status_their_clients_hear(tmp_path, caplog):
    write_slow_model(tmp_path, "slow", {"max_batch_size": 0, "instances": 1, "intra_op_threads": 1})
    grpc_port = free_port()
    settings = Settings(
        model_repository=tmp_path, access_log=True, exit_timeout_seconds=1.0, grpc_port=grpc_port
    )
    with caplog.at_level(logging.INFO, logger="layerserve.service.requests"):
        server = running_server(settings)
        server.__enter__()
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        try:
            calls = {}

            def call(name: str, timeout: float | None = None) -> None:
                metadata = (("x-request-id", name),)
                calls[name] = infer.future(grpc_request(ROWS), timeout=timeout, metadata=metadata)
                time.sleep(0.05)

            call("first")  # one model instance: the others wait behind it
            call("left")
            call("deadline", timeout=0.5)
            time.sleep(0.3)
            calls["left"].cancel()
            time.sleep(0.5)
            call("second")
            call("queued")
            server.__exit__(None, None, None)  # stops the server: 1 s for what is in flight
            heard = {name: _code(future) for name, future in calls.items()}
        finally:
            channel.close()
    logged = logged_once(caplog, "/inference.GRPCInferenceService/ModelInfer")
    assert logged == heard
    assert logged["left"] == "CANCELLED"
    assert logged["deadline"] == "DEADLINE_EXCEEDED"
    assert logged["queued"] == "UNAVAILABLE"
    assert logged["first"] in ("OK", "UNAVAILABLE") and logged["second"] in ("OK", "UNAVAILABLE")


def _code(future: grpc.Future) -> str:
    """The status a call's client heard."""
    try:
        future.result(timeout=30)
    except grpc.FutureCancelledError:
        return "CANCELLED"
    except grpc.RpcError as exc:
        return exc.code().name
    return "OK"
