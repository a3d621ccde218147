"""HTTP/2 clients of another implementation than the server's, for the tests of the gRPC
port's HTTP/2 server (service/grpc/http2): python-hyper's ``h2`` state machine
(:class:`Client`) and ``hyperframe`` frames written and read one by one
(:class:`RawClient`), over a real loopback socket; and the test service they call, whose
handlers are grpc's own ``RpcMethodHandler`` objects, registered as grpc's generated code
registers them."""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import hyperframe.frame as hf
import uvloop

from layerserve.service.grpc.http2.server import Http2Server

SERVICE = "test.Echo"
LIMIT = 1 << 20  # the server's message limit in these tests


def request_fields(method: str) -> list[tuple[bytes, bytes]]:
    """The header fields of a gRPC request for the test service's ``method``."""
    return [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", f"/{SERVICE}/{method}".encode()),
        (b":authority", b"localhost"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]


def message(payload: bytes, compressed: int = 0) -> bytes:
    return bytes((compressed,)) + struct.pack(">I", len(payload)) + payload


def messages_in(body: bytes) -> list[bytes]:
    """The gRPC messages of a response body (a hand reading of the length prefixes)."""
    out, position = [], 0
    while position < len(body):
        size = struct.unpack_from(">I", body, position + 1)[0]
        out.append(body[position + 5 : position + 5 + size])
        position += 5 + size
    assert position == len(body)
    return out


class Handlers:
    """The test service: what each method saw, for the assertions."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.seen_metadata: tuple[tuple[str, Any], ...] = ()
        self.release = asyncio.Event()

    async def echo(self, request: bytes, context: Any) -> bytes:
        self.seen_metadata = context.invocation_metadata()
        context.set_trailing_metadata(
            (("x-echo-size", str(len(request))), ("x-echo-head-bin", request[:16]))
        )
        return request

    async def big(self, request: bytes, context: Any) -> bytes:
        size = int(request.decode())
        return bytes(i % 251 for i in range(size))

    async def slow(self, request: bytes, context: Any) -> bytes:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return request

    async def held(self, request: bytes, context: Any) -> bytes:
        await self.release.wait()
        return request

    async def fail(self, request: bytes, context: Any) -> bytes:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.decode())
        return b""

    async def chat(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request[::-1]

    async def tally(self, requests: AsyncIterator[bytes], context: Any) -> bytes:
        sizes = [len(request) async for request in requests]
        return ",".join(map(str, sizes)).encode()

    async def digest(self, requests: AsyncIterator[bytes], context: Any) -> bytes:
        """Each message's length and SHA-256, in order: a short answer for large ones."""
        digests = [
            b"%d:%s" % (len(request), hashlib.sha256(request).hexdigest().encode())
            async for request in requests
        ]
        return b";".join(digests)

    async def deaf(self, requests: AsyncIterator[bytes], context: Any) -> bytes:
        await asyncio.sleep(30)  # never reads its requests
        return b""

    async def watch(self, request: bytes, context: Any) -> None:
        for i in range(int(request.decode())):
            await context.write(str(i).encode())

    def register(self, server: Http2Server) -> None:
        server.add_registered_method_handlers(
            SERVICE,
            {
                "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
                "Big": grpc.unary_unary_rpc_method_handler(self.big),
                "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
                "Held": grpc.unary_unary_rpc_method_handler(self.held),
                "Fail": grpc.unary_unary_rpc_method_handler(self.fail),
                "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
                "Tally": grpc.stream_unary_rpc_method_handler(self.tally),
                "Digest": grpc.stream_unary_rpc_method_handler(self.digest),
                "Watch": grpc.unary_stream_rpc_method_handler(self.watch),
                "Deaf": grpc.stream_unary_rpc_method_handler(self.deaf),
            },
        )


class Answer:
    """What came back on one stream."""

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.trailers: dict[bytes, bytes] = {}
        self.reset: int | None = None
        self.ended = asyncio.Event()

    @property
    def status(self) -> int:
        fields = self.trailers or self.headers
        return int(fields[b"grpc-status"])

    @property
    def message(self) -> str:
        fields = self.trailers or self.headers
        return unquote(fields.get(b"grpc-message", b"").decode())


class Client:
    """An h2 client on one loopback connection; ``flush`` writes what h2 made, in chunks
    of ``chunk`` bytes (each a write of its own, so that the server reads them apart)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.answers: dict[int, Answer] = {}
        self.pings: list[bytes] = []
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.window_updates: list[int] = []
        self.data_frame_sizes: list[int] = []
        self.auto_ack = True
        self.closed = asyncio.Event()
        self.settled = asyncio.Event()  # the server's SETTINGS arrived
        self.window_opened = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port: int, initial_window: int | None = None) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        if initial_window is not None:  # in the preface's SETTINGS
            client.h2.local_settings = h2.settings.Settings(
                client=True,
                initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window},
            )
        client.h2.initiate_connection()
        await client.flush()
        await asyncio.wait_for(client.settled.wait(), 5)
        return client

    async def send_body(self, stream: int, body: bytes, end: bool = True) -> None:
        """``body`` as DATA frames within the server's windows and largest frame."""
        position = 0
        while position < len(body):
            room = min(self.h2.local_flow_control_window(stream), self.h2.max_outbound_frame_size)
            if room <= 0:
                self.window_opened.clear()
                await asyncio.wait_for(self.window_opened.wait(), 5)
                continue
            self.h2.send_data(stream, body[position : position + room])
            position += room
            await self.flush()
        if end:
            self.h2.end_stream(stream)
            await self.flush()

    async def flush(self, chunk: int | None = None) -> None:
        data = self.h2.data_to_send()
        await self.write(data, chunk)

    async def write(self, data: bytes, chunk: int | None = None) -> None:
        step = chunk or max(1, len(data))
        for i in range(0, len(data), step):
            self.writer.write(data[i : i + step])
            await self.writer.drain()
            if chunk:
                await asyncio.sleep(0)

    async def _read(self) -> None:
        while True:
            try:
                data = await self.reader.read(65536)
            except ConnectionError:  # the server closed the connection with data unread
                data = b""
            if not data:
                self.closed.set()
                for answer in self.answers.values():
                    answer.ended.set()
                return
            for event in self.h2.receive_data(data):
                self._on(event)
            self.writer.write(self.h2.data_to_send())

    def _on(self, event: Any) -> None:
        answer = self.answers.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived):
            answer.headers = dict(event.headers)
        elif isinstance(event, h2.events.TrailersReceived):
            answer.trailers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            answer.body += event.data
            self.data_frame_sizes.append(event.flow_controlled_length)
            if self.auto_ack:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            answer.ended.set()
        elif isinstance(event, h2.events.StreamReset):
            if answer is not None:
                answer.reset = event.error_code
                answer.ended.set()
        elif isinstance(event, h2.events.PingAckReceived):
            self.pings.append(event.ping_data)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.WindowUpdated):
            self.window_opened.set()
            if event.stream_id:
                self.window_updates.append(event.delta)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.window_opened.set()
            self.settled.set()

    def start(
        self, method: str, metadata: list[tuple[bytes, bytes]] = (), end: bool = False
    ) -> int:
        stream = self.h2.get_next_available_stream_id()
        headers = [
            *request_fields(method),
            *metadata,
        ]
        self.h2.send_headers(stream, headers, end_stream=end)
        self.answers[stream] = Answer()
        return stream

    async def call(
        self, method: str, payload: bytes, chunk: int | None = None, **headers: Any
    ) -> Answer:
        if chunk is None:
            return await self.answer(await self.send(method, payload, **headers))
        stream = self.start(method, **headers)
        self.h2.send_data(stream, message(payload), end_stream=True)  # in writes of ``chunk``
        await self.flush(chunk)  # bytes, which cut the frames anywhere
        return await self.answer(stream)

    async def send(self, method: str, payload: bytes, **headers: Any) -> int:
        """A unary call's request, sent whole; its stream (for ``answer``)."""
        stream = self.start(method, **headers)
        await self.send_body(stream, message(payload))
        return stream

    async def answer(self, stream: int, timeout: float = 10) -> Answer:
        await asyncio.wait_for(self.answers[stream].ended.wait(), timeout)
        return self.answers[stream]

    async def close(self) -> None:
        self._task.cancel()
        self.writer.close()


