"""A request stream of the gRPC port's HTTP/2 connections, and the limits and windows
this server gives its clients."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING, Any

from layerserve.service.grpc.http2 import frames as f

if TYPE_CHECKING:
    from layerserve.service.grpc.http2.rpc import Call

READ_BUFFER = 256 * 1024
# Bytes read at once into the connection's buffer: a large message's first bytes come with
# its frame, and the rest of it goes straight into the message (``Connection.get_buffer``).
READ_CHUNK = 16 * 1024
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
MAX_STREAMS = 256
MAX_FRAME = 1024 * 1024  # the largest frame a client may send (only DATA can be that large)
MAX_HEADER_BLOCK = 64 * 1024  # HEADERS + CONTINUATION of one stream, before decoding
MAX_RESETS = 1000  # streams a client may reset in RESET_PERIOD_SECONDS
RESET_PERIOD_SECONDS = 10.0
MAX_SETTINGS = 32  # entries in one SETTINGS frame (HTTP/2 defines six)
MAX_QUEUED_MESSAGES = 4096  # a stream's unread messages before it is reset
QUEUED_MESSAGES = 4  # complete, unread messages of a stream before its window is held
PREFACE_SECONDS = 10.0  # a connection that has not sent the preface and SETTINGS by then
OUR_SETTINGS = {
    f.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
    f.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
    f.MAX_FRAME_SIZE: MAX_FRAME,
    f.MAX_HEADER_LIST_SIZE: MAX_HEADER_BLOCK,
    f.ENABLE_PUSH: 0,
}
MESSAGE_PREFIX = 5  # a gRPC message: compressed flag (1 byte), length (4 bytes), bytes


class Stream:
    """A request stream: its call, the message being read, its windows and outbox."""

    __slots__ = (
        "id",
        "call",
        "prefix",
        "compressed",
        "need",
        "filled",
        "recv_window",
        "message",
        "unacked",
        "send_window",
        "outbox",
        "remote_closed",
        "local_closed",
        "discard",
        "drained",
        "seen",
    )

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.call: Call | None = None
        self.prefix = bytearray()  # the message prefix read so far
        self.compressed = False  # the flag of the message being read
        self.need = 0  # the length of the message being read
        self.filled = 0  # and its bytes read so far
        self.recv_window = STREAM_WINDOW  # what the client may still send on the stream
        # The message being filled: room for all of it (its frame carries all of it), or
        # bytes grown as they come.
        self.message: memoryview | bytearray | None = None
        self.unacked = 0  # bytes read on the stream, not yet given back to its window
        self.send_window = send_window
        self.outbox: collections.deque[tuple[bool, Any, bool]] = collections.deque()
        self.remote_closed = False  # the client sent END_STREAM (or reset the stream)
        self.local_closed = False  # END_STREAM sent (or the stream reset)
        self.discard = False  # DATA is read and dropped (a call refused or answered)
        self.drained: asyncio.Future[None] | None = None
        self.seen = time.monotonic()  # when its HEADERS came, or its DATA bytes last did
