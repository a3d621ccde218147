"""The gRPC port's HTTP/2 server (service/grpc/http2) answering calls, spoken to by h2,
an HTTP/2 client of another implementation (tests/support/http2_clients.py): messages
whatever the frames and reads that carry them, every call shape, flow control both ways
and the client's largest frame, metadata and status messages, compression, refusals.
tritonclient and grpcio (gRPC's C core) speak to the same server in test_grpc_v2,
test_grpc_streaming and the other gRPC suites."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import zlib
from typing import Any
from urllib.parse import quote, unquote

import grpc
import h2.settings
import hpack
import hyperframe.frame as hf
import pytest
from http2_clients import (
    LIMIT,
    SERVICE,
    Answer,
    Client,
    Handlers,
    RawClient,
    eventually,
    message,
    messages_in,
    serve,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from layerserve.service.grpc import status_message
from layerserve.service.grpc.http2 import connection as http2_connection
from layerserve.service.grpc.http2 import rpc
from layerserve.service.grpc.http2 import stream as http2_stream
from layerserve.service.grpc.http2.server import Http2Server

pytestmark = pytest.mark.parallel_safe


# ---- calls ------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(0, 300_000), chunk=st.sampled_from([None, 1, 7, 9, 4096, 65_536]))
def test_a_unary_call_is_answered_whatever_the_sizes_of_its_frames_and_reads(size, chunk):
    payload = bytes(i % 253 for i in range(size))
    if chunk is not None:
        payload = payload[: 2000 if chunk == 1 else 60_000]  # one frame: within its limits

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        answer = await client.call("Echo", payload, chunk=chunk)
        assert answer.headers[b":status"] == b"200"
        assert answer.headers[b"content-type"] == b"application/grpc"
        assert messages_in(bytes(answer.body)) == [payload]
        assert answer.status == 0
        assert answer.trailers[b"x-echo-size"] == str(len(payload)).encode()
        head = answer.trailers[b"x-echo-head-bin"]  # binary metadata: base64, unpadded
        assert base64.b64decode(head + b"=" * (-len(head) % 4)) == payload[:16]
        await client.close()

    serve(test)


@settings(max_examples=20, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40_000), min_size=0, max_size=8),
    frame_size=st.sampled_from([1, 5, 6, 1000, 16_384]),
)
def test_stream_messages_are_read_across_frame_boundaries(sizes, frame_size):
    """Messages cut across DATA frames anywhere (inside the 5-byte prefix too), several
    in one frame: the handler gets them whole and in order."""
    payloads = [bytes((i + j) % 256 for j in range(n)) for i, n in enumerate(sizes)]
    body = b"".join(message(p) for p in payloads)

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        stream = client.start("Tally")
        for i in range(0, len(body), frame_size):
            await client.send_body(stream, body[i : i + frame_size], end=False)
        client.h2.end_stream(stream)
        await client.flush()
        answer = await client.answer(stream)
        assert messages_in(bytes(answer.body)) == [",".join(map(str, sizes)).encode()]
        assert answer.status == 0
        await client.close()

    serve(test)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 120_000), min_size=1, max_size=5),
    frame_size=st.sampled_from([None, 70_000, 16_384, 5]),
    padding=st.sampled_from([None, 0, 255]),
    chunk=st.sampled_from([None, 9, 1000, 17_000, 65_536]),
)
# messages that begin in one frame and end in the next, by a little and by a lot
@example(sizes=[60_000, 60_000], frame_size=70_000, padding=None, chunk=None)
@example(sizes=[69_996], frame_size=70_000, padding=None, chunk=None)
@example(sizes=[69_990, 30_000], frame_size=70_000, padding=0, chunk=None)
@example(sizes=[100_000, 100_000], frame_size=70_000, padding=None, chunk=65_536)
def test_large_messages_read_straight_into_their_room_arrive_whole(
    sizes, frame_size, padding, chunk
):
    """A message that its DATA frame carries whole is read into room of its own (past the
    connection's buffer): several in one frame, cut across frames, padded, and whatever
    the socket's reads, every message arrives with its bytes."""
    payloads = [bytes((i * 7 + j) % 251 for j in range(n)) for i, n in enumerate(sizes)]
    body = b"".join(message(p) for p in payloads)
    step = frame_size or len(body)
    parts = [body[i : i + step] for i in range(0, len(body), step)]

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        frames: list[hf.Frame] = [client.headers(1, "Digest", ["END_HEADERS"])]
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            data = hf.DataFrame(
                1,
                flags=(["END_STREAM"] if last else [])
                + (["PADDED"] if padding is not None else []),
            )
            data.data = part
            if padding is not None:
                data.pad_length = padding
            frames.append(data)
        wire = b"".join(frame.serialize() for frame in frames)
        step = chunk or len(wire)
        for i in range(0, len(wire), step):
            client.writer.write(wire[i : i + step])
            await client.writer.drain()
        answer = await client.answer(1)
        expected = b";".join(
            b"%d:%s" % (len(p), hashlib.sha256(p).hexdigest().encode()) for p in payloads
        )
        assert messages_in(bytes(answer.body)) == [expected]
        assert answer.trailers[b"grpc-status"] == b"0"
        client.writer.close()

    serve(test)


def test_a_bidirectional_stream_answers_each_message_on_the_stream():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        stream = client.start("Chat")
        for word in (b"abc", b"hello", b""):
            client.h2.send_data(stream, message(word))
            await client.flush()
        client.h2.end_stream(stream)
        await client.flush()
        answer = await client.answer(stream)
        assert messages_in(bytes(answer.body)) == [b"cba", b"olleh", b""]
        assert answer.status == 0
        await client.close()

    serve(test)


def test_a_server_stream_written_through_the_context_arrives_in_order():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        answer = await client.call("Watch", b"5")
        assert messages_in(bytes(answer.body)) == [b"0", b"1", b"2", b"3", b"4"]
        assert answer.status == 0
        await client.close()

    serve(test)


def test_many_calls_at_once_on_one_connection():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        streams = []
        for i in range(100):
            stream = client.start("Echo")
            client.h2.send_data(stream, message(str(i).encode()), end_stream=True)
            streams.append(stream)
        await client.flush()
        for i, stream in enumerate(streams):
            answer = await client.answer(stream)
            assert messages_in(bytes(answer.body)) == [str(i).encode()]
        await client.close()

    serve(test)


def test_messages_larger_than_every_window_flow_both_ways():
    """A 9 MiB request and its 9 MiB echo: past the server's 4 MiB stream window, which
    it gives back as the message arrives, and the client's 64 KiB, which it gives back as
    it reads."""
    payload = bytes(i % 241 for i in range(9 * 1024 * 1024))

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        answer = await client.call("Echo", payload)
        assert messages_in(bytes(answer.body)) == [payload] and answer.status == 0
        await client.close()

    serve(test, limit=16 * 1024 * 1024)


# ---- flow control and frame sizes --------------------------------------------------------
def test_an_answer_larger_than_the_clients_window_waits_for_it_to_open():
    """The client grants 16 KiB a stream and holds it: the server sends that much and
    no more; once the client acknowledges, the rest follows, in frames within the
    client's largest frame (16 KiB, HTTP/2's default)."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port, initial_window=16_384)
        client.auto_ack = False
        stream = await client.send("Big", b"200000")
        await asyncio.sleep(0.3)
        answer = client.answers[stream]
        assert len(answer.body) == 16_384 and not answer.ended.is_set()
        client.auto_ack = True
        client.h2.acknowledge_received_data(len(answer.body), stream)
        await client.flush()
        answer = await client.answer(stream)
        assert messages_in(bytes(answer.body)) == [bytes(i % 251 for i in range(200_000))]
        assert answer.status == 0
        assert max(client.data_frame_sizes) <= 16_384
        await client.close()

    serve(test)


def test_a_window_widened_by_settings_lets_the_held_answer_go_on():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port, initial_window=1000)
        client.auto_ack = False  # only the new setting can open the window
        stream = await client.send("Big", b"50000")
        await asyncio.sleep(0.2)
        assert len(client.answers[stream].body) <= 1000
        client.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        await client.flush()
        answer = await client.answer(stream)
        assert messages_in(bytes(answer.body)) == [bytes(i % 251 for i in range(50_000))]
        await client.close()

    serve(test)


def test_an_unread_stream_stops_granting_its_window():
    """A stream whose handler never reads: past the queued messages the server gives no
    window back, so the client can send at most the stream's window."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        server.add_registered_method_handlers(
            "test.Deaf", {"Deaf": grpc.stream_unary_rpc_method_handler(deaf)}
        )
        stream = client.h2.get_next_available_stream_id()
        client.h2.send_headers(
            stream,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", b"/test.Deaf/Deaf"),
                (b":authority", b"x"),
                (b"content-type", b"application/grpc"),
            ],
        )
        client.answers[stream] = Answer()
        sent = 0
        chunk = message(bytes(60_000))
        while client.h2.local_flow_control_window(stream) >= len(chunk):
            await client.send_body(stream, chunk, end=False)
            sent += len(chunk)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        granted = client.h2.local_flow_control_window(stream)
        assert sent <= http2_stream.STREAM_WINDOW + 2 * http2_stream.STREAM_WINDOW // 4
        assert granted < len(chunk)
        await client.close()

    async def deaf(requests: Any, context: Any) -> bytes:
        await asyncio.sleep(30)
        return b""

    serve(test)


