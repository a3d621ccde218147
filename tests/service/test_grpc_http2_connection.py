"""The gRPC port's HTTP/2 server (service/grpc/http2) as a connection: frames of every
shape (padding, priority, CONTINUATION, PING, unknown types), resets, deadlines, the
drain on shutdown, and connection errors, which end one connection with GOAWAY while the
server goes on. Spoken to by h2 and by frames written by hand
(tests/support/http2_clients.py)."""

from __future__ import annotations

import asyncio
import struct

import grpc
import hpack
import hyperframe.frame as hf
import pytest
from http2_clients import (
    LIMIT,
    SERVICE,
    Client,
    Handlers,
    RawClient,
    eventually,
    message,
    messages_in,
    request_fields,
    serve,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve.service.grpc.http2 import stream as http2_stream
from layerserve.service.grpc.http2.connection import Connection
from layerserve.service.grpc.http2.server import Http2Server

pytestmark = pytest.mark.parallel_safe


# ---- frames of every shape ----------------------------------------------------------------
def test_padded_data_padded_headers_with_priority_and_continuation_are_read():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        block = client.encoder.encode(
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", f"/{SERVICE}/Echo".encode()),
                (b":authority", b"x"),
                (b"content-type", b"application/grpc"),
                (b"x-long", b"v" * 300),
            ]
        )
        headers = hf.HeadersFrame(1, flags=["PADDED", "PRIORITY"])
        headers.pad_length, headers.depends_on, headers.stream_weight = 7, 0, 16
        headers.data = block[:100]
        continuation = hf.ContinuationFrame(1, flags=["END_HEADERS"])
        continuation.data = block[100:]
        data = hf.DataFrame(1, flags=["PADDED", "END_STREAM"])
        data.pad_length, data.data = 200, message(b"padded")
        await client.send(headers, continuation, data)
        answer = await client.answer(1)
        assert messages_in(bytes(answer.body)) == [b"padded"]
        assert answer.trailers[b"grpc-status"] == b"0"
        assert dict(handlers.seen_metadata)["x-long"] == "v" * 300
        client.writer.close()

    serve(test)


