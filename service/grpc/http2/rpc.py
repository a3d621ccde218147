"""gRPC over this server's HTTP/2 connections (the gRPC over HTTP2 protocol): a stream's
headers select the method, its DATA carries length-prefixed messages, and the answer is
headers, messages and trailers with ``grpc-status``. Each call runs the method's
registered ``grpc.RpcMethodHandler`` as grpc.aio runs it, with a :class:`Context` that has
the ``grpc.aio.ServicerContext`` methods the servicers use."""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import inspect
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from layerserve.service.grpc.http2 import frames as f
from layerserve.service.grpc.http2.connection import Connection
from layerserve.service.grpc.http2.stream import Stream
from layerserve.service.grpc.status_message import MESSAGE_MOST, encode, fit
from layerserve.service.protocols.body import unended

log = logging.getLogger("layerserve.service")

Metadata = tuple[tuple[str, str | bytes], ...]
Message = bytes | bytearray | memoryview  # a request message as read: bytes, or the room it filled
# Headers of the protocol, not metadata the handlers see (as grpc.aio leaves them out).
RESERVED = frozenset(
    (
        b"content-type",
        b"te",
        b"grpc-timeout",
        b"grpc-encoding",
        b"grpc-accept-encoding",
        b"grpc-message-type",
        b"content-length",
        b"connection",
        b"host",
    )
)
TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
RESPONSE_HEADERS = f.header_block(
    (
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-accept-encoding", b"identity,gzip,deflate"),
    )
)
SHUTTING_DOWN = "the server is shutting down"
# grpc-encoding -> zlib's wbits: gzip's header, and gRPC's "deflate", which is zlib's format
DECOMPRESSION = {"gzip": 31, "deflate": 15}
ACCEPTED_ENCODINGS = "identity, " + ", ".join(DECOMPRESSION)
# A client that resets its call this close to the call's deadline gave up on that deadline.
DEADLINE_SLACK = 0.05
INFLATE_ON_LOOP_BYTES = 1024  # at most about 1 MiB once inflated: a millisecond or two


def metadata_block(metadata: Sequence[tuple[str, Any]]) -> bytes:
    """Metadata as header fields, HPACK literals as ``frames.header_block`` writes them:
    a ``-bin`` key's bytes in base64 without padding."""
    return b"".join(
        _field_start(key) + f.string_literal(_metadata_text(value).encode())
        for key, value in metadata
    )


@functools.lru_cache(maxsize=64)
def _field_start(key: str) -> bytes:
    """A literal field without indexing, up to its value: the server's own metadata keys
    (``x-request-id`` on every call), encoded once."""
    return b"\x00" + f.string_literal(key.lower().encode())


TRAILERS_ONLY = f.header_block(((b":status", b"200"), (b"content-type", b"application/grpc")))
STATUS_FIELDS = {
    code: f.header_block(((b"grpc-status", str(code.value[0]).encode()),))
    for code in grpc.StatusCode
}


def status_block(
    code: grpc.StatusCode,
    message: str,
    metadata: Sequence[tuple[str, Any]],
    headers: bool,
    limit: int | None = None,
) -> bytes:
    """Trailers (or, with ``headers``, a trailers-only answer) carrying the status; its
    message cut as ``status_message`` says, and so that the trailers stay below ``limit``,
    the client's SETTINGS_MAX_HEADER_LIST_SIZE (the C core refuses a list of its limit)."""
    block = TRAILERS_ONLY + STATUS_FIELDS[code] if headers else STATUS_FIELDS[code]
    trailing = metadata_block(metadata) if metadata else b""
    if message:
        room = MESSAGE_MOST
        if limit is not None:
            others = (TRAILERS_ONLY_SIZE if headers else 0) + _field_size(
                "grpc-status", str(code.value[0])
            )
            for key, value in metadata:
                others += _field_size(key, _metadata_text(value))
            room = min(room, limit - 1 - others - _field_size("grpc-message", ""))
        message = fit(message, room)
        if message:
            block += f.header_block(((b"grpc-message", encode(message).encode()),))
    return block + trailing