# ---- metadata, status, refusals ------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,20}", fullmatch=True),
            st.one_of(st.binary(max_size=300), st.from_regex(r"[ -~]{0,200}", fullmatch=True)),
        ),
        max_size=6,
    )
)
def test_metadata_is_written_as_hpack_reads_it(entries):
    """The metadata of answers and trailers (the request id on every call) decodes, with
    another HPACK implementation, to the lower-case keys and the values gRPC puts on the
    wire: text as it is, a -bin key's bytes in base64 without padding."""
    metadata = [(k + "-bin", v) if isinstance(v, bytes) else (k, v) for k, v in entries]
    decoded = hpack.Decoder().decode(rpc.metadata_block(metadata), raw=True)
    expected = [
        (
            k.lower().encode(),
            base64.b64encode(v).rstrip(b"=") if isinstance(v, bytes) else v.encode(),
        )
        for k, v in metadata
    ]
    assert [tuple(field) for field in decoded] == expected


def header_list_size(fields) -> int:
    """RFC 9113 section 6.5.2, written from the RFC: name, value and 32, per field."""
    return sum(len(name) + len(value) + 32 for name, value in fields)


@settings(max_examples=300, deadline=None)
@given(
    message=st.text(max_size=6000),
    metadata=st.lists(
        st.tuples(st.sampled_from(["x-request-id", "x-a", "x-b-bin"]), st.binary(max_size=60)),
        max_size=3,
    ),
    headers=st.booleans(),
    limit=st.one_of(st.none(), st.integers(0, 20_000)),
)
@example(message="é" * 3000, metadata=[], headers=True, limit=None)
@example(message="a" * 100, metadata=[], headers=False, limit=44 + 44 + 100)  # just too long
def test_a_status_message_is_cut_to_fit_the_clients_header_list(message, metadata, headers, limit):
    """Decoded with another HPACK implementation, the status fields stay below the
    client's SETTINGS_MAX_HEADER_LIST_SIZE and carry at most 4,096 characters of message:
    the message whole, or its beginning and " [...]"."""
    metadata = [(k, v if k.endswith("-bin") else v.hex()) for k, v in metadata]
    code = grpc.StatusCode.INVALID_ARGUMENT
    fields = hpack.Decoder().decode(rpc.status_block(code, message, metadata, headers, limit))
    sent = dict(fields).get("grpc-message")
    without = hpack.Decoder().decode(rpc.status_block(code, "", metadata, headers, limit))
    assert [f for f in fields if f[0] != "grpc-message"] == without  # the rest is whole
    if sent is not None:
        assert len(sent) <= 4096
        assert limit is None or header_list_size(fields) < limit
        got = unquote(sent)
        assert got == message or (got.endswith(" [...]") and message.startswith(got[:-6]))
    if message and (limit is None or limit >= header_list_size(without) + 4096 + 44 + 1):
        assert sent is not None  # room for a message: one was sent, cut or whole
        if len(quote(message, safe=status_message.MESSAGE_SAFE)) <= 4096:
            assert unquote(sent) == message


