"""The header blocks of the gRPC port's HTTP/2 connections: HEADERS and CONTINUATION
frames put together, decoded with HPACK, checked as RFC 9113 (sections 8.2 and 8.3) asks
of a request's header fields and of trailers, and handed over: a request's to a new call,
trailers as the end of the client's stream. A malformed block resets its stream
(``PROTOCOL_ERROR``); the connection goes on."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import hpack

from layerserve.service.grpc.http2 import frames as f
from layerserve.service.grpc.http2.stream import MAX_HEADER_BLOCK, MAX_STREAMS, Stream

if TYPE_CHECKING:
    from layerserve.service.grpc.http2.rpc import Call

Fields = list[tuple[bytes, bytes]]
REQUEST_PSEUDO_HEADERS = frozenset((b":method", b":scheme", b":authority", b":path"))
# Fields of HTTP/1.1 connections, which HTTP/2 does not carry (RFC 9113 section 8.2.2).
CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade")
)
# What a field name or value must not hold (RFC 9113 section 8.2.1): in a name, controls,
# space, upper case and bytes past ASCII; in a value, NUL, CR and LF, which would let a
# value that is passed on (logged, or read as metadata) end a line or a string.
NOT_IN_NAME = re.compile(rb"[\x00-\x20:A-Z\x7f-\xff]")  # ':' only starts a pseudo-header
NOT_IN_VALUE = re.compile(rb"[\x00\r\n]")
EDGE_WHITESPACE = (b" ", b"\t")  # a value must neither start nor end with either
REQUIRED_PSEUDO_HEADERS = frozenset((b":method", b":scheme", b":path"))
# Streams reset here while their client still wrote to them, remembered so that their late
# trailers are dropped, not taken for a stream reopened (at most this many at once).
RESETS_REMEMBERED = 4 * MAX_STREAMS


def malformed(fields: Fields, request: bool) -> str | None:
    """What makes a request's header fields (``request``) or trailers malformed, or None."""
    regular = False
    pseudo: set[bytes] = set()
    for name, value in fields:
        if NOT_IN_VALUE.search(value):
            return f"a NUL, CR or LF in the value of {name.decode('latin-1')!r}"
        if value[:1] in EDGE_WHITESPACE or value[-1:] in EDGE_WHITESPACE:
            return f"white space around the value of {name.decode('latin-1')!r}"
        if name[:1] == b":":
            if not request:
                return f"a pseudo-header ({name.decode('latin-1')}) in trailers"
            if regular:
                return f"a pseudo-header ({name.decode('latin-1')}) after the regular fields"
            if name not in REQUEST_PSEUDO_HEADERS or name in pseudo:
                return f"an unknown or repeated pseudo-header ({name.decode('latin-1')})"
            if name == b":path" and not value:
                return "an empty :path"
            pseudo.add(name)
            continue
        regular = True
        if NOT_IN_NAME.search(name) or not name:
            return "a field name with upper case, a colon, a control, a space or a byte past ASCII"
        if name in CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
            return f"a connection-specific field ({name.decode('latin-1')})"
    if request and not REQUIRED_PSEUDO_HEADERS <= pseudo:
        missing = sorted(n.decode() for n in REQUIRED_PSEUDO_HEADERS - pseudo)
        return f"no {', '.join(missing)} (RFC 9113 section 8.3.1)"
    return None