# RFC 9113 section 6.5.2: a field's size in a header list is its name's and value's
# lengths, and 32.
def _field_size(name: str, value: str) -> int:
    return len(name) + len(value) + 32


TRAILERS_ONLY_SIZE = _field_size(":status", "200") + _field_size("content-type", "application/grpc")


def _metadata_text(value: Any) -> str:
    """A metadata value as ``metadata_block`` writes it."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).rstrip(b"=").decode()
    return str(value)


def parse_timeout(value: bytes) -> float | None:
    """``grpc-timeout`` (1 to 8 digits and a unit) in seconds; None when malformed."""
    unit = TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not 1 <= len(digits) <= 8 or not digits.isdigit():
        return None
    return int(digits) * unit


def metadata_of(headers: list[tuple[bytes, bytes]]) -> Metadata:
    entries: list[tuple[str, str | bytes]] = []
    for name, value in headers:
        if name[:1] == b":" or name in RESERVED:
            continue
        key = name.decode("latin-1")
        if key.endswith("-bin"):
            try:
                raw = base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
            except ValueError:
                raise ValueError(f"metadata {key} is not in base64") from None
            entries.append((key, raw))
        else:
            entries.append((key, value.decode("latin-1")))
    return tuple(entries)


class Context:
    """The ``grpc.aio.ServicerContext`` of one call, as far as servicers use it."""

    def __init__(self, call: Call, metadata: Metadata) -> None:
        self._call = call
        self._metadata = metadata
        self._trailing: Sequence[tuple[str, Any]] = ()
        self._code: grpc.StatusCode | None = None
        self._details = ""

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def peer(self) -> str:
        return self._call.connection.peer

    def time_remaining(self) -> float | None:
        deadline = self._call.deadline
        if deadline is None:
            return None
        if self._call.expired:  # the timer may fire a little before the clock says so
            return 0.0
        return max(0.0, deadline - time.monotonic())

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:
        self._trailing = tuple(metadata)

    def trailing_metadata(self) -> Sequence[tuple[str, Any]]:
        return self._trailing

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def set_details(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort with OK")  # as grpc.aio refuses it
        self._code, self._details = code, details
        if trailing_metadata:
            self._trailing = tuple(trailing_metadata)
        raise grpc.aio.AbortError()

    async def write(self, message: Any) -> None:
        await self._call.send_message(message)

    async def read(self) -> Any:
        requests = self._call.requests
        if requests is None:
            raise RuntimeError("read() on a call whose request is one message")
        try:
            return await requests.__anext__()
        except StopAsyncIteration:
            return grpc.aio.EOF

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:
        self._call.send_headers(metadata)

    def cancelled(self) -> bool:
        return self._call.gone

    def done(self) -> bool:
        return self._call.finished

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


class Requests:
    """A streaming call's requests, as its handler reads them."""

    def __init__(self, call: Call, deserialize: Callable[[Any], Any] | None) -> None:
        self._call = call
        self._deserialize = deserialize
        self.queue: collections.deque[tuple[Message, bool]] = collections.deque()
        self.ended = False
        self._waiter: asyncio.Future[None] | None = None

    def push(self, message: Message | None, compressed: bool = False) -> None:
        """A message, or the end of the requests (None)."""
        if message is None:
            self.ended = True
        else:
            self.queue.append((message, compressed))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        while not self.queue:
            if self.ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message, compressed = self.queue.popleft()
        call = self._call
        call.connection.message_taken(call.stream)
        if compressed:
            try:
                message = await call.inflate(message)
            except Refused as refusal:
                call.refuse(refusal.code, str(refusal))
                raise StopAsyncIteration from None
        return call.deserialize(message, self._deserialize)