def test_metadata_in_and_status_messages_out_keep_their_bytes():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        raw = bytes(range(256))
        metadata = [
            (b"x-text", b"plain"),
            (b"x-raw-bin", base64.b64encode(raw).rstrip(b"=")),
            (b"grpc-timeout", b"10S"),  # the protocol's, not metadata
        ]
        answer = await client.call("Echo", b"m", metadata=metadata)
        seen = dict(handlers.seen_metadata)
        assert seen["x-text"] == "plain" and seen["x-raw-bin"] == raw
        assert "grpc-timeout" not in seen and ":path" not in seen
        words = "100% sure: é\nnext line"
        answer = await client.call("Fail", words.encode())
        assert answer.status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert answer.message == words
        assert not answer.body and b":status" in answer.headers  # trailers only
        await client.close()

    serve(test)


def test_unknown_methods_wrong_content_types_and_oversized_messages_are_refused():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        answer = await client.call("Nope", b"")
        assert answer.status == grpc.StatusCode.UNIMPLEMENTED.value[0]
        stream = client.h2.get_next_available_stream_id()
        client.h2.send_headers(
            stream,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", f"/{SERVICE}/Echo".encode()),
                (b":authority", b"x"),
                (b"content-type", b"application/json"),
            ],
            end_stream=True,
        )
        client.answers[stream] = Answer()
        await client.flush()
        assert (await client.answer(stream)).headers[b":status"] == b"415"
        answer = await client.call("Echo", bytes(LIMIT + 1))  # refused at its prefix
        assert answer.status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert str(LIMIT) in answer.message
        stream = client.start("Echo")  # compressed, but with no grpc-encoding to read it
        client.h2.send_data(stream, message(b"x", compressed=1), end_stream=True)
        await client.flush()
        answer = await client.answer(stream)
        assert answer.status == grpc.StatusCode.INTERNAL.value[0]
        assert "without grpc-encoding" in answer.message
        stream = client.start("Echo", metadata=[(b"grpc-encoding", b"snappy")])
        client.h2.send_data(stream, message(b"x", compressed=1), end_stream=True)
        await client.flush()
        answer = await client.answer(stream)
        assert answer.status == grpc.StatusCode.UNIMPLEMENTED.value[0]
        assert "'snappy'" in answer.message and "gzip" in answer.message
        stream = client.start("Echo", end=True)  # a unary call without its message
        await client.flush()
        assert (await client.answer(stream)).status == grpc.StatusCode.INTERNAL.value[0]
        answer = await client.call("Echo", b"still served")
        assert messages_in(bytes(answer.body)) == [b"still served"]
        await client.close()

    serve(test)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", lambda data: gzip.compress(data)),
        ("deflate", lambda data: zlib.compress(data)),
    ],
)
def test_compressed_messages_are_inflated_within_the_limit(encoding, compress):
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        metadata = [(b"grpc-encoding", encoding.encode())]
        payload = bytes(range(256)) * 400
        stream = client.start("Echo", metadata=metadata)
        await client.send_body(stream, message(compress(payload), compressed=1))
        answer = await client.answer(stream)
        assert messages_in(bytes(answer.body)) == [payload] and answer.status == 0
        stream = client.start("Echo", metadata=metadata)  # 16 MiB of zeros in a few KiB
        await client.send_body(stream, message(compress(bytes(16 * LIMIT)), compressed=1))
        answer = await client.answer(stream)
        assert answer.status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert str(LIMIT) in answer.message
        stream = client.start("Echo", metadata=metadata)
        await client.send_body(stream, message(b"not compressed at all", compressed=1))
        answer = await client.answer(stream)
        assert answer.status == grpc.StatusCode.INTERNAL.value[0]
        for cut, says in (
            (compress(payload)[:-6], "is truncated"),
            (compress(payload) + b"??", "goes on for 2 bytes"),
        ):
            stream = client.start("Echo", metadata=metadata)
            await client.send_body(stream, message(cut, compressed=1))
            answer = await client.answer(stream)
            assert answer.status == grpc.StatusCode.INTERNAL.value[0]
            assert f"the {encoding} message {says}" in answer.message
        await client.close()

    serve(test)


