"""One HTTP/2 connection of the gRPC port (RFC 9113), as an asyncio buffered protocol:
the reading of frames, control frames, stream ends and the connection's own end. Header
blocks are put together and checked in ``headers.py``, DATA read into messages in
``messages.py``, and what is sent goes through ``outbound.py``.

The socket is read into one buffer that is reused (no allocation per read), ``READ_CHUNK``
bytes at a time, and frames are consumed as they arrive (a 200 KB message need not fit
one read); the rest of a large message is read into the message's own room instead
(``get_buffer``). Each request stream belongs to a
:class:`~layerserve.service.grpc.http2.rpc.Call`, which this connection hands the stream's
header block, messages and end.

Flow control, receiving: the window the client may fill is ``STREAM_WINDOW`` per stream
and ``CONNECTION_WINDOW`` in all; a stream's window is given back as its call takes the
messages (a call that stops reading stops its client, past ``QUEUED_MESSAGES`` unread
messages), the connection's as frames are read. Sending: DATA waits for the client's
windows and respects its largest frame; what cannot be sent yet waits in the stream's
outbox, in order with the trailers behind it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import hpack

from layerserve.service.grpc.http2 import frames as f
from layerserve.service.grpc.http2.headers import HeaderBlocks
from layerserve.service.grpc.http2.messages import DataFrames
from layerserve.service.grpc.http2.outbound import Outbound
from layerserve.service.grpc.http2.stream import (
    CONNECTION_WINDOW,
    MAX_FRAME,
    MAX_HEADER_BLOCK,
    MAX_RESETS,
    MAX_SETTINGS,
    OUR_SETTINGS,
    PREFACE_SECONDS,
    READ_BUFFER,
    READ_CHUNK,
    RESET_PERIOD_SECONDS,
    Stream,
)

if TYPE_CHECKING:
    from layerserve.service.grpc.http2.rpc import Call

log = logging.getLogger("layerserve.service")
# The PING that follows an idle connection's first GOAWAY (send_away_idle), and how long
# its answer may take.
LEAVING_PING = b"idle-bye"
LEAVING_SECONDS = 5.0


class Connection(HeaderBlocks, DataFrames, Outbound, asyncio.BufferedProtocol):
    """The HTTP/2 side of one client connection; ``new_call`` makes the call of a stream
    from its headers (``rpc.Call``)."""

    def __init__(
        self,
        new_call: Callable[[Connection, Stream, list[tuple[bytes, bytes]]], Call | None],
        max_message: int,
        on_close: Callable[[Connection], None],
    ) -> None:
        self._init_outbound()
        self.new_call = new_call
        self.max_message = max_message
        self.on_close = on_close
        self.buffer = bytearray(READ_BUFFER)
        self.view = memoryview(self.buffer)
        self.end = 0
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.preface = False  # the client's preface and first SETTINGS were read
        self.settings_seen = False
        self._init_headers()
        self._init_messages()
        self.streams: dict[int, Stream] = {}
        self.last_stream = 0  # the highest stream id the client opened
        self.resets = 0  # streams the client reset since reset_since
        self.answered = 0  # and calls answered in that time: a busy client may reset more
        self.reset_since = 0.0
        self.direct: memoryview | None = None  # the message's room the socket is read into
        self.closing = False  # GOAWAY sent: no new streams
        self._preface_timer: asyncio.TimerHandle | None = None
        # Since when no stream is open (the server's sweep sends an idle connection away).
        self.idle_since = time.monotonic()
        # While an idle connection is sent away: the reason, and the last word's timer.
        self.leaving: str | None = None
        self._leave_timer: asyncio.TimerHandle | None = None
        # What ``new_call`` made of the last request's header fields: a client's repeated
        # header block decodes to the very same list (``HeaderBlocks._decode``).
        self.call_plan: object = None

    # ---- asyncio -----------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) == 4:
            self.peer = f"ipv6:[{peer[0]}]:{peer[1]}"
        elif isinstance(peer, tuple):
            self.peer = f"ipv4:{peer[0]}:{peer[1]}"
        else:
            self.peer = f"unix:{peer}"
        transport.write(
            f.settings_frame(OUR_SETTINGS)
            + f.window_update(0, CONNECTION_WINDOW - f.DEFAULT_WINDOW)
        )
        loop = asyncio.get_running_loop()
        self._preface_timer = loop.call_later(PREFACE_SECONDS, self._preface_overdue)

    def _preface_overdue(self) -> None:
        if not self.settings_seen and self.transport is not None:
            self.transport.close()

    def get_buffer(self, sizehint: int) -> memoryview:
        stream = self.data_stream
        if (
            self.end == 0
            and stream is not None
            and isinstance(stream.message, memoryview)
            and not stream.discard
        ):
            # the rest of a message its DATA frame carries: read into the message itself
            self.direct = stream.message[stream.filled : stream.need]
            return self.direct
        self.direct = None
        if self.end == len(self.buffer):  # a frame larger than the buffer (up to MAX_FRAME)
            self._resize(2 * len(self.buffer))
        return self.view[self.end : self.end + READ_CHUNK]

    def _resize(self, size: int) -> None:
        """A new buffer of ``size`` bytes holding what is unread: the event loop may still
        hold a view of the old one (it does within ``buffer_updated``), which therefore
        cannot change size."""
        buffer = bytearray(size)
        buffer[: self.end] = self.view[: self.end]
        self.buffer, self.view = buffer, memoryview(buffer)

    def buffer_updated(self, nbytes: int) -> None:
        direct = self.direct
        self.handling = True
        try:
            if direct is not None:
                self.direct = None
                self._read_direct(nbytes)
                used = 0
            else:
                self.end += nbytes
                used = self._handle(self.end)
        except f.ConnectionError_ as error:
            self._fail(error.code, str(error))
            return
        except hpack.HPACKError as error:
            self._fail(f.COMPRESSION_ERROR, f"header block: {error}")
            return
        except Exception:  # a fault of this server: the connection ends, the server goes on
            log.exception("gRPC connection from %s failed", self.peer)
            self._fail(f.INTERNAL_ERROR, "the server failed")
            return
        finally:
            self.handling = False
        rest = self.end - used
        if rest and used:  # the unfinished frame to the front (a copy: the two may overlap)
            self.buffer[:rest] = bytes(self.view[used : self.end])
        self.end = rest
        if len(self.buffer) > READ_BUFFER and rest < READ_BUFFER:
            self._resize(READ_BUFFER)
        self._write_out()

    def pause_writing(self) -> None:
        """The client does not read what is written: its requests are not read either,
        and streaming answers wait (``drained``), until it does, so that answers cannot
        pile up in memory."""
        self._writing_paused()
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_resumed()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        return False  # close the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._writing_resumed()  # whoever waited to write: there is nothing to wait for
        if self._preface_timer is not None:
            self._preface_timer.cancel()
        if self._leave_timer is not None:
            self._leave_timer.cancel()
        for stream in list(self.streams.values()):
            self._forget(stream, client_gone=True)
        self.on_close(self)

    # ---- reading -----------------------------------------------------------------------
    def _handle(self, end: int) -> int:
        data, view = self.buffer, self.view
        pos = 0
        if not self.preface:
            size = len(f.PREFACE)
            if end < size:
                if data[:end] != f.PREFACE[:end]:
                    raise f.ConnectionError_(f.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                return 0
            if data[:size] != f.PREFACE:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
            self.preface = True
            pos = size
        while True:
            if self.data_left or self.pad_left:
                pos = self._read_data(view, pos, end)
                if self.data_left or self.pad_left:
                    return pos
                continue
            if end - pos < f.FRAME_HEADER_SIZE:
                return pos
            high, low, kind, flags, stream_id = f.FRAME_HEADER.unpack_from(data, pos)
            size = (high << 8) | low
            stream_id &= f.STREAM_ID_MASK
            if size > MAX_FRAME:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, f"a frame of {size} bytes")
            if not self.settings_seen and kind != f.SETTINGS:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "the preface's SETTINGS is missing")
            if self.headers_for is not None and kind != f.CONTINUATION:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "a header block left unfinished")
            if kind == f.DATA:
                if flags & f.PADDED:
                    if end - pos < f.FRAME_HEADER_SIZE + 1:
                        return pos
                    pad = data[pos + f.FRAME_HEADER_SIZE]
                    if pad >= size:
                        raise f.ConnectionError_(f.PROTOCOL_ERROR, "padding past the frame")
                    pos += 1
                    self.data_left, self.pad_left = size - 1 - pad, pad
                else:
                    self.data_left, self.pad_left = size, 0
                pos += f.FRAME_HEADER_SIZE
                self._data_frame(stream_id, size, bool(flags & f.END_STREAM))
                continue
            if kind in (f.HEADERS, f.CONTINUATION) and size > MAX_HEADER_BLOCK:
                raise f.ConnectionError_(f.ENHANCE_YOUR_CALM, "a header block over 64 KiB")
            if end - pos - f.FRAME_HEADER_SIZE < size:
                return pos
            start = pos + f.FRAME_HEADER_SIZE
            pos = start + size
            self._control_frame(kind, flags, stream_id, view[start:pos])

    def _control_frame(self, kind: int, flags: int, stream_id: int, payload: memoryview) -> None:
        if kind == f.HEADERS:
            self._headers_frame(flags, stream_id, payload)
        elif kind == f.CONTINUATION:
            if stream_id != self.headers_for:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            self._add_header_fragment(payload, flags)
        elif kind == f.SETTINGS:
            self._settings_frame(flags, stream_id, payload)
        elif kind == f.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == f.PING:
            if stream_id != 0:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "PING not of 8 bytes")
            if not flags & f.ACK:
                self.out.append(f.frame(f.PING, f.ACK, 0, bytes(payload)))
            elif self.leaving is not None and payload == LEAVING_PING:
                self._leave()
        elif kind == f.RST_STREAM:
            if stream_id == 0 or stream_id > self.last_stream:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "RST_STREAM on a stream not opened")
            if len(payload) != 4:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "RST_STREAM not of 4 bytes")
            self._count_reset()
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.remote_closed = stream.local_closed = True
                self._forget(stream, client_gone=True)
        elif kind == f.GOAWAY:
            if stream_id != 0:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "GOAWAY on a stream")
            if len(payload) < 8:  # the last stream id and the error code
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
            self.closing = True  # the client opens no more streams; those open finish
            self._close_if_idle()
        elif kind == f.PUSH_PROMISE:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        elif kind == f.PRIORITY:
            if stream_id == 0:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:  # a stream error (RFC 9113 section 6.3)
                stream = self.streams.get(stream_id)
                if stream is not None:
                    self._reset(stream, f.FRAME_SIZE_ERROR)
                else:
                    self.out.append(f.rst_stream(stream_id, f.FRAME_SIZE_ERROR))
        # other frame types are ignored (RFC 9113 section 4.1)

    def _count_reset(self) -> None:
        """A client resetting streams faster than any would mean to (HTTP/2's "rapid
        reset", CVE-2023-44487: each stream opened costs the server a call) is sent away."""
        now = time.monotonic()
        if now - self.reset_since > RESET_PERIOD_SECONDS:
            self.resets, self.reset_since, self.answered = 0, now, 0
        self.resets += 1
        if self.resets > MAX_RESETS + self.answered:
            raise f.ConnectionError_(
                f.ENHANCE_YOUR_CALM,
                f"over {MAX_RESETS} streams reset in {RESET_PERIOD_SECONDS:.0f} seconds",
            )

    def _settings_frame(self, flags: int, stream_id: int, payload: memoryview) -> None:
        if stream_id != 0:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if not self.settings_seen:  # the preface is the client's own SETTINGS
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "the preface's SETTINGS is missing")
            if len(payload):
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "SETTINGS not in 6-byte entries")
        if len(payload) > 6 * MAX_SETTINGS:
            raise f.ConnectionError_(f.ENHANCE_YOUR_CALM, f"over {MAX_SETTINGS} settings")
        # The acknowledgement goes before any frame that the new values let through: the
        # client holds to its old values until it reads it (RFC 9113 section 6.5.3).
        self.out.append(f.frame(f.SETTINGS, f.ACK, 0))
        window = None
        for offset in range(0, len(payload), 6):
            key, value = f.SETTING.unpack_from(payload, offset)
            if key == f.INITIAL_WINDOW_SIZE:
                if value > f.LARGEST_WINDOW:
                    raise f.ConnectionError_(f.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
                window = value  # the last one counts (section 6.5.3): applied once, below
            elif key == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_FRAME_SIZE <= value <= f.LARGEST_FRAME_SIZE:
                    raise f.ConnectionError_(f.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                self.peer_frame = value
            elif key == f.MAX_HEADER_LIST_SIZE:
                self.peer_header_list = value
            elif key == f.ENABLE_PUSH and value > 1:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "ENABLE_PUSH neither 0 nor 1")
        if window is not None:
            delta = window - self.peer_window
            self.peer_window = window
            for stream in self.streams.values():
                stream.send_window += delta
                if stream.send_window > f.LARGEST_WINDOW:
                    raise f.ConnectionError_(f.FLOW_CONTROL_ERROR, "a window past 2^31-1")
            if delta > 0:
                self._flush_blocked()
        if not self.settings_seen:
            self.settings_seen = True
            if self._preface_timer is not None:
                self._preface_timer.cancel()

    def _window_update(self, stream_id: int, payload: memoryview) -> None:
        if len(payload) != 4:
            raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE not of 4 bytes")
        increment = f.UINT32.unpack_from(payload)[0] & f.STREAM_ID_MASK
        if stream_id == 0:
            if increment == 0:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > f.LARGEST_WINDOW:
                raise f.ConnectionError_(f.FLOW_CONTROL_ERROR, "a window past 2^31-1")
            self._flush_blocked()
            return
        if stream_id > self.last_stream:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "WINDOW_UPDATE on a stream not opened")
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_closed:
            return
        if increment == 0:
            self._reset(stream, f.PROTOCOL_ERROR)
            return
        stream.send_window += increment
        if stream.send_window > f.LARGEST_WINDOW:
            self._reset(stream, f.FLOW_CONTROL_ERROR)
            return
        self._flush(stream)

    # ---- stream and connection ends -------------------------------------------------------
    def _reset(self, stream: Stream, code: int) -> None:
        if not stream.local_closed:
            self.out.append(f.rst_stream(stream.id, code))
            if not stream.remote_closed:
                self._note_reset(stream.id)
        stream.local_closed = stream.remote_closed = True
        self._forget(stream, client_gone=True)  # nobody to answer: the handler stops

    def _maybe_forget(self, stream: Stream) -> None:
        if stream.local_closed and stream.remote_closed:
            self._forget(stream, client_gone=False)

    def _forget(self, stream: Stream, client_gone: bool) -> None:
        stream.discard = True  # what still comes for it is read and dropped
        if self.streams.pop(stream.id, None) is None:
            return
        self.blocked.pop(stream.id, None)
        stream.outbox.clear()
        if stream.drained is not None and not stream.drained.done():
            stream.drained.set_result(None)
        if stream.call is not None:
            stream.call.stream_closed(client_gone)
        if not self.streams:
            self.idle_since = time.monotonic()
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self.closing and not self.streams and self.transport is not None:
            self._write_out_now()
            self.transport.close()

    def close(self) -> None:
        """Close now, after the frames already made."""
        self._write_out_now()
        if self.transport is not None:
            self.transport.close()

    def go_away(self, reason: str = "the server is shutting down") -> None:
        """No new streams (the server stops, or the connection was idle too long): GOAWAY
        with NO_ERROR and the last stream read, so that a client knows a call it began
        meanwhile was not read and sends it again on a new connection; the connection
        closes once the streams open end."""
        if self.closing or self.closed:
            return
        self.closing = True
        self.out.append(f.goaway(self.last_stream, f.NO_ERROR, reason))
        self._write_out_now()
        self._close_if_idle()

    def send_away_idle(self, reason: str) -> None:
        """An idle connection is sent away in two steps (RFC 9113 section 6.8), so that a
        call its client begins meanwhile is served, not lost: GOAWAY naming the largest
        stream id, and a PING; once the PING comes back, every stream the client opened
        before it read that GOAWAY has arrived, and the final GOAWAY names the last one
        (the connection closes when they end). A client that does not answer the PING
        within ``LEAVING_SECONDS`` gets the final GOAWAY then."""
        if self.closing or self.closed or self.leaving is not None:
            return
        self.leaving = reason
        self.out.append(f.goaway(f.STREAM_ID_MASK, f.NO_ERROR, reason))
        self.out.append(f.frame(f.PING, 0, 0, LEAVING_PING))
        self._write_out_now()
        loop = asyncio.get_running_loop()
        self._leave_timer = loop.call_later(LEAVING_SECONDS, self._leave)

    def _leave(self) -> None:
        if self._leave_timer is not None:
            self._leave_timer.cancel()
            self._leave_timer = None
        if self.closed or self.leaving is None:
            return
        self.go_away(self.leaving)

    def _fail(self, code: int, reason: str) -> None:
        log.info("gRPC connection from %s closed: %s", self.peer, reason)
        self.out.append(f.goaway(self.last_stream, code, reason))
        self.closing = True
        self.close()
