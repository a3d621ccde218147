"""The DATA side of the gRPC port's HTTP/2 connections: frames taken against the receive
windows and read into the gRPC messages they carry (each whole message handed to its
call), and the windows given back as calls take their messages.

A message whose DATA frame carries all of it gets room for all of it as soon as its length
is read: the bytes that came with the frame are copied there, and the connection reads
the socket straight into that room for the rest (``Connection.get_buffer``), so that a
large message is not copied after the kernel's copy. A message cut across frames grows as
its bytes come. Either way memory follows the bytes the client sent within its windows,
not the length a message's prefix claims."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from layerserve.service.grpc.http2 import frames as f
from layerserve.service.grpc.http2.stream import (
    CONNECTION_WINDOW,
    MAX_QUEUED_MESSAGES,
    MESSAGE_PREFIX,
    QUEUED_MESSAGES,
    STREAM_WINDOW,
    Stream,
)


class DataFrames:
    """The DATA side of ``Connection``."""

    streams: dict[int, Stream]
    last_stream: int
    max_message: int
    out: list[bytes]

    if TYPE_CHECKING:

        def _reset(self, stream: Stream, code: int) -> None: ...
        def _maybe_forget(self, stream: Stream) -> None: ...
        def _write_out(self) -> None: ...

    def _init_messages(self) -> None:
        self.recv_unacked = 0
        self.recv_window = CONNECTION_WINDOW  # what the client may still send, in all
        self.data_left = 0  # payload bytes of the DATA frame being read
        self.pad_left = 0  # its padding, read after the payload
        self.data_stream: Stream | None = None
        self.data_end = False

    def _data_frame(self, stream_id: int, size: int, end_stream: bool) -> None:
        if stream_id == 0:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "DATA on stream 0")
        if stream_id > self.last_stream:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "DATA on a stream not opened")
        self.recv_window -= size
        if self.recv_window < 0:
            raise f.ConnectionError_(f.FLOW_CONTROL_ERROR, "DATA past the connection's window")
        self.recv_unacked += size
        if self.recv_unacked >= CONNECTION_WINDOW // 4:
            self.out.append(f.window_update(0, self.recv_unacked))
            self.recv_window += self.recv_unacked
            self.recv_unacked = 0
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.remote_closed:
            stream.recv_window -= size
            if stream.recv_window < 0:  # the client ignored the window: memory is not
                self._reset(stream, f.FLOW_CONTROL_ERROR)  # bounded past it
                stream = None
        if stream is None or stream.remote_closed:
            if stream is not None:  # DATA after END_STREAM (a closed stream's is ignored)
                self._reset(stream, f.STREAM_CLOSED)
            self.data_stream = None
            return
        stream.unacked += size
        self.data_stream = stream
        self.data_end = end_stream
        if self.data_left == 0 and self.pad_left == 0:
            self._data_done()

    def _read_data(self, view: memoryview, pos: int, end: int) -> int:
        take = min(self.data_left, end - pos)
        stream = self.data_stream
        if take:
            self.data_left -= take  # before _fill, which reads what the frame still carries
            if stream is not None:  # its bytes arriving, however large the frame
                stream.seen = time.monotonic()
            if stream is not None and not stream.discard:
                self._fill(stream, view, pos, pos + take)
            pos += take
        if self.data_left == 0 and self.pad_left:
            skip = min(self.pad_left, end - pos)
            pos += skip
            self.pad_left -= skip
        if self.data_left == 0 and self.pad_left == 0:
            self._data_done()
        return pos

    def _data_done(self) -> None:
        stream = self.data_stream
        self.data_stream = None
        if stream is None or stream.id not in self.streams:
            return
        self._give_window(stream)
        if self.data_end:
            self._data_stream_end(stream)

    def _read_direct(self, nbytes: int) -> None:
        """``nbytes`` of the DATA frame being read went straight into its message."""
        stream = self.data_stream
        assert stream is not None and stream.message is not None
        stream.seen = time.monotonic()
        self.data_left -= nbytes
        stream.filled += nbytes
        if stream.filled == stream.need:
            self._message_done(stream, stream.message)
        if self.data_left == 0 and self.pad_left == 0:
            self._data_done()

    def _fill(self, stream: Stream, view: memoryview, start: int, stop: int) -> None:
        """Copy a DATA payload into the stream's messages, handing each whole one over."""
        call = stream.call
        while start < stop:
            message = stream.message
            if message is None:
                took = min(MESSAGE_PREFIX - len(stream.prefix), stop - start)
                stream.prefix += view[start : start + took]
                start += took
                if len(stream.prefix) < MESSAGE_PREFIX:
                    return
                stream.compressed = bool(stream.prefix[0])
                size = f.UINT32.unpack_from(stream.prefix, 1)[0]
                stream.prefix.clear()
                if call is None:
                    stream.discard = True
                    return
                if size > self.max_message:
                    stream.discard = True
                    call.refuse_size(size)
                    return
                if stop - start >= size:  # all here: one copy
                    self._message_done(stream, bytes(view[start : start + size]))
                    start += size
                    if stream.discard:  # reset: what follows is dropped
                        return
                    continue
                stream.need, stream.filled = size, 0
                if size - (stop - start) <= self.data_left:
                    # The frame carries the rest: bytes the client sent within its window,
                    # whatever the prefix claims. Not zeroed: every byte is written.
                    message = stream.message = memoryview(np.empty(size, np.uint8))
                else:  # grown as the bytes come (the window bounds them)
                    message = stream.message = bytearray()
            take = min(stream.need - stream.filled, stop - start)
            if isinstance(message, bytearray):
                message += view[start : start + take]
            else:
                message[stream.filled : stream.filled + take] = view[start : start + take]
            stream.filled += take
            start += take
            if stream.filled == stream.need:
                self._message_done(stream, message)
                if stream.discard:  # reset: what follows is dropped
                    return

    def _message_done(self, stream: Stream, message: bytes | memoryview | bytearray) -> None:
        """Hand a whole message over; a stream holding too many unread ones is reset."""
        stream.message = None
        call = stream.call
        if call is None:
            return
        call.message(message, stream.compressed)
        if call.queued() > MAX_QUEUED_MESSAGES:
            # tiny messages within the window, never read: each costs more than its bytes
            self._reset(stream, f.ENHANCE_YOUR_CALM)

    def _data_stream_end(self, stream: Stream) -> None:
        stream.remote_closed = True
        if stream.message is not None or stream.prefix:
            stream.discard = True
            if stream.call is not None:
                stream.call.broken_message()
        elif stream.call is not None and not stream.discard:
            stream.call.request_ended()
        self._maybe_forget(stream)

    def message_taken(self, stream: Stream) -> None:
        """A call took a queued message: the client may send more."""
        self._give_window(stream)
        self._write_out()

    def _give_window(self, stream: Stream) -> None:
        if stream.remote_closed or stream.unacked < STREAM_WINDOW // 4:
            return
        call = stream.call
        if call is not None and call.queued() >= QUEUED_MESSAGES:
            return
        self.out.append(f.window_update(stream.id, stream.unacked))
        stream.recv_window += stream.unacked
        stream.unacked = 0