def test_grpcio_clients_compressed_calls_are_answered():
    """gRPC's own client (its C core), compressing with gzip and deflate."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        payload = b"grpcio " * 10_000
        for compression in (grpc.Compression.Gzip, grpc.Compression.Deflate):
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{port}", compression=compression
            ) as channel:
                echo = channel.unary_unary(f"/{SERVICE}/Echo")
                assert await echo(payload, timeout=10) == payload
                chat = channel.stream_stream(f"/{SERVICE}/Chat")
                answers = [answer async for answer in chat(iter([b"ab", payload]), timeout=10)]
                assert answers == [b"ba", payload[::-1]]

    serve(test)


STALL = 0.4  # the server's stall_seconds in the tests below


def test_a_request_that_stalls_is_answered_and_its_stream_closed():
    """A unary call whose message stops half-way, and one that sends only its headers,
    are answered DEADLINE_EXCEEDED after the stall time, their streams reset with
    NO_ERROR (RFC 9113 section 8.1) and forgotten; the connection goes on serving."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        half = client.start("Echo")
        client.h2.send_data(half, message(b"x" * 100)[:40])
        bare = client.start("Echo")
        await client.flush()
        began = asyncio.get_running_loop().time()
        for stream in (half, bare):
            answer = await client.answer(stream, timeout=5)
            assert answer.status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
            assert "the request stalled" in answer.message
            assert "LAYERSERVE_BODY_TIMEOUT_SECONDS" in answer.message
        assert asyncio.get_running_loop().time() - began >= STALL
        resets = lambda: [client.answers[s].reset for s in (half, bare)]  # noqa: E731
        await eventually(lambda: not server.calls and None not in resets())
        assert resets() == [0, 0]  # NO_ERROR
        assert not any(c.streams for c in server.connections)
        answer = await client.call("Echo", b"still served")
        assert messages_in(bytes(answer.body)) == [b"still served"]
        await client.close()

    serve(test, stall_seconds=STALL)


