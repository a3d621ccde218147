"""The load generator's gRPC side (``layerserve.grpc_loadgen``: pre-serialised ModelInfer
requests, ``drive_grpc`` on the raw HTTP/2 connections of ``layerserve.h2_loadgen``)
against real servers on loopback: layerserve's own HTTP/2 server and grpcio's (gRPC core:
a second HTTP/2 implementation, with an HPACK dynamic table, 16 KiB frames and its own
windows). Requests are read by tritonclient's own generated protobuf classes (a second
implementation of the same .proto) and the answers compared with the inputs (identity
models); each level's count of calls is checked against the server's own statistics."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading

import grpc
import hpack
import httpx
import numpy as np
import pytest
from grpc_test_models import DATATYPES, identity_name, write_identity
from hypothesis import given, settings
from hypothesis import strategies as st
from live_server import free_port, running_server
from tritonclient.grpc import service_pb2 as tpb

from layerserve import h2_loadgen as h2
from layerserve.grpc_loadgen import (
    GRPC_MODEL_INFER,
    decode_grpc_response,
    generator_process,
    grpc_infer_request,
    run_grpc_level,
)
from layerserve.h2_loadgen import request_header_blocks
from layerserve.hpack_blocks import HeaderBlocks
from layerserve.loadgen import build_request, http_request, new_level_state
from layerserve.service.settings import Settings

TOKEN = "load-generator-token"
LIMIT = 8 * 2**20


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


@pytest.fixture(scope="module")
def grpcio_server(tmp_path_factory):
    """(HTTP URL, gRPC HOST:PORT) of a server whose gRPC port is grpcio's, with a message
    limit of 8 MiB and an API token."""
    root = tmp_path_factory.mktemp("loadgen_grpcio")
    write_identity(root, identity_name("FP32"), "FP32", {"max_batch_size": 0})  # any rows
    port = free_port()
    settings = Settings(
        model_repository=root,
        grpc_port=port,
        grpc_server="grpcio",
        grpc_max_message_bytes=LIMIT,
        api_token=TOKEN,
    )
    with running_server(settings) as url:
        yield url, f"127.0.0.1:{port}"


def inference_count(url: str, model: str, headers: dict[str, str] | None = None) -> int:
    stats = httpx.get(f"{url}/v2/models/{model}/stats", headers=headers).json()
    return sum(entry["inference_stats"]["success"]["count"] for entry in stats["model_stats"])


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


def test_a_level_keeps_its_calls_in_flight_and_counts_them(server, target):
    model = identity_name("FP32")
    raw = grpc_infer_request(model, {"x": DATATYPES["FP32"]}, ["y"])
    before = inference_count(server[0], model)
    result = run_grpc_level(target, raw, 6, 2, 0.1, 0.5)
    assert inference_count(server[0], model) - before == result["received"]
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


AUTH = [("authorization", f"Bearer {TOKEN}")]


@pytest.mark.parametrize("streaming", [False, True])
def test_grpcios_server_answers_every_call_of_a_level(grpcio_server, streaming):
    """gRPC core's HTTP/2: its dynamic HPACK table (header blocks that change the table
    are decoded, never taken from the generator's cache) and its 4 MiB windows, which a
    6 MB message has to wait for."""
    url, target = grpcio_server
    model = identity_name("FP32")
    x = np.random.default_rng(0).random((500_000, 3), dtype=np.float32)  # 6 MB
    raw = grpc_infer_request(model, {"x": x}, ["y"])
    headers = {"authorization": f"Bearer {TOKEN}"}
    before = inference_count(url, model, headers)
    result = run_grpc_level(target, raw, 4, 2, 0.1, 0.8, metadata=AUTH, streaming=streaming)
    assert result["first_error"] is None
    assert result["statuses"] == {"OK": result["received"]}
    assert result["received"] == result["sent"] > 4
    assert inference_count(url, model, headers) - before == result["received"]


def test_refusals_of_grpcios_server_are_counted_by_status(grpcio_server):
    _, target = grpcio_server
    raw = grpc_infer_request(identity_name("FP32"), {"x": DATATYPES["FP32"]}, ["y"])
    unauthenticated = run_grpc_level(target, raw, 2, 1, 0.05, 0.3)
    assert set(unauthenticated["statuses"]) == {"UNAUTHENTICATED"}
    assert unauthenticated["latencies"].size == 0 and unauthenticated["failed"] > 0
    big = np.zeros((LIMIT // 12 + 1, 3), np.float32)  # over the limit
    too_big = grpc_infer_request(identity_name("FP32"), {"x": big}, ["y"])
    refused = run_grpc_level(target, too_big, 2, 1, 0.05, 0.3, metadata=AUTH)
    assert set(refused["statuses"]) == {"RESOURCE_EXHAUSTED"}
    code, details = refused["first_error"]
    assert code == "RESOURCE_EXHAUSTED" and str(LIMIT).encode() in details


def test_header_blocks_are_decoded_again_once_the_hpack_table_changes():
    """hpack's encoder (a second implementation) indexes what it sends: the same bytes name
    other fields once an entry is added, and the generator must not answer from what it
    decoded before."""
    encoder, blocks = hpack.Encoder(), HeaderBlocks()
    ok, failed = [("grpc-status", "0")], [("grpc-status", "5")]
    assert blocks.decode(encoder.encode(ok)) == {b"grpc-status": b"0"}  # added to the table
    newest = encoder.encode(ok)  # now the table's first entry
    assert blocks.decode(newest) == {b"grpc-status": b"0"}
    assert blocks.decode(encoder.encode(failed)) == {b"grpc-status": b"5"}  # added: first
    assert encoder.encode(failed) == newest  # the same bytes
    assert blocks.decode(newest) == {b"grpc-status": b"5"}
    assert blocks.decode(encoder.encode(ok)) == {b"grpc-status": b"0"}


FIELD_NAMES = st.sampled_from(
    [b"grpc-status", b"grpc-message", b"x-request-id", b"content-type", b":status", b"date"]
)
FIELD = st.tuples(FIELD_NAMES, st.binary(min_size=0, max_size=40))
# a block: its fields, each added to the table or not (sensitive), and Huffman-coded or not;
# and how many times in a row the server sends those fields
BLOCK = st.tuples(
    st.lists(st.tuples(FIELD, st.booleans()), min_size=1, max_size=5),
    st.booleans(),
    st.integers(1, 3),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(BLOCK, min_size=1, max_size=30), st.integers(0, 4096))
def test_header_blocks_decode_as_hpack_does(blocks, table_size):
    """What a connection reads from every block of a conversation (plain blocks read field
    by field, blocks seen before answered from what they decoded to, the rest by hpack)
    is what a plain hpack decoder reads, whatever hpack's encoder added to its table."""
    encoder, ours, theirs = hpack.Encoder(), HeaderBlocks(), hpack.Decoder()
    encoder.header_table_size = table_size
    for fields, huffman, times in blocks:
        for _ in range(times):  # the same fields again: often the same bytes, kept
            block = encoder.encode([(n, v, sensitive) for (n, v), sensitive in fields], huffman)
            assert ours.decode(block) == dict(theirs.decode(block, raw=True))