def test_a_frame_larger_than_the_read_buffer_is_read_and_the_buffer_shrinks_back():
    """An (ignored) frame of 600 KiB, past the 256 KiB read buffer, then a call."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        size = 600 * 1024
        unknown = struct.pack(">HBBBI", size >> 8, size & 0xFF, 0xFA, 0, 0) + bytes(size)
        await client.write(unknown, chunk=100_000)
        for payload in (b"after", bytes(range(256)) * 1000):
            answer = await client.call("Echo", payload)
            assert messages_in(bytes(answer.body)) == [payload]
        (connection,) = server.connections
        assert len(connection.buffer) == http2_stream.READ_BUFFER
        await client.close()

    serve(test)


def test_ping_is_answered_with_its_payload():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        client.h2.ping(b"12345678")
        await client.flush()
        await eventually(lambda: client.pings)
        assert client.pings == [b"12345678"]
        await client.close()

    serve(test)


def test_unknown_frame_types_are_ignored():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        unknown = struct.pack(">HBBBI", 0, 3, 0xFA, 0, 0) + b"xyz"
        await client.write(unknown)
        answer = await client.call("Echo", b"after")
        assert messages_in(bytes(answer.body)) == [b"after"]
        await client.close()

    serve(test)


# ---- cancellation, deadlines, shutdown ------------------------------------------------------
def test_a_reset_stream_cancels_its_handler():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        stream = await client.send("Slow", b"x")
        await asyncio.sleep(0.1)
        client.h2.reset_stream(stream)
        await client.flush()
        await asyncio.wait_for(handlers.cancelled.wait(), 5)
        answer = await client.call("Echo", b"next")
        assert messages_in(bytes(answer.body)) == [b"next"]
        assert not server.calls  # none left behind for the shutdown to wait on
        await client.close()

    serve(test)


def test_a_client_gone_mid_call_cancels_its_handler_and_leaves_no_call_behind():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        await client.send("Slow", b"x")
        await asyncio.sleep(0.1)
        assert len(server.calls) == 1
        await client.close()
        await asyncio.wait_for(handlers.cancelled.wait(), 5)
        await eventually(lambda: not server.calls and not server.connections)
        assert not server.calls and not server.connections

    serve(test)


def test_a_call_past_its_deadline_is_answered_deadline_exceeded():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        answer = await client.call("Slow", b"x", metadata=[(b"grpc-timeout", b"100m")])
        assert answer.status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
        assert handlers.cancelled.is_set()
        await client.close()

    serve(test)


def test_stopping_goes_away_finishes_running_calls_and_refuses_new_streams():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        running = client.headers(1, "Held", ["END_HEADERS"])
        body = hf.DataFrame(1, flags=["END_STREAM"])
        body.data = message(b"in flight")
        await client.send(running, body)
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(server.stop(5))
        frame = await client.goaway()
        assert frame.error_code == 0 and frame.last_stream_id == 1
        late = client.headers(3, "Echo", ["END_HEADERS"])  # sent before the GOAWAY arrived
        late_body = hf.DataFrame(3, flags=["END_STREAM"])
        late_body.data = message(b"late")
        await client.send(late, late_body)
        assert (await client.answer(3)).reset == 7  # REFUSED_STREAM: safe to send again
        handlers.release.set()
        answer = await client.answer(1)
        assert messages_in(bytes(answer.body)) == [b"in flight"]
        assert answer.trailers[b"grpc-status"] == b"0"
        await asyncio.wait_for(stopping, 5)
        assert await client.next_frame() is None  # closed once its last stream ended

    serve(test)


def test_a_call_still_running_when_the_grace_ends_is_answered_unavailable():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)  # h2 reads nothing after a GOAWAY
        body = hf.DataFrame(1, flags=["END_STREAM"])
        body.data = message(b"x")
        await client.send(client.headers(1, "Held", ["END_HEADERS"]), body)
        await asyncio.sleep(0.1)
        await server.stop(0.2)
        answer = await client.answer(1)
        assert answer.status == grpc.StatusCode.UNAVAILABLE.value[0]  # trailers only

    serve(test)


# ---- connection errors ------------------------------------------------------------------------
RAW_ERRORS = {
    "DATA on stream 0": struct.pack(">HBBBI", 0, 1, 0, 0, 0) + b"x",
    "an even stream id": None,  # HEADERS on stream 2, built below
    "a frame over the largest frame": struct.pack(
        ">HBBBI",
        (http2_stream.MAX_FRAME + 1) >> 8,
        (http2_stream.MAX_FRAME + 1) & 0xFF,
        0xFA,
        0,
        0,
    ),
    "a PING of 7 bytes": struct.pack(">HBBBI", 0, 7, 6, 0, 0) + b"1234567",
    "a window update of 0": struct.pack(">HBBBI", 0, 4, 8, 0, 0) + b"\0\0\0\0",
    "a broken header block": struct.pack(">HBBBI", 0, 1, 1, 4, 1) + b"\xff",
    "CONTINUATION without HEADERS": struct.pack(">HBBBI", 0, 1, 9, 4, 1) + b"\x88",
    "a GOAWAY of 4 bytes": struct.pack(">HBBBI", 0, 4, 7, 0, 0) + b"\0\0\0\0",
    "a stream opened below one opened before": None,  # stream 3, then 1, built below
}


@pytest.mark.parametrize("case", sorted(RAW_ERRORS))
def test_a_broken_connection_goes_away_with_an_error_and_the_server_goes_on(case):
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        raw = RAW_ERRORS[case]
        if case == "an even stream id":
            frame = hf.HeadersFrame(2, flags=["END_HEADERS"])
            frame.data = client.h2.encoder.encode([(b":method", b"POST")])
            raw = frame.serialize()
        elif raw is None:  # h2 would not send it: a request's headers, by hand
            encoder = hpack.Encoder()
            frames = [hf.HeadersFrame(stream, flags=["END_HEADERS"]) for stream in (3, 1)]
            for frame in frames:
                frame.data = encoder.encode(request_fields("Echo"))
            raw = b"".join(frame.serialize() for frame in frames)
        await client.write(raw)
        await asyncio.wait_for(client.closed.wait(), 5)
        assert client.goaway is not None and client.goaway.error_code != 0
        fresh = await Client.open(port)
        answer = await fresh.call("Echo", b"fine")
        assert messages_in(bytes(answer.body)) == [b"fine"]
        await fresh.close()

    serve(test)


def test_a_connection_past_the_limit_is_closed_at_once_and_a_later_one_is_served():
    """Past LAYERSERVE_MAX_CONNECTIONS a new connection is closed before the server's
    preface (to a client, a connection that never opened: gRPC clients back off before
    trying again); once one closes, the next is served."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        first, second = await Client.open(port), await Client.open(port)
        await eventually(lambda: len(server.connections) == 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            sent = await asyncio.wait_for(reader.read(), 5)  # until the server closes
        except ConnectionResetError:
            sent = b""
        assert sent == b""  # not even the server's SETTINGS
        writer.close()
        answer = await second.call("Echo", b"still served")
        assert messages_in(bytes(answer.body)) == [b"still served"]
        await first.close()
        await eventually(lambda: len(server.connections) == 1)
        fourth = await Client.open(port)
        answer = await fourth.call("Echo", b"fine")
        assert messages_in(bytes(answer.body)) == [b"fine"]
        await second.close()
        await fourth.close()

    serve(test, max_connections=2)


def test_a_connection_that_is_not_http2_is_closed():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)  # until the server closes
        assert b"HTTP/1.1" not in data
        writer.close()

    serve(test)