def test_requests_that_keep_arriving_or_wait_between_messages_are_not_cut():
    """A unary request trickling in for longer than the stall time, in small frames or in
    one large frame read piece by piece, and a stream idle between whole messages for
    longer than the stall time, are served."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        payload = message(b"t" * 20)
        stream = client.start("Echo")
        for i in range(0, len(payload), 5):  # 5 bytes each STALL / 2: 2 stall times in all
            client.h2.send_data(stream, payload[i : i + 5])
            await client.flush()
            await asyncio.sleep(STALL / 2)
        client.h2.end_stream(stream)
        await client.flush()
        answer = await client.answer(stream)
        assert answer.status == 0 and messages_in(bytes(answer.body)) == [b"t" * 20]
        # one 64 KiB DATA frame whose bytes arrive 4 KiB each STALL / 4: four stall times
        big = client.start("Echo")
        client.h2.send_data(big, message(bytes(range(256)) * 256), end_stream=True)
        frames = client.h2.data_to_send()
        for i in range(0, len(frames), 4096):
            client.writer.write(frames[i : i + 4096])
            await client.writer.drain()
            await asyncio.sleep(STALL / 4)
        answer = await client.answer(big)
        assert answer.status == 0
        assert messages_in(bytes(answer.body)) == [bytes(range(256)) * 256]
        chat = client.start("Chat")
        client.h2.send_data(chat, message(b"abc"))
        await client.flush()
        await asyncio.sleep(3 * STALL)  # between messages: waiting, not stalled
        client.h2.send_data(chat, message(b"xyz"), end_stream=True)
        await client.flush()
        answer = await client.answer(chat)
        assert answer.status == 0 and messages_in(bytes(answer.body)) == [b"cba", b"zyx"]
        await client.close()

    serve(test, stall_seconds=STALL)


def test_a_stopping_server_still_answers_stalled_calls(caplog):
    """A server stopping with no grace limit waits for its calls; a stalled one is still
    answered after the stall time, so the stop ends. (The h2 client reads no frame after
    the server's GOAWAY, so the server's log says how the call ended.)"""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        client.start("Echo")  # headers only, then nothing
        await client.flush()
        await eventually(lambda: server.calls)
        began = asyncio.get_running_loop().time()
        await asyncio.wait_for(server.stop(None), 10 * STALL)
        assert asyncio.get_running_loop().time() - began >= STALL / 2
        assert not server.calls
        await client.close()

    with caplog.at_level("INFO", logger="layerserve.service"):
        serve(test, stall_seconds=STALL)
    assert any("its request stalled" in r.getMessage() for r in caplog.records)


IDLE = 0.4  # the server's idle_seconds in the tests below


def test_a_connection_without_a_call_for_the_idle_time_is_sent_away_in_two_steps():
    """Once no stream has been open for the idle time: GOAWAY naming the largest stream
    id (NO_ERROR) and a PING. A call the client begins before it answers the PING is
    served; its answer to the PING brings the final GOAWAY, naming the last stream read,
    and the connection closes."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        data = hf.DataFrame(1, flags=["END_STREAM"])
        data.data = message(b"one call")
        await client.send(client.headers(1, "Echo", ["END_HEADERS"]), data)
        assert messages_in(bytes((await client.answer(1)).body)) == [b"one call"]
        began = asyncio.get_running_loop().time()
        first = await client.goaway()
        assert asyncio.get_running_loop().time() - began >= IDLE / 2
        assert (first.last_stream_id, first.error_code) == (2**31 - 1, 0)
        assert b"LAYERSERVE_GRPC_MAX_CONNECTION_IDLE_SECONDS" in first.additional_data
        ping = await client.next_frame()
        assert isinstance(ping, hf.PingFrame) and "ACK" not in ping.flags
        data = hf.DataFrame(3, flags=["END_STREAM"])
        data.data = message(b"on its way")  # sent before the client read the GOAWAY
        await client.send(client.headers(3, "Echo", ["END_HEADERS"]), data)
        answer = await client.answer(3)
        assert answer.trailers[b"grpc-status"] == b"0"
        assert messages_in(bytes(answer.body)) == [b"on its way"]
        pong = hf.PingFrame(0, flags=["ACK"])
        pong.opaque_data = ping.opaque_data
        await client.send(pong)
        last = await client.goaway()
        assert (last.last_stream_id, last.error_code) == (3, 0)
        while (frame := await client.next_frame()) is not None:
            assert not isinstance(frame, hf.HeadersFrame), frame
        assert not server.connections

    serve(test, idle_seconds=IDLE)


