"""The gRPC load generator's HTTP/2 connection (RFC 9113), written to cost the machine as
little per call as the HTTP/1.1 generator of ``layerserve.loadgen`` does, so that on a
machine shared with the server the gRPC and HTTP rows measure the server alike: the
request's header block and message are encoded once, a call is two frame headers and one
write, and an answer's header blocks are decoded once per distinct block (a server that
answers with the same bytes costs no HPACK work after its first answer).

Each connection carries ``slots`` units of concurrency: in ``unary`` mode a slot is one
call after another (``ModelInfer``), each on a new stream; in streaming mode a slot is
one stream (``ModelStreamInfer``) with one request in flight on it. Flow control is kept
both ways: what is sent waits for the server's windows and respects its largest frame;
what is received is given back to the server at once (the generator keeps nothing).
Counting and timing are ``layerserve.loadgen``'s level state."""

from __future__ import annotations

import asyncio
import collections
import struct
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import hpack

from layerserve.hpack_blocks import HeaderBlocks
from layerserve.loadgen import ERROR_SNIPPET_BYTES, record_answer

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 3, 4, 6, 7, 8, 9,
)  # fmt: skip
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_TABLE, SETTINGS_ENABLE_PUSH, SETTINGS_MAX_STREAMS = 0x1, 0x2, 0x3
SETTINGS_WINDOW, SETTINGS_FRAME = 0x4, 0x5
DEFAULT_TABLE = 4096  # the HPACK table a server keeps unless its SETTINGS say less
FRAME = struct.Struct(">HBBBI")  # length (24 bits, as 16 + 8), type, flags, stream
FRAME_HEADER_SIZE = 9
UINT32 = struct.Struct(">I")
SETTING = struct.Struct(">HI")
DEFAULT_WINDOW = 65_535
DEFAULT_FRAME = 16_384
LARGEST_WINDOW = 2**31 - 1
# Received bytes given back to the server's windows once this many are read.
GIVE_BACK = 1 << 20
# A ModelStreamInferResponse that carries an error starts with its error_message (field 1,
# a string: tag 0x0a); an answer starts with its infer_response (field 2: tag 0x12).
STREAM_ERROR_TAG = b"\x0a"
GRPC_STATUS_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)  # fmt: skip


class ProtocolViolation(Exception):
    """The server broke HTTP/2 or gRPC framing: the level ends with this error."""


def request_header_blocks(
    path: str, authority: str, metadata: Sequence[tuple[str, str]]
) -> tuple[bytes, bytes, bytes]:
    """A call's header block as a connection's first call sends it and as every later one
    does, encoded once: the first adds the fields to the server's HPACK table, later ones
    only name them there, as gRPC's own clients do (a server reads such a block once).
    Third, the block for a server that keeps a smaller table than the default: literals
    never indexed, the same bytes on every call."""
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *((name.lower(), value) for name, value in metadata),
    ]
    encoder = hpack.Encoder()
    first, later = encoder.encode(headers), encoder.encode(headers)
    if encoder.encode(headers) != later:
        raise ProtocolViolation("the header fields do not fit the HPACK table")
    plain = hpack.Encoder().encode([(n, v, True) for n, v in headers], huffman=False)
    return first, later, plain


def grpc_message(message: bytes) -> bytes:
    """A message as gRPC frames it (uncompressed flag, length, bytes)."""
    return b"\x00" + UINT32.pack(len(message)) + message


class _Slot:
    """A unit of concurrency: the stream of its request in flight, and what it read."""

    __slots__ = ("stream", "sent", "first", "received", "answered", "ending")

    def __init__(self) -> None:
        self.stream = 0
        self.sent = 0.0
        self.first = True  # its first request is in flight (see loadgen)
        self.received = bytearray()  # DATA of its stream not yet read as messages
        self.answered = False  # a unary call's answer message came
        self.ending = False  # its stream was ended by the generator (streaming)


