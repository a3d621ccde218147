"""The sending side of an HTTP/2 connection: header blocks and DATA in each stream's
order, DATA within the client's windows and largest frame, the rest in the stream's
outbox until WINDOW_UPDATE or SETTINGS open a window; frames made in one turn of the event
loop leave in one write."""

from __future__ import annotations

import asyncio

from layerserve.service.grpc.http2 import frames as f
from layerserve.service.grpc.http2.stream import Stream

YIELD_FRAMES = 64  # frames made and not written, past which a streaming answer yields


class Outbound:
    """What a connection sends; ``Connection`` reads, and ends streams (``_maybe_forget``)."""

    transport: asyncio.Transport | None

    def _init_outbound(self) -> None:
        self.send_window = f.DEFAULT_WINDOW
        self.peer_window = f.DEFAULT_WINDOW  # the client's SETTINGS_INITIAL_WINDOW_SIZE
        self.peer_frame = f.DEFAULT_FRAME_SIZE
        self.peer_header_list: int | None = None  # its SETTINGS_MAX_HEADER_LIST_SIZE, if sent
        self.blocked: dict[int, Stream] = {}  # streams whose DATA waits for a window
        self.out: list[bytes] = []  # frames to write
        self.handling = False  # reading: the frames go out once the bytes read are handled
        self.corked = False
        self.flush_due = False
        self.closed = False
        self.answered = 0  # streams answered (the rapid-reset count's credit)
        self.writable: asyncio.Future[None] | None = None  # set while the socket is full

    def _maybe_forget(self, stream: Stream) -> None:
        raise NotImplementedError

    def _note_reset(self, stream_id: int) -> None:  # HeaderBlocks'
        raise NotImplementedError

    def send_headers(self, stream: Stream, block: bytes, end: bool = False) -> None:
        """A header block (the response headers, or the trailers with ``end``), after the
        DATA queued before it."""
        if stream.local_closed or self.closed:
            return
        if stream.outbox:
            stream.outbox.append((True, block, end))
            return
        self.out.append(f.header_frames(stream.id, block, self.peer_frame, end))
        if end:
            self._sent_end(stream)
        self._write_out()

    def send_data(self, stream: Stream, payload: bytes, end: bool = False) -> None:
        """DATA, now as far as the windows allow, the rest once they open."""
        if stream.local_closed or self.closed:
            return
        if stream.outbox:
            stream.outbox.append((False, memoryview(payload), end))
            return
        size = len(payload)
        if size <= self.send_window and size <= stream.send_window and size <= self.peer_frame:
            self.send_window -= size
            stream.send_window -= size
            self.out.append(f.frame(f.DATA, f.END_STREAM if end else 0, stream.id, payload))
            if end:
                self._sent_end(stream)
        else:
            stream.outbox.append((False, memoryview(payload), end))
            self._flush(stream)
        self._write_out()

    async def drained(self, stream: Stream) -> None:
        """Until the stream's outbox is sent and the socket takes more (a streaming answer
        waits on its client, which may read slowly or not at all); past
        ``YIELD_FRAMES`` made and not written, what is made is written and the other tasks
        get their turn."""
        while stream.outbox and not stream.local_closed and not self.closed:
            if stream.drained is None:
                stream.drained = asyncio.get_running_loop().create_future()
            await stream.drained
        if len(self.out) >= YIELD_FRAMES:
            self._write_out_now()
            await asyncio.sleep(0)
        while self.writable is not None and not self.closed:
            await self.writable

    def _writing_paused(self) -> None:
        if self.writable is None:
            self.writable = asyncio.get_running_loop().create_future()

    def _writing_resumed(self) -> None:
        if self.writable is not None:
            if not self.writable.done():
                self.writable.set_result(None)
            self.writable = None

    def _flush(self, stream: Stream) -> None:
        outbox = stream.outbox
        while outbox and not stream.local_closed:
            is_headers, item, end = outbox[0]
            if is_headers:
                outbox.popleft()
                self.out.append(f.header_frames(stream.id, item, self.peer_frame, end))
                if end:
                    self._sent_end(stream)
                continue
            room = min(self.send_window, stream.send_window, self.peer_frame)
            if room <= 0 and len(item):
                self.blocked[stream.id] = stream
                return
            chunk = item[:room]
            rest = item[room:]
            self.send_window -= len(chunk)
            stream.send_window -= len(chunk)
            last = not len(rest)
            self.out.append(
                f.frame(f.DATA, f.END_STREAM if (last and end) else 0, stream.id, bytes(chunk))
            )
            if last:
                outbox.popleft()
                if end:
                    self._sent_end(stream)
            else:
                outbox[0] = (False, rest, end)
        self.blocked.pop(stream.id, None)
        if stream.drained is not None and not stream.drained.done():
            stream.drained.set_result(None)
            stream.drained = None
        self._write_out()

    def _flush_blocked(self) -> None:
        for stream in list(self.blocked.values()):
            if self.send_window <= 0:
                return
            self._flush(stream)

    def cork(self) -> None:
        """Hold writes until ``uncork``: frames made together go out in one write."""
        self.corked = True

    def uncork(self) -> None:
        if self.corked:
            self.corked = False
            self._write_out()

    def _write_out(self) -> None:
        """Write what is waiting at the end of this turn of the event loop: the answers of
        calls that end together (a batch's) go out in one write."""
        if self.handling or self.corked or self.flush_due or not self.out:
            return
        self.flush_due = True
        asyncio.get_running_loop().call_soon(self._flush_due)

    def _flush_due(self) -> None:
        self.flush_due = False
        self._write_out_now()

    def _sent_end(self, stream: Stream) -> None:
        stream.local_closed = True
        self.answered += 1
        if not stream.remote_closed:
            # The answer is complete before the request (a refused call): the client need
            # send no more (RFC 9113 section 8.1).
            stream.discard = True
            self.out.append(f.rst_stream(stream.id, f.NO_ERROR))
            self._note_reset(stream.id)
            stream.remote_closed = True
        self._maybe_forget(stream)

    def _write_out_now(self) -> None:
        out, self.out = self.out, []
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(b"".join(out))