def test_a_stream_open_keeps_its_connection_and_a_silent_client_is_closed(monkeypatch):
    """A stream waiting between messages for longer than the idle time keeps its
    connection; once it ends, the connection is sent away, and a client that does not
    answer the PING (h2 reads no frame after a GOAWAY) is closed after LEAVING_SECONDS."""
    monkeypatch.setattr(http2_connection, "LEAVING_SECONDS", 0.2)

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        chat = client.start("Chat")
        client.h2.send_data(chat, message(b"abc"))
        await client.flush()
        await asyncio.sleep(4 * IDLE)  # a stream open: the connection is not idle
        assert not client.closed.is_set() and client.goaway is None
        client.h2.send_data(chat, message(b"xyz"), end_stream=True)
        await client.flush()
        answer = await client.answer(chat)
        assert answer.status == 0 and messages_in(bytes(answer.body)) == [b"cba", b"zyx"]
        ended = asyncio.get_running_loop().time()  # the idle time counts from here
        await eventually(lambda: not server.connections, 10 * IDLE)
        assert not server.connections
        assert asyncio.get_running_loop().time() - ended >= IDLE / 2 + 0.2
        await client.close()

    serve(test, idle_seconds=IDLE)


def test_grpcio_clients_call_again_after_their_idle_connection_was_sent_away():
    """gRPC's own client opens a new connection for the call after an idle GOAWAY."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo = channel.unary_unary(f"/{SERVICE}/Echo")
            assert await echo(b"first", timeout=10) == b"first"
            await eventually(lambda: not server.connections, 10 * IDLE)
            assert not server.connections
            assert await echo(b"second", timeout=10) == b"second"
            assert len(server.connections) == 1

    serve(test, idle_seconds=IDLE)