class RawClient:
    """Frames written by hand (hyperframe) and read back one by one, for what h2's own
    state machine would not send: padded and prioritised HEADERS, a stream opened after
    the server's GOAWAY."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()
        self.buffer = b""

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        await client.send(hf.SettingsFrame(0))
        return client

    async def send(self, *frames: hf.Frame, preface: bool = False) -> None:
        data = b"".join(frame.serialize() for frame in frames)
        if isinstance(frames[0], hf.SettingsFrame) and not frames[0].flags:
            data = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + data
        self.writer.write(data)
        await self.writer.drain()

    def headers(self, stream: int, method: str, flags: list[str]) -> hf.HeadersFrame:
        frame = hf.HeadersFrame(stream, flags=flags)
        frame.data = self.encoder.encode(request_fields(method))
        return frame

    async def next_frame(self, timeout: float = 5) -> hf.Frame | None:
        """The next frame from the server; None once it closed the connection."""
        while True:
            if len(self.buffer) >= 9:
                frame, size = hf.Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) >= 9 + size:
                    frame.parse_body(memoryview(self.buffer[9 : 9 + size]))
                    self.buffer = self.buffer[9 + size :]
                    return frame
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                return None
            self.buffer += data

    async def goaway(self) -> hf.GoAwayFrame:
        """The server's GOAWAY, past the frames before it (the connection must not close
        without one)."""
        while not isinstance(frame := await self.next_frame(), hf.GoAwayFrame):
            assert frame is not None, "the connection closed without GOAWAY"
        return frame

    async def answer(self, stream: int) -> Answer:
        """The answer on ``stream``: its headers, body and trailers, or its reset."""
        answer = Answer()
        while True:
            frame = await self.next_frame()
            assert frame is not None, "the connection closed before the answer"
            if isinstance(frame, hf.HeadersFrame | hf.ContinuationFrame):
                fields = dict(self.decoder.decode(frame.data, raw=True))
                if frame.stream_id != stream:
                    continue
                if not answer.headers:
                    answer.headers = fields
                else:
                    answer.trailers = fields
                if "END_STREAM" in frame.flags:
                    return answer
            elif isinstance(frame, hf.DataFrame) and frame.stream_id == stream:
                answer.body += frame.data
                if "END_STREAM" in frame.flags:
                    return answer
            elif isinstance(frame, hf.RstStreamFrame) and frame.stream_id == stream:
                answer.reset = frame.error_code
                return answer


async def eventually(condition: Callable[[], object], seconds: float = 1.0) -> None:
    """Until ``condition()`` holds, or ``seconds`` pass (the caller asserts it then)."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)


def serve(
    test: Callable[[int, Handlers, Http2Server], Awaitable[None]],
    limit: int = LIMIT,
    max_connections: int = 2048,
    stall_seconds: float = 30.0,
    idle_seconds: float | None = None,
) -> None:
    """Run ``test`` against a server on a free loopback port, on uvloop as served, with
    ``limit`` as its message limit."""

    async def main() -> None:
        handlers = Handlers()
        server = Http2Server(
            limit,
            reuse_port=False,
            max_connections=max_connections,
            stall_seconds=stall_seconds,
            idle_seconds=idle_seconds,
        )
        handlers.register(server)
        await server.start("127.0.0.1", 0)
        port = server._server.sockets[0].getsockname()[1]
        try:
            await test(port, handlers, server)
        finally:
            await server.stop(0.5)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