def test_a_settings_acknowledgement_in_place_of_the_preface_settings_is_an_error():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + hf.SettingsFrame(0, flags=["ACK"]).serialize()
        )
        await writer.drain()
        client = RawClient(reader, writer)
        frame = await client.goaway()
        assert frame.error_code == 0x1  # PROTOCOL_ERROR
        writer.close()

    serve(test)


REQUEST = request_fields("Echo")
MALFORMED = {
    "an upper-case name": REQUEST + [(b"X-Upper", b"v")],
    "a name past ASCII": REQUEST + [("x-caf\u00e9".encode("latin-1"), b"v")],
    "a name with a space": REQUEST + [(b"x a", b"v")],
    "a value with CR LF": REQUEST + [(b"x-forwarded-for", b"10.0.0.1\r\nx-admin: yes")],
    "a value with NUL": REQUEST + [(b"x-request-id", b"id\x00")],
    "a pseudo-header's value with LF": REQUEST[:2] + [(b":path", b"/a\nb")] + REQUEST[3:],
    "a pseudo-header after a regular one": REQUEST[:2] + [(b"x-a", b"1")] + REQUEST[2:],
    "an unknown pseudo-header": REQUEST + [(b":protocol", b"websocket")],
    "a repeated pseudo-header": REQUEST + [(b":path", b"/other")],
    "a connection-specific field": REQUEST + [(b"connection", b"keep-alive")],
    "te other than trailers": REQUEST[:-1] + [(b"te", b"gzip")],
    "a colon in a regular name": REQUEST + [(b"x:y", b"v")],
    "a value starting with a space": REQUEST + [(b"x-a", b" v")],
    "a value ending with a tab": REQUEST + [(b"x-a", b"v\t")],
    "no :method": [f for f in REQUEST if f[0] != b":method"],
    "no :scheme": [f for f in REQUEST if f[0] != b":scheme"],
    "no :path": [f for f in REQUEST if f[0] != b":path"],
    "an empty :path": REQUEST[:2] + [(b":path", b"")] + REQUEST[3:],
}


@pytest.mark.parametrize("case", sorted(MALFORMED) + ["a pseudo-header in trailers"])
def test_malformed_header_fields_reset_their_stream_and_the_connection_goes_on(case):
    """RFC 9113 sections 8.2 and 8.3: a request whose fields are malformed is reset with
    PROTOCOL_ERROR (and never reaches a handler); so is a stream whose trailers carry a
    pseudo-header. The connection serves the next call."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        if case == "a pseudo-header in trailers":
            opening = client.headers(1, "Echo", ["END_HEADERS"])
            data = hf.DataFrame(1)
            data.data = message(b"never")
            trailers = hf.HeadersFrame(1, flags=["END_HEADERS", "END_STREAM"])
            trailers.data = client.encoder.encode([(b":path", b"/x")])
            await client.send(opening, data, trailers)
        else:
            opening = hf.HeadersFrame(1, flags=["END_HEADERS"])
            opening.data = client.encoder.encode(MALFORMED[case])
            data = hf.DataFrame(1, flags=["END_STREAM"])
            data.data = message(b"never")
            await client.send(opening, data)
        answer = await client.answer(1)
        assert answer.reset == 0x1  # PROTOCOL_ERROR
        assert handlers.seen_metadata == ()  # no handler ran
        good = client.headers(3, "Echo", ["END_HEADERS"])
        data = hf.DataFrame(3, flags=["END_STREAM"])
        data.data = message(b"fine")
        await client.send(good, data)
        answer = await client.answer(3)
        assert messages_in(bytes(answer.body)) == [b"fine"]
        client.writer.close()

    serve(test)


# ---- clients that break the rules ------------------------------------------------------------
def test_a_stream_sent_past_its_window_is_reset_with_a_flow_control_error():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        await client.send(client.headers(1, "Deaf", ["END_HEADERS"]))
        chunk = hf.DataFrame(1)
        chunk.data = message(bytes(900_000))  # unread: past 4 queued, no window comes back
        for _ in range(12):  # 10.8 MB: past the 4 MiB window and what came back
            await client.send(chunk)
        while not isinstance(frame := await client.next_frame(), hf.RstStreamFrame):
            assert frame is not None
        assert frame.stream_id == 1 and frame.error_code == 3  # FLOW_CONTROL_ERROR
        await client.send(client.headers(3, "Echo", ["END_HEADERS"]), _body(3, b"next"))
        answer = await client.answer(3)
        assert messages_in(bytes(answer.body)) == [b"next"]

    serve(test)


def test_a_stream_holding_too_many_unread_messages_is_reset_however_they_arrive():
    """Tiny messages within the window, never read, each cost the server more than its
    bytes: past 4,096 unread the stream is reset, also when every message arrives whole
    within one read (frames of exactly one read, 16 KiB, 2,046 messages each)."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        await client.send(client.headers(1, "Deaf", ["END_HEADERS"]))
        await asyncio.sleep(0.3)  # read: the server's next read starts with the next frame
        frame = hf.DataFrame(1, flags=["PADDED"])
        frame.pad_length, frame.data = 6, message(b"abc") * 2046
        raw = frame.serialize()
        assert len(raw) == http2_stream.READ_CHUNK
        client.writer.write(raw * 3)
        await client.writer.drain()
        answer = await client.answer(1)
        assert answer.reset == 0xB  # ENHANCE_YOUR_CALM
        await eventually(lambda: not server.calls)
        assert not server.calls  # the handler was cancelled

    serve(test)