class HeaderBlocks:
    """The header side of ``Connection``: it opens the streams ``new_call`` makes calls of."""

    streams: dict[int, Stream]
    last_stream: int
    closing: bool
    out: list[bytes]
    peer_window: int
    new_call: Callable[..., Call | None]

    if TYPE_CHECKING:

        def _data_stream_end(self, stream: Stream) -> None: ...
        def _reset(self, stream: Stream, code: int) -> None: ...

    def _init_headers(self) -> None:
        self.decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_BLOCK)
        # The last block of indexed fields only and its fields: a client sends the same
        # block call after call, and it means the same while the table is unchanged.
        self.indexed: tuple[bytes, Fields] | None = None
        self.checked: Fields | None = None  # the last fields found well-formed for a request
        self.headers_for: int | None = None  # the stream whose header block continues
        self.header_block = bytearray()
        self.header_end = False
        self.headers_closed = False  # the header block is of a stream already closed
        self.reset_here: dict[int, None] = {}  # RESETS_REMEMBERED, oldest first

    def _note_reset(self, stream_id: int) -> None:
        """The stream is reset here while its client may still send its trailers."""
        self.reset_here[stream_id] = None
        if len(self.reset_here) > RESETS_REMEMBERED:
            del self.reset_here[next(iter(self.reset_here))]

    def _headers_frame(self, flags: int, stream_id: int, payload: memoryview) -> None:
        if stream_id == 0:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "HEADERS on stream 0")
        start, stop = 0, len(payload)
        if flags & f.PADDED:
            if stop < 1 or payload[0] >= stop:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, "padding past the frame")
            stop -= payload[0]
            start = 1
        if flags & f.PRIORITY_FLAG:
            start += 5
            if start > stop:
                raise f.ConnectionError_(f.FRAME_SIZE_ERROR, "HEADERS too short for priority")
        stream = self.streams.get(stream_id)
        # a block that does not open a stream and finds none when it ends is dropped
        self.headers_closed = stream is not None or stream_id <= self.last_stream
        if stream is None:
            if stream_id % 2 == 0:
                raise f.ConnectionError_(f.PROTOCOL_ERROR, f"HEADERS opening stream {stream_id}")
            if stream_id > self.last_stream:
                self.last_stream = stream_id
            elif not flags & f.END_STREAM or stream_id not in self.reset_here:
                # Not trailers of a stream reset here, so a new stream, and its id is not
                # above those opened before (RFC 9113 section 5.1.1).
                raise f.ConnectionError_(
                    f.PROTOCOL_ERROR,
                    f"HEADERS opening stream {stream_id}, not above stream {self.last_stream}",
                )
            else:
                # Trailers on a stream reset here (answered early, or refused) while the
                # client still wrote to it: the block is decoded, for the header table,
                # and dropped.
                del self.reset_here[stream_id]
        elif not flags & f.END_STREAM or stream.remote_closed:
            raise f.ConnectionError_(f.PROTOCOL_ERROR, "HEADERS on an open stream")
        self.headers_for = stream_id
        self.header_end = bool(flags & f.END_STREAM)
        self.header_block.clear()
        self._add_header_fragment(payload[start:stop], flags)

    def _add_header_fragment(self, fragment: memoryview, flags: int) -> None:
        self.header_block += fragment
        if len(self.header_block) > MAX_HEADER_BLOCK:
            raise f.ConnectionError_(f.ENHANCE_YOUR_CALM, "a header block over 64 KiB")
        if flags & f.END_HEADERS:
            stream_id = self.headers_for
            assert stream_id is not None
            self.headers_for = None
            self._header_block_done(
                stream_id, self._decode(bytes(self.header_block)), self.header_end
            )

    def _decode(self, block: bytes) -> Fields:
        """The header block's fields. A block of one-byte indexed fields only (what a
        client sends once its headers are in the table) is read from the table at once:
        such a block leaves the table as it is (RFC 7541 section 6.1)."""
        indexed = self.indexed
        if indexed is not None and indexed[0] == block:
            return indexed[1]
        if block and min(block) > 0x80 and max(block) < 0xFF:
            table = self.decoder.header_table
            try:
                fields = [table.get_by_index(byte & 0x7F) for byte in block]
            except hpack.InvalidTableIndex:
                fields = None  # the decoder says what is wrong
            if fields is not None:
                # RFC 7541 section 4.1's size, as the decoder checks it: a large entry named
                # many times over must not decode past the limit
                if sum(len(name) + len(value) + 32 for name, value in fields) > MAX_HEADER_BLOCK:
                    raise f.ConnectionError_(f.ENHANCE_YOUR_CALM, "a header list over 64 KiB")
                self.indexed = (block, fields)
                return fields
        self.indexed = None  # the decoder may change the table
        return [tuple(field) for field in self.decoder.decode(block, raw=True)]

    def _header_block_done(self, stream_id: int, headers: Fields, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and self.headers_closed:  # the client's trailers: its end
            if malformed(headers, request=False):
                self._reset(stream, f.PROTOCOL_ERROR)
            else:
                self._data_stream_end(stream)
            return
        if self.headers_closed:  # a stream closed here meanwhile (answered or reset)
            return
        refusal = None
        if headers is not self.checked:
            if malformed(headers, request=True):
                refusal = f.PROTOCOL_ERROR
            else:
                self.checked = headers  # the same list again is the same block, well-formed
        if refusal is None and (self.closing or len(self.streams) >= MAX_STREAMS):
            refusal = f.REFUSED_STREAM
        if refusal is not None:
            self.out.append(f.rst_stream(stream_id, refusal))
            if not end_stream:
                self._note_reset(stream_id)
            return
        stream = Stream(stream_id, self.peer_window)
        self.streams[stream_id] = stream
        stream.call = self.new_call(self, stream, headers)
        if stream.call is None:
            stream.discard = True
        if end_stream:
            self._data_stream_end(stream)
