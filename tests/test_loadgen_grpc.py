"""The load generator's gRPC side (``layerserve.grpc_loadgen``: pre-serialised ModelInfer
requests, ``drive_grpc``) against a real server on loopback, with the requests read by
tritonclient's own generated protobuf classes (a second implementation of the same
.proto) and the answers compared with the inputs (identity models)."""

from __future__ import annotations

import multiprocessing
import threading

import grpc
import numpy as np
import pytest
from grpc_test_models import DATATYPES, identity_name, write_identity
from live_server import free_port, running_server
from tritonclient.grpc import service_pb2 as tpb

from layerserve.grpc_loadgen import (
    GRPC_MODEL_INFER,
    decode_grpc_response,
    generator_process,
    grpc_infer_request,
    run_grpc_level,
)
from layerserve.loadgen import build_request, http_request
from layerserve.service.settings import Settings


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(HTTP URL, gRPC HOST:PORT) of one server."""
    root = tmp_path_factory.mktemp("loadgen_grpc")
    for datatype in DATATYPES:
        write_identity(root, identity_name(datatype), datatype)
    port = free_port()
    with running_server(Settings(model_repository=root, grpc_port=port)) as url:
        yield url, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def target(server):
    return server[1]


def as_sent(x: np.ndarray) -> np.ndarray:
    """What the server answers for ``x``: text comes back as bytes."""
    if x.dtype == object:
        return np.vectorize(lambda v: v.encode(), otypes=[object])(x)
    return x


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_a_request_reads_as_tritons_and_its_answer_decodes_to_the_input(target, datatype):
    x = DATATYPES[datatype]
    raw = grpc_infer_request(identity_name(datatype), {"x": x}, ["y"])
    request = tpb.ModelInferRequest.FromString(raw)
    assert request.model_name == identity_name(datatype)
    ((tensor,), (output,)) = request.inputs, request.outputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("x", datatype, [2, 3])
    assert output.name == "y"
    assert len(request.raw_input_contents) == 1 and not tensor.HasField("contents")
    with grpc.insecure_channel(target) as channel:
        answer = channel.unary_unary(GRPC_MODEL_INFER)(raw, timeout=30)
    (y,) = decode_grpc_response(answer).values()
    assert y.shape == x.shape
    np.testing.assert_array_equal(y, as_sent(x))


def test_typed_contents_decode_too():
    response = tpb.ModelInferResponse(model_name="m")
    response.outputs.add(name="f", datatype="FP32", shape=[2, 2]).contents.fp32_contents.extend(
        [0.5, -1.0, 2.0, 3.5]
    )
    response.outputs.add(name="i", datatype="INT64", shape=[3]).contents.int64_contents.extend(
        [-(2**40), 0, 7]
    )
    got = decode_grpc_response(response.SerializeToString())
    np.testing.assert_array_equal(got["f"], np.array([[0.5, -1.0], [2.0, 3.5]], np.float32))
    np.testing.assert_array_equal(got["i"], np.array([-(2**40), 0, 7], np.int64))
    assert got["f"].dtype == np.float32 and got["i"].dtype == np.int64


def test_a_level_keeps_its_calls_in_flight_and_counts_them(target):
    raw = grpc_infer_request(identity_name("FP32"), {"x": DATATYPES["FP32"]}, ["y"])
    result = run_grpc_level(target, raw, 6, 2, 0.1, 0.5)
    assert result["errors"] == result["failed"] == 0
    assert result["statuses"] == {"OK": result["received"]}
    assert result["received"] == result["sent"]  # every call answered before the end
    assert 0 < result["latencies"].size <= result["received"]
    assert (result["latencies"] > 0).all()
    assert result["first_error"] is None


def test_failed_calls_are_counted_apart_from_the_latencies(target):
    raw = grpc_infer_request("no_such_model", {"x": DATATYPES["FP32"]}, ["y"])
    result = run_grpc_level(target, raw, 3, 1, 0.05, 0.3)
    assert result["latencies"].size == 0
    assert result["failed"] > 0 and result["errors"] == result["received"]
    assert set(result["statuses"]) == {"NOT_FOUND"}
    code, details = result["first_error"]
    assert code == "NOT_FOUND" and b"no_such_model" in details


def test_a_streaming_level_counts_answers_and_refusals_apart(target):
    raw = grpc_infer_request(identity_name("FP32"), {"x": DATATYPES["FP32"]}, ["y"])
    result = run_grpc_level(target, raw, 4, 2, 0.1, 0.5, streaming=True)
    assert result["errors"] == result["failed"] == 0
    assert result["statuses"] == {"OK": result["received"]}
    assert result["received"] == result["sent"] > 0
    assert 0 < result["latencies"].size <= result["received"]
    # an answer with an error on the stream (an unknown model) is a failure, never counted
    # as throughput, and the stream goes on carrying the next request
    wrong = grpc_infer_request("no_such_model", {"x": DATATYPES["FP32"]}, ["y"])
    refused = run_grpc_level(target, wrong, 2, 1, 0.05, 0.3, streaming=True)
    assert refused["latencies"].size == 0
    assert set(refused["statuses"]) == {"STREAM_ERROR"}
    assert refused["statuses"]["STREAM_ERROR"] == refused["received"] > 2
    code, details = refused["first_error"]
    answer = tpb.ModelStreamInferResponse.FromString(details)
    assert code == "STREAM_ERROR" and "no_such_model" in answer.error_message


def run_in_generator(command):
    parent, child = multiprocessing.Pipe()
    worker = threading.Thread(target=generator_process, args=(child,))
    worker.start()
    parent.send(command)
    result = parent.recv()
    parent.send(None)
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert not isinstance(result, Exception), result
    return result


def test_the_generator_process_runs_a_grpc_command(target):
    raw = grpc_infer_request(identity_name("INT8"), {"x": DATATYPES["INT8"]}, ["y"])
    command = {
        "target": target,
        "request": raw,
        "concurrency": 2,
        "connections": 1,
        "warmup": 0.05,
        "duration": 0.2,
    }
    result = run_in_generator(command)
    assert result["errors"] == 0 and result["latencies"].size > 0
    assert set(result["statuses"]) == {"OK"}


def test_the_generator_process_still_runs_an_http_command(server):
    """The same process serves the HTTP rows: a tuple is run_level's arguments."""
    url = server[0]
    host, port = url.removeprefix("http://").split(":")
    path = f"/v2/models/{identity_name('FP32')}/infer"
    body, headers = build_request("binary", {"x": DATATYPES["FP32"]}, ["y"])
    payload = http_request(host, int(port), path, body, headers)
    result = run_in_generator((host, int(port), payload, 2, 0.05, 0.2))
    assert result["errors"] == 0 and result["latencies"].size > 0
    assert set(result["statuses"]) == {200}