class Call:
    """One RPC: the handler's run and its answer on the stream."""

    def __init__(
        self,
        connection: Connection,
        stream: Stream,
        handler: grpc.RpcMethodHandler,
        metadata: Metadata,
        deadline: float | None,
        max_message: int,
        on_done: Callable[[Call], None],
        encoding: str = "identity",
    ) -> None:
        self.connection = connection
        self.stream = stream
        self.handler = handler
        self.max_message = max_message
        self.on_done = on_done
        self.context = Context(self, metadata)
        self.request: Message | None = None  # a unary request's message
        self.request_compressed = False
        self.messages = 0
        self.requests = (
            Requests(self, handler.request_deserializer) if handler.request_streaming else None
        )
        self.task: asyncio.Task[None] | None = None
        self.headers_sent = False
        self.gone = False  # the client reset the stream or left
        self.finished = False
        self.cut = False  # the stopping server cancelled it
        self._timer: asyncio.TimerHandle | None = None
        self._reported = False
        self.expired = False  # its deadline passed
        self.deadline = deadline
        self.encoding = encoding
        if deadline is not None:
            loop = asyncio.get_running_loop()
            remaining = max(0.0, deadline - time.monotonic())
            self._timer = loop.call_at(loop.time() + remaining, self._expire)
        if self.requests is not None:
            self._start()

    # ---- from the connection -------------------------------------------------------------
    def queued(self) -> int:
        return len(self.requests.queue) if self.requests is not None else 0

    def message(self, message: Message, compressed: bool) -> None:
        if self.finished:
            return
        self.messages += 1
        if compressed and self.encoding == "identity":  # the gRPC spec's INTERNAL
            self.refuse(grpc.StatusCode.INTERNAL, "a compressed message without grpc-encoding")
        elif compressed and self.encoding not in DECOMPRESSION:
            self.refuse(
                grpc.StatusCode.UNIMPLEMENTED,
                f"a message compressed with grpc-encoding {self.encoding!r}: this server "
                f"reads {ACCEPTED_ENCODINGS}",
            )
        elif self.requests is not None:
            self.requests.push(message, compressed)
        elif self.messages == 1:
            self.request, self.request_compressed = message, compressed

    async def inflate(self, message: Message) -> bytes:
        """A compressed message in the call's ``grpc-encoding`` (gzip or deflate, as
        grpcio and tritonclient send them), at most the message limit once inflated; past
        a few KiB it is inflated in a thread, off the event loop (a few KiB can inflate
        to megabytes)."""
        if len(message) <= INFLATE_ON_LOOP_BYTES:
            return self._inflate(message)
        return await asyncio.to_thread(self._inflate, message)

    def _inflate(self, message: Message) -> bytes:
        inflater = zlib.decompressobj(DECOMPRESSION[self.encoding])
        try:
            inflated = inflater.decompress(message, self.max_message + 1)
        except zlib.error as exc:
            raise Refused(
                grpc.StatusCode.INTERNAL, f"the message could not be decompressed: {exc}"
            ) from None
        if len(inflated) > self.max_message or inflater.unconsumed_tail:
            raise Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Received message larger than max (over {self.max_message} once "
                f"decompressed vs. {self.max_message})",
            )
        problem = unended(inflater, f"{self.encoding} message")
        if problem:
            raise Refused(grpc.StatusCode.INTERNAL, problem)
        return inflated

    def request_ended(self) -> None:
        if self.finished:  # refused already
            return
        if self.requests is not None:
            self.requests.push(None)
            return
        if self.messages != 1:
            problem = "no request message" if not self.messages else "more than one request message"
            self.refuse(grpc.StatusCode.INTERNAL, f"the call sent {problem}")
            return
        self._start()

    def refuse_size(self, size: int) -> None:
        self.refuse(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"Received message larger than max ({size} vs. {self.max_message})",
        )

    def broken_message(self) -> None:
        self.refuse(grpc.StatusCode.INTERNAL, "the request ended inside a message")

    def stream_closed(self, client_gone: bool) -> None:
        if client_gone:
            self.gone = True
            if self.deadline is not None and time.monotonic() >= self.deadline - DEADLINE_SLACK:
                # The client's own deadline ended it: its reset can come before ours fires,
                # since its clock started as it sent the call.
                self.expired = True
            if self.task is not None and not self.task.done():
                self.task.cancel()
        if self.task is None:
            self._done()

    # ---- running ----------------------------------------------------------------------
    def _start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        # A task cancelled before its first step never runs _run's own ending.
        self.task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not self.finished and not self.gone:  # cancelled before it ran
            if self.expired:
                self._finish(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            elif self.cut:
                self._finish(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            else:
                self._finish(grpc.StatusCode.CANCELLED, "Cancelled")
        self._done()

    def _expire(self) -> None:
        """The deadline passed: the call is cancelled, and answered DEADLINE_EXCEEDED
        (before its request is whole too)."""
        self.expired = True
        if self.task is not None:
            self.task.cancel()
        else:
            self.refuse(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    def cut_off(self) -> None:
        """The stopping server ends the call: UNAVAILABLE."""
        if self.task is not None and not self.task.done():
            self.cut = True
            self.task.cancel()

    def deserialize(self, message: Message, deserializer: Callable[[Any], Any] | None) -> Any:
        if deserializer is None:
            return bytes(message)
        return deserializer(message)

    async def _run(self) -> None:
        handler = self.handler
        context = self.context
        code, details = grpc.StatusCode.OK, ""
        try:
            if self.requests is not None:
                request: Any = self.requests
            else:
                assert self.request is not None
                message: Message = self.request
                if self.request_compressed:
                    message = await self.inflate(message)
                try:
                    request = self.deserialize(message, handler.request_deserializer)
                except Exception:  # noqa: BLE001 - a client's bytes
                    self._finish(grpc.StatusCode.INTERNAL, "Exception deserializing request!")
                    return
                self.request = None
            if handler.response_streaming:
                behavior = handler.unary_stream or handler.stream_stream
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for response in result:
                        await self.send_message(response)
                elif inspect.isawaitable(result):
                    await result
            else:
                behavior = handler.unary_unary or handler.stream_unary
                response = behavior(request, context)
                if inspect.isawaitable(response):
                    response = await response
                if response is not None and context.code() in (None, grpc.StatusCode.OK):
                    self.connection.cork()  # the answer and its trailers in one write
                    await self.send_message(response, last=True)
            code = context.code() or grpc.StatusCode.OK
            details = context.details()
        except grpc.aio.AbortError:
            code, details = context.code() or grpc.StatusCode.UNKNOWN, context.details()
        except asyncio.CancelledError:
            if self.gone:  # no answer to send: the client left (_task_done ends the call)
                return
            if self.cut:
                code, details = grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN
            else:
                code, details = grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
        except Refused as refusal:
            code, details = refusal.code, str(refusal)
        except Exception as exc:  # noqa: BLE001 - as grpc.aio answers a handler's error
            log.exception("gRPC method %s failed", handler)
            code, details = grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc).__name__}: {exc}"
        self._finish(code, details)

    # ---- answering --------------------------------------------------------------------
    def send_headers(self, metadata: Sequence[tuple[str, Any]] = ()) -> None:
        if self.headers_sent:
            return
        self.headers_sent = True
        block = RESPONSE_HEADERS
        if metadata:
            block += metadata_block(metadata)
        self.connection.send_headers(self.stream, block)

    async def send_message(self, response: Any, last: bool = False) -> None:
        serializer = self.handler.response_serializer
        body = serializer(response) if serializer is not None else response
        if len(body) > self.max_message:
            raise Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Sent message larger than max ({len(body)} vs. {self.max_message})",
            )
        if not self.headers_sent:
            self.send_headers()
        self.connection.send_data(self.stream, b"\x00" + f.UINT32.pack(len(body)) + bytes(body))
        if not last:
            await self.connection.drained(self.stream)

    def refuse(self, code: grpc.StatusCode, details: str) -> None:
        """An answer before the handler runs (or in place of it)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._finish(code, details)

    def _finish(self, code: grpc.StatusCode, details: str) -> None:
        self.connection.uncork()  # whatever happened since an answer corked it
        if self.finished:
            return
        self.finished = True
        if not self.gone:
            trailers = status_block(
                code,
                details,
                self.context.trailing_metadata(),
                not self.headers_sent,
                self.connection.peer_header_list,
            )
            self.connection.send_headers(self.stream, trailers, end=True)
        self.connection.uncork()  # the trailers, with the answer
        self._done()

    def _done(self) -> None:
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
        if not self._reported:
            self._reported = True
            self.on_done(self)


class Refused(Exception):
    """A call answered with ``code`` and this message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