def test_later_calls_name_their_header_fields_from_the_servers_table():
    """As gRPC's own clients do: the first call on a connection adds its fields to the
    HPACK table, later calls only name them (one byte a field), which a server reads once
    instead of decoding literals on every call."""
    metadata = [("authorization", "Bearer token-1")]
    first, later, plain = request_header_blocks("/p/M", "127.0.0.1:1", metadata)
    decoder = hpack.Decoder()
    headers = decoder.decode(first)
    assert decoder.decode(later) == decoder.decode(later) == headers
    assert ("authorization", "Bearer token-1") in headers and (":path", "/p/M") in headers
    assert len(later) == len(headers) and all(byte & 0x80 for byte in later)
    # for a server keeping a smaller table: literals, which leave its table as it is
    assert hpack.Decoder().decode(plain) == headers


class Recorder:
    """The socket side of a connection: what the generator writes, kept as frames."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data) -> None:
        self.data += bytes(data)

    def writelines(self, parts) -> None:
        self.data += b"".join(bytes(part) for part in parts)

    def close(self) -> None:
        pass

    def frames(self) -> list[tuple[int, int, int, int]]:
        """(type, flags, stream, length) of every frame after the preface."""
        data, at, found = self.data, len(h2.PREFACE), []
        while at < len(data):
            high, low, kind, flags, stream = h2.FRAME.unpack_from(data, at)
            length = high << 8 | low
            found.append((kind, flags, stream, length))
            at += h2.FRAME_HEADER_SIZE + length
        return found


def server_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return h2.FRAME.pack(len(payload) >> 8, len(payload) & 0xFF, kind, flags, stream) + payload


def test_a_stream_ends_after_its_message_however_long_windows_hold_it():
    """A level that ends while a stream's message waits for the server's windows ends the
    stream after that message, never before; and a window the server lowers below zero
    (RFC 9113 6.9.2) holds the data until it is raised again."""

    async def scenario() -> list[tuple[int, int, int, int]]:
        state = {**new_level_state(), "start": 0.0, "stop": float("inf")}
        blocks = request_header_blocks(GRPC_MODEL_INFER, "127.0.0.1:1", [])
        connection = h2.GrpcConnection(state, blocks, b"x" * 100_000, 1, True)
        recorder = Recorder()
        connection.connection_made(recorder)
        connection.data_received(server_frame(h2.SETTINGS, 0, 0))  # default windows
        connection.start()  # HEADERS and 65,535 bytes of DATA; the rest waits
        lowered = h2.SETTING.pack(h2.SETTINGS_WINDOW, 1000)
        connection.data_received(server_frame(h2.SETTINGS, 0, 0, lowered))  # window < 0
        connection.finish()  # the level's end
        more = h2.UINT32.pack(200_000)
        connection.data_received(server_frame(h2.WINDOW_UPDATE, 0, 0, more))
        connection.data_received(server_frame(h2.WINDOW_UPDATE, 0, 1, more))
        return recorder.frames()

    frames = asyncio.run(scenario())
    data = [(flags, length) for kind, flags, stream, length in frames if kind == h2.DATA]
    assert sum(length for _, length in data) == 100_005  # the whole message, framed
    ends = [i for i, (flags, _) in enumerate(data) if flags & h2.END_STREAM]
    assert ends == [len(data) - 1]  # the stream's end comes with its last bytes