def test_a_message_is_held_as_it_comes_not_as_long_as_its_prefix_claims():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        data = hf.DataFrame(1)
        data.data = struct.pack(">BI", 0, LIMIT) + b"0123456789"  # claims 1 MiB, sends 10 B
        await client.send(client.headers(1, "Chat", ["END_HEADERS"]), data)

        def holding() -> bool:
            (connection,) = server.connections
            stream = connection.streams.get(1)
            return stream is not None and stream.message is not None

        await eventually(holding)
        (connection,) = server.connections
        assert bytes(connection.streams[1].message) == b"0123456789"

    serve(test)


def test_rapid_resets_send_the_client_away():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        frames = []
        for i in range(http2_stream.MAX_RESETS + 1):
            stream = 2 * i + 1
            frames += [client.headers(stream, "Slow", ["END_HEADERS"]), hf.RstStreamFrame(stream)]
        await client.send(*frames)
        frame = await client.goaway()
        assert frame.error_code == 0xB  # ENHANCE_YOUR_CALM
        await eventually(lambda: not server.calls)
        assert not server.calls

    serve(test)


def test_metadata_not_in_base64_refuses_the_call_not_the_connection():
    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await Client.open(port)
        answer = await client.call("Echo", b"x", metadata=[(b"x-raw-bin", b"not base64!")])
        assert answer.status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "x-raw-bin" in answer.message
        answer = await client.call("Echo", b"still")
        assert messages_in(bytes(answer.body)) == [b"still"]
        await client.close()

    serve(test)


def test_trailers_on_a_stream_answered_early_are_dropped():
    """A call answered (and reset) while its client still writes: the client's late DATA
    and trailers are read and dropped (the block may add to the header table), and the
    connection goes on."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        await client.send(client.headers(1, "Nope", ["END_HEADERS"]))  # no such method
        refused = await client.answer(1)
        assert refused.status == grpc.StatusCode.UNIMPLEMENTED.value[0]
        late = hf.DataFrame(1)
        late.data = message(b"late")
        trailers = hf.HeadersFrame(1, flags=["END_HEADERS", "END_STREAM"])
        trailers.data = client.encoder.encode([(b"x-late", b"trailer")])
        await client.send(late, trailers)
        await client.send(client.headers(3, "Echo", ["END_HEADERS"]), _body(3, b"two"))
        frames = []
        while not (frames and frames[-1].stream_id == 3 and "END_STREAM" in frames[-1].flags):
            frame = await client.next_frame()
            assert frame is not None
            frames.append(frame)
        assert not [f for f in frames if isinstance(f, hf.GoAwayFrame)]
        data = b"".join(frame.data for frame in frames if isinstance(frame, hf.DataFrame))
        assert messages_in(data) == [b"two"]

    serve(test)


@pytest.mark.parametrize("stream_id", [1, 3])  # reused, and below the last one opened
def test_headers_opening_a_closed_or_lower_stream_end_the_connection(stream_id):
    """RFC 9113 section 5.1.1: HEADERS with END_STREAM on a stream both sides closed, or
    on an id below the last one opened, is a connection error (PROTOCOL_ERROR), not
    dropped: its client would wait for an answer that never comes."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        await client.send(client.headers(1, "Echo", ["END_HEADERS"]), _body(1, b"one"))
        assert messages_in(bytes((await client.answer(1)).body)) == [b"one"]
        await client.send(client.headers(5, "Echo", ["END_HEADERS"]), _body(5, b"two"))
        assert messages_in(bytes((await client.answer(5)).body)) == [b"two"]
        await client.send(client.headers(stream_id, "Echo", ["END_HEADERS", "END_STREAM"]))
        frame = await client.goaway()
        assert frame.error_code == 0x1 and frame.last_stream_id == 5  # PROTOCOL_ERROR

    serve(test)