class GrpcConnection(asyncio.Protocol):
    """``slots`` calls (or streams) kept busy on one connection until ``state["stop"]``;
    ``ready`` is set by the server's first SETTINGS, ``done`` once every slot is idle."""

    def __init__(
        self, state: dict[str, Any], header_blocks: tuple[bytes, bytes, bytes],
        message: bytes, slots: int, streaming: bool,
    ) -> None:  # fmt: skip
        loop = asyncio.get_running_loop()
        self.state = state
        self.header_block, self.later_header_block, self.plain_header_block = header_blocks
        self.opened = False  # a stream was opened: the server's HPACK table holds our fields
        self.message = memoryview(grpc_message(message))
        self.streaming = streaming
        self.slots = [_Slot() for _ in range(slots)]
        self.by_stream: dict[int, _Slot] = {}
        self.next_stream = 1
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.ready = loop.create_future()
        self.done = loop.create_future()
        self.idle = 0
        # what the server lets us send
        self.max_frame = DEFAULT_FRAME
        self.window = DEFAULT_WINDOW
        self.stream_window = DEFAULT_WINDOW  # each new stream's, from the server's SETTINGS
        self.windows: dict[int, int] = {}
        self.pending: collections.deque[list[Any]] = collections.deque()  # [stream, view, end]
        self.out: list[bytes] = []  # frames to write before the pending DATA
        # what we read and have not given back yet
        self.unacked = 0
        self.unacked_streams: collections.Counter[int] = collections.Counter()
        self.decoder = HeaderBlocks()
        self.block = bytearray()  # a header block waiting for its CONTINUATION

    # ---- asyncio ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ours = SETTING.pack(SETTINGS_ENABLE_PUSH, 0) + SETTING.pack(SETTINGS_WINDOW, LARGEST_WINDOW)
        self.transport.write(
            PREFACE
            + _frame(SETTINGS, 0, 0, ours)
            + _frame(WINDOW_UPDATE, 0, 0, UINT32.pack(LARGEST_WINDOW - DEFAULT_WINDOW))
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self._read_frames()
        except Exception as exc:  # noqa: BLE001 - ends this level with the error
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("the server closed the connection"))

    def _fail(self, error: BaseException) -> None:
        for future in (self.ready, self.done):
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    # ---- sending ----------------------------------------------------------------------
    def start(self) -> None:
        """Every slot sends its first request."""
        for slot in self.slots:
            self._send(slot)
        self._pump()

    def _send(self, slot: _Slot) -> None:
        state = self.state
        state["sent"] += 1
        slot.sent = time.perf_counter()
        if not self.streaming or slot.stream == 0:
            self._open(slot)
        self.pending.append([slot.stream, self.message, not self.streaming])

    def _open(self, slot: _Slot) -> None:
        stream, self.next_stream = self.next_stream, self.next_stream + 2
        slot.stream, slot.answered, slot.ending = stream, False, False
        slot.received.clear()
        self.by_stream[stream] = slot
        self.windows[stream] = self.stream_window
        self.out.append(_frame(HEADERS, END_HEADERS, stream, self.header_block))
        self.header_block, self.opened = self.later_header_block, True

    def _pump(self) -> None:
        """Writes the new streams' HEADERS and what the windows let through of the
        messages, in order (a stream's later DATA never passes its earlier), a frame at
        most ``max_frame``, in one write."""
        out, self.out = self.out, []
        blocked: list[list[Any]] = []
        held: set[int] = set()  # streams with DATA waiting for a window
        while self.pending:
            entry = self.pending.popleft()
            stream, view, end = entry
            if stream not in self.windows:  # the stream ended meanwhile
                continue
            if stream in held:
                blocked.append(entry)
                continue
            while True:
                # (a window may be below 0: a server may lower its windows, RFC 9113 6.9.2)
                size = max(0, min(len(view), self.window, self.windows[stream], self.max_frame))
                if size == 0 and len(view):
                    break  # a window is shut: the rest waits for WINDOW_UPDATE
                last = size == len(view)
                flags = END_STREAM if end and last else 0
                out.append(FRAME.pack(size >> 8, size & 0xFF, DATA, flags, stream))
                out.append(view[:size])
                self.window -= size
                self.windows[stream] -= size
                view = view[size:]
                if last:
                    break
            if len(view):
                entry[1] = view
                blocked.append(entry)
                held.add(stream)
        self.pending.extend(blocked)
        if out:
            assert self.transport is not None
            self.transport.writelines(out)

    def finish(self) -> None:
        """Past the window's end: streams are ended (their requests all answered), the
        end after whatever of the stream's message still waits for a window."""
        if self.streaming:
            for slot in self.slots:
                if slot.stream and not slot.ending and slot.stream in self.windows:
                    slot.ending = True
                    waiting = [e for e in self.pending if e[0] == slot.stream]
                    if waiting:
                        waiting[-1][2] = True
                    else:
                        self.pending.append([slot.stream, memoryview(b""), True])
            self._pump()

    # ---- receiving --------------------------------------------------------------------
    def _read_frames(self) -> None:
        buffer = self.buffer
        at = 0
        while len(buffer) - at >= FRAME_HEADER_SIZE:
            high, low, kind, flags, stream = FRAME.unpack_from(buffer, at)
            length = high << 8 | low
            end = at + FRAME_HEADER_SIZE + length
            if end > len(buffer):
                break
            payload = bytes(buffer[at + FRAME_HEADER_SIZE : end])
            at = end
            stream &= LARGEST_WINDOW
            if kind == DATA:
                self._data(stream, flags, payload, length)
            elif kind in (HEADERS, CONTINUATION):
                self._header_frame(kind, stream, flags, payload)
            elif kind == WINDOW_UPDATE:
                self._window_update(stream, payload)
            elif kind == SETTINGS:
                self._settings(flags, payload)
            elif kind == PING and not flags & ACK:
                self.transport.write(_frame(PING, ACK, 0, payload))  # type: ignore[union-attr]
            elif kind == RST_STREAM:
                self._ended(stream, "RST_STREAM", b"error code %d" % UINT32.unpack(payload)[0])
            elif kind == GOAWAY:
                raise ProtocolViolation(f"the server sent GOAWAY: {payload[8:300]!r}")
        del buffer[:at]

    def _data(self, stream: int, flags: int, payload: bytes, length: int) -> None:
        self._give_back(stream, length)
        slot = self.by_stream.get(stream)
        if slot is None:
            return
        if flags & PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        slot.received += payload
        while len(slot.received) >= 5:
            size = UINT32.unpack_from(slot.received, 1)[0]
            if len(slot.received) < 5 + size:
                break
            message = bytes(slot.received[5 : 5 + size])
            del slot.received[: 5 + size]
            self._message(slot, message)
        if flags & END_STREAM:
            self._ended(stream, "EOF", b"the stream ended without trailers")

    def _message(self, slot: _Slot, message: bytes) -> None:
        if not self.streaming:
            slot.answered = True
            return
        if message[:1] == STREAM_ERROR_TAG:
            self._completed(slot, "STREAM_ERROR", message)
        else:
            self._completed(slot, "OK", b"")

    def _give_back(self, stream: int, length: int) -> None:
        self.unacked += length
        self.unacked_streams[stream] += length
        if self.unacked >= GIVE_BACK:
            out = [_frame(WINDOW_UPDATE, 0, 0, UINT32.pack(self.unacked))]
            for open_stream, count in self.unacked_streams.items():
                if open_stream in self.by_stream and count:
                    out.append(_frame(WINDOW_UPDATE, 0, open_stream, UINT32.pack(count)))
            self.unacked = 0
            self.unacked_streams.clear()
            self.transport.writelines(out)  # type: ignore[union-attr]

    def _header_frame(self, kind: int, stream: int, flags: int, payload: bytes) -> None:
        if kind == HEADERS:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & PRIORITY:
                payload = payload[5:]
            self.block = bytearray(payload)
        else:
            self.block += payload
        if not flags & END_HEADERS:
            return
        headers = self.decoder.decode(bytes(self.block))  # (a stream's end or not: the HPACK table)
        if stream not in self.by_stream:
            return
        if headers.get(b":status", b"200") != b"200":
            self._ended(stream, f"HTTP_{headers[b':status'].decode()}", b"")
        elif b"grpc-status" in headers:  # the trailers (or a trailers-only answer)
            code = int(headers[b"grpc-status"])
            name = GRPC_STATUS_NAMES[code] if code < len(GRPC_STATUS_NAMES) else str(code)
            detail = unquote_to_bytes(headers.get(b"grpc-message", b""))
            if name == "OK" and not self.streaming and not self.by_stream[stream].answered:
                name, detail = "EOF", b"no answer message before the trailers"
            self._ended(stream, name, detail)

    def _window_update(self, stream: int, payload: bytes) -> None:
        increment = UINT32.unpack(payload)[0] & LARGEST_WINDOW
        if stream == 0:
            self.window += increment
        elif stream in self.windows:
            self.windows[stream] += increment
        self._pump()

    def _settings(self, flags: int, payload: bytes) -> None:
        if flags & ACK:
            return
        for at in range(0, len(payload) - len(payload) % 6, 6):
            key, value = SETTING.unpack_from(payload, at)
            if key == SETTINGS_WINDOW:
                for stream in self.windows:
                    self.windows[stream] += value - self.stream_window
                self.stream_window = value
            elif key == SETTINGS_FRAME:
                self.max_frame = value
            elif key == SETTINGS_TABLE and value < DEFAULT_TABLE:
                if self.opened:
                    raise ProtocolViolation("the server shrank its HPACK table during the level")
                self.header_block = self.later_header_block = self.plain_header_block
            elif key == SETTINGS_MAX_STREAMS and value < len(self.slots):
                raise ProtocolViolation(
                    f"the server allows {value} streams on a connection; "
                    f"{len(self.slots)} are needed: use more connections"
                )
        self.transport.write(_frame(SETTINGS, ACK, 0, b""))  # type: ignore[union-attr]
        if not self.ready.done():
            self.ready.set_result(None)
        self._pump()

    # ---- a call's end -----------------------------------------------------------------
    def _ended(self, stream: int, code: str, detail: bytes) -> None:
        """A stream ended (trailers, reset or end): its call's outcome, or a streaming
        slot's stream over (one the generator ended after the window is no failure)."""
        slot = self.by_stream.pop(stream, None)
        self.windows.pop(stream, None)
        self.unacked_streams.pop(stream, None)
        if slot is None:
            return
        slot.stream = 0
        if self.streaming and slot.ending and code == "OK":
            self._slot_idle()
            return
        if self.streaming and code == "OK":  # the server ended a stream with a request on it
            code, detail = "EOF", b"the server ended the stream"
        self._completed(slot, code, detail)

    def _completed(self, slot: _Slot, code: str, detail: bytes) -> None:
        state = self.state
        if code != "OK" and state["first_error"] is None:
            state["first_error"] = (code, detail[:ERROR_SNIPPET_BYTES])
        now = record_answer(state, code, code == "OK", slot.sent, slot.first)
        slot.first = False
        if now < state["stop"]:
            self._send(slot)
            self._pump()
        elif self.streaming and slot.stream:
            self.finish()  # its stream ends; the slot is idle at the trailers
        else:
            self._slot_idle()

    def _slot_idle(self) -> None:
        self.idle += 1
        if self.idle == len(self.slots) and not self.done.done():
            self.done.set_result(None)


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    size = len(payload)
    return FRAME.pack(size >> 8, size & 0xFF, kind, flags, stream) + payload