def _body(stream: int, payload: bytes) -> hf.DataFrame:
    frame = hf.DataFrame(stream, flags=["END_STREAM"])
    frame.data = message(payload)
    return frame


def test_streams_reset_as_they_open_leave_no_call_behind():
    """Each call's task is cancelled before its first step: it still ends."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        frames = []
        for i in range(50):
            stream = 2 * i + 1
            frames += [client.headers(stream, "Chat", ["END_HEADERS"]), hf.RstStreamFrame(stream)]
        await client.send(*frames)
        await client.send(client.headers(101, "Echo", ["END_HEADERS"]), _body(101, b"last"))
        assert messages_in(bytes((await client.answer(101)).body)) == [b"last"]
        await eventually(lambda: not server.calls)
        assert not server.calls

    serve(test)


@pytest.mark.parametrize("case", ["a header list bomb", "a SETTINGS frame of 33 entries"])
def test_costly_frames_send_the_client_away(case):
    """One table entry of 4 KB named 60,000 times in one block would decode to 240 MB;
    a SETTINGS frame of thousands of entries would hold the event loop."""

    async def test(port: int, handlers: Handlers, server: Http2Server) -> None:
        client = await RawClient.open(port)
        if case == "a header list bomb":
            first = client.headers(1, "Echo", ["END_HEADERS"])
            first.data += client.encoder.encode([(b"x-big", b"v" * 4000)])  # into the table
            bomb = hf.HeadersFrame(3, flags=["END_HEADERS"])
            bomb.data = bytes([0x80 | 62]) * 60_000  # the table's newest entry, over and over
            await client.send(first, bomb)
        else:
            raw = struct.pack(">HBBBI", 0, 33 * 6, 4, 0, 0) + struct.pack(">HI", 4, 65_535) * 33
            client.writer.write(raw)
            await client.writer.drain()
        frame = await client.goaway()
        assert frame.error_code == 0xB  # ENHANCE_YOUR_CALM
        fresh = await Client.open(port)
        answer = await fresh.call("Echo", b"fine")
        assert messages_in(bytes(answer.body)) == [b"fine"]
        await fresh.close()

    serve(test)


# ---- header blocks ------------------------------------------------------------------------
header_lists = st.lists(
    st.tuples(st.sampled_from([b"x-a", b"x-b", b"content-type"]), st.sampled_from([b"1", b"22"])),
    min_size=1,
    max_size=4,
)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(header_lists, st.integers(0, 10)), min_size=1, max_size=12))
def test_header_blocks_decode_as_hpack_says_while_the_table_changes(steps):
    """Blocks that add to the table, then blocks of indexed fields only sent again later
    (as clients send them call after call): each decodes as another HPACK decoder reads
    the same blocks in the same order, whatever the table held by then."""
    connection = Connection(lambda *args: None, LIMIT, lambda _: None)
    encoder, reference = hpack.Encoder(), hpack.Decoder()
    sent: list[bytes] = []
    for headers, again in steps:
        blocks = [encoder.encode(headers)]
        indices = [encoder.header_table.search(name, value) for name, value in headers]
        if all(found is not None and found[2] is not None for found in indices):
            blocks.append(bytes(0x80 | found[0] for found in indices))  # indexed fields only
        if sent:
            blocks.append(sent[again % len(sent)])  # an earlier block once more
        for block in blocks:
            sent.append(block)
            try:
                expected = [tuple(field) for field in reference.decode(block, raw=True)]
            except hpack.HPACKError:
                expected = None
            if expected is None:
                with pytest.raises(hpack.HPACKError):
                    connection._decode(block)
                return  # the connection would end here
            assert connection._decode(block) == expected
