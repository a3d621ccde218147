"""uvicorn's httptools protocol with the limits a public server needs.

uvicorn bounds idle keep-alive connections only. A client that opens a connection and
sends nothing, drips its headers a byte at a time (slowloris), declares a large body and
never sends it, sends a 1 MB header or opens ten thousand sockets would hold the server's
memory and file descriptors for ever. Each connection here is bounded:

- ``header_timeout_seconds``: the request line and headers must arrive within it, counted
  from the connection's first byte (or its opening); else 408, or a silent close when
  nothing was sent.
- ``body_timeout_seconds``: the longest pause between two pieces of a request body; else
  408 and the request is abandoned (the application sees a disconnect).
- ``max_header_bytes`` / ``max_header_count``: larger heads are answered 431; the bytes
  buffered before the head is complete never exceed the limit by more than one read.
- ``max_connections``: a connection opened past it is answered 503 and closed at once.
- Under overload, an inference request for a model whose queue is full is answered 503
  from its head, without starting the application (``ConnectionPolicy.shed``): the
  refusal costs a few microseconds, so that the event loop's time goes to the requests
  that were admitted, and the refused client hears back at once. Its body is discarded
  as it arrives and the connection stays open.
- A client refused twice within ``Retry-After`` has not waited: after that refusal its
  connection is not read for ``REPEATED_REFUSAL_PAUSE_SECONDS``. Its next request waits
  in the socket meanwhile, costing nothing. Without the pause, clients that resend at
  once are answered again on every turn of the event loop, and a single worker spent a
  fifth of its time refusing them.
- While the server drains (SIGTERM), every response carries ``Connection: close`` and its
  connection closes once the response is written, so no client sends a new request on a
  connection the server is about to close.

The direct lane: an inference request that the shedder admits as a ``DirectRequest``
(V2 ``infer``, TF Serving ``:predict``) and that is plain (HTTP/1.1, a ``Content-Length``
body of at most ``WHOLE_BODY_BYTES``, no ``Content-Encoding``, ``Transfer-Encoding``,
``Expect`` or upgrade) is answered by the connection itself: the body is collected here,
``DirectRequest.answer`` gives the status, headers and body, and the response is written in
one call. No ASGI scope, task per middleware, request or response object is made; with 2
workers on 2 cores this took a fifth of the server's CPU per batch-64 request. Every other
request, and any request behind one still running on the connection, goes to the
application as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from layerserve.service.direct_requests import DirectCycle, DirectRequest, Headers, Shedder
from layerserve.service.errors import INTERNAL_ERROR

log = logging.getLogger("layerserve.service.http")

# Request headers that send a request to the application: what they ask for (decoding,
# chunks, 100 Continue, an upgrade) is handled there.
NOT_DIRECT_HEADERS = frozenset({b"content-encoding", b"transfer-encoding", b"expect", b"upgrade"})
ADMISSION_KEY = "layerserve.admission"
# Set in the scope of a request whose body stalled: the connection answered it 408, and the
# application, told of a disconnect, did not answer (its log line says 408 all the same).
BODY_TIMED_OUT_KEY = "layerserve.body_timed_out"
CLIENT_CLOSED_REQUEST = 499  # nginx's code for a client that left; only the access log sees it
# In the scope of a request the application answers: whether its client has left (the
# connection was lost), for the access log: a client gone before its answer is logged 499.
CLIENT_GONE_KEY = "layerserve.client_gone"
# The answer, and the access log's status, of a request the server stopped before answering
# it: its exit timeout passed with the body still arriving or the answer not ready.
CUT_BY_SHUTDOWN = 503
CUT_BY_SHUTDOWN_MESSAGE = (
    "the server stopped before answering this request: its exit timeout "
    "(LAYERSERVE_EXIT_TIMEOUT_SECONDS) passed; retry"
)
SHED = object()  # _shed's answer for a request answered from its head
FIRST_REQUEST_GRACE_SECONDS = 0.5
RETRY_AFTER_SECONDS = 1  # the Retry-After of every 503
RETRY_AFTER = b"%d" % RETRY_AFTER_SECONDS  # as written in a header
REPEATED_REFUSAL_PAUSE_SECONDS = 0.005
# A body whose declared length is at most this is handed to the application whole, read
# without pausing: uvicorn pauses the socket past 64 KiB until the application asks for
# more, and a 200 KB batch-64 request took several pause/resume turns of the loop.
WHOLE_BODY_BYTES = 1 << 20
JSON_TYPE = (b"content-type", b"application/json")


@dataclass
class ConnectionPolicy:
    """The limits of every connection, and the drain flag the server sets on SIGTERM."""

    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    max_connections: int = 4096
    draining: bool = False
    # Admits or refuses an inference request from its head (see Shedder).
    shed: Shedder | None = None


class GuardedHttpProtocol(HttpToolsProtocol):
    """One connection, bounded in time, head size and number (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        policy: ConnectionPolicy,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.policy = policy
        self._awaiting_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._refusal: tuple[int, str] | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_seen = 0.0
        self._whole_body = False  # the current request's body is handed over at its end
        self._shedding = False  # the current request was answered from its head
        # A request's head or body is still to come once the parser returns: the timers
        # are armed only then, as most requests arrive whole in one read.
        self._in_head = False
        self._in_body = False
        self._refused = False  # a request answered from its head was read whole
        self._last_refusal = -float("inf")
        self._resume_timer: asyncio.TimerHandle | None = None
        self._paused_until = 0.0
        self._direct: DirectRequest | None = None  # admitted; its body is still arriving
        # A pipelined request refused while the answers before it are still to come:
        # written once they are (RFC 9112 section 9.3.2: answers keep the requests' order).
        self._deferred: tuple[int, str] | None = None
        self._body_chunks: list[bytes] = []  # of a body collected here

    # ---- connections ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.policy.max_connections:
            log.warning("refused a connection: %d open", len(self.connections) - 1)
            self._refuse(
                503,
                f"the server has {self.policy.max_connections} connections open "
                "(LAYERSERVE_MAX_CONNECTIONS); retry later",
            )
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        try:
            self._abandon_direct(CLIENT_CLOSED_REQUEST)
        finally:
            super().connection_lost(exc)

    def _abandon_direct(self, status: int) -> None:
        """A direct request whose body never came whole: it never reached the data plane."""
        if self._direct is not None:
            request, self._direct = self._direct, None
            request.admission.release()  # type: ignore[attr-defined]
            request.abandoned(self.headers, self._peer, self.cycle.started, status)  # type: ignore[union-attr]

    def abandon_at_exit(self) -> None:
        """The server stops with this connection still open: a direct request whose body
        is still arriving is answered and logged ``CUT_BY_SHUTDOWN``, as the application
        answers the requests it is made to give up, and the connection closed."""
        if self._direct is not None:
            self._abandon_direct(CUT_BY_SHUTDOWN)
            self._refuse(CUT_BY_SHUTDOWN, CUT_BY_SHUTDOWN_MESSAGE)

    @property
    def _peer(self) -> str | None:
        """The client's address, as the connection sees it."""
        return self.client[0] if self.client else None

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._refusal is not None:
            self._refuse_in_order(*self._refusal)
        elif self._awaiting_head and self._head_bytes > self.policy.max_header_bytes:
            self._refuse_in_order(431, self._head_too_large())
        elif self._in_head:
            if self._head_timer is None:
                self._arm_head_timer()
        elif self._in_body and self._body_timer is None and not self.transport.is_closing():
            self._arm_body_timer()
        if self._refused:
            self._refused = False
            self._pause_if_refused_again()

    # ---- parser callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_head = True
        self._in_head = True
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.policy.max_header_count and self._refusal is None:
            self._refusal = (
                431,
                f"the request has more than {self.policy.max_header_count} header fields "
                "(LAYERSERVE_MAX_HEADER_COUNT)",
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        head = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if self._refusal is None and head > self.policy.max_header_bytes:
            self._refusal = (431, self._head_too_large())
        if self._refusal is None and (coding := _transfer_coding(self.headers)) is not None:
            # RFC 9112 section 6.1: a coding the server does not apply is a 501 (the parser
            # would take the body as chunked only: gzip, chunked came in still gzipped)
            self._refusal = (
                501,
                f"Transfer-Encoding {coding!r} is not supported: send the body as it is or "
                "chunked (Content-Encoding: gzip or deflate compresses it)",
            )
        if self._refusal is not None:
            return  # answered by data_received once the parser returns; no task started
        self._awaiting_head = False
        self._head_bytes = 0
        admission = None
        if self.policy.shed is not None:
            admission = self._shed()
            if admission is SHED:
                return
            if isinstance(admission, DirectRequest):
                if self._plain_request():
                    self._start_direct(admission)
                    return
                admission = admission.admission
        super().on_headers_complete()
        self._whole_body = (
            HIGH_WATER_LIMIT < self._declared_length() <= WHOLE_BODY_BYTES
            and not self.parser.should_upgrade()
        )
        self._body_chunks = []
        if admission is not None:
            self.scope[ADMISSION_KEY] = admission  # type: ignore[literal-required]
        cycle = self.cycle
        self.scope[CLIENT_GONE_KEY] = lambda: cycle.disconnected  # type: ignore[literal-required]
        if self.policy.draining:
            self.cycle.keep_alive = False
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        if self._refusal is not None or self._shedding:
            return
        self._body_seen = self.loop.time()
        if self._direct is None and not self._whole_body:
            super().on_body(body)
            return
        # uvicorn's on_body, less the pause past 64 KiB and the wake-up per chunk: the
        # body is handed over once, by on_message_complete
        if not self.cycle.response_complete:
            self._body_chunks.append(body)

    # ---- the direct lane ---------------------------------------------------------------
    def _plain_request(self) -> bool:
        """Whether the request can take the direct lane (module docstring)."""
        if self.parser.get_http_version() != "1.1" or self.parser.should_upgrade():
            return False
        if any(name in NOT_DIRECT_HEADERS for name, _ in self.headers):
            return False
        return 0 < self._declared_length() <= WHOLE_BODY_BYTES

    def _start_direct(self, request: DirectRequest) -> None:
        self._direct = request
        self._body_chunks = []
        self._whole_body = False
        # as uvicorn decides it: HTTP/1.1 keeps the connection unless told to close it
        keep_alive = self.parser.should_keep_alive() and not self.policy.draining
        self.cycle = DirectCycle(keep_alive)  # type: ignore[assignment]
        self._in_body = True

    def _run_direct(self, request: DirectRequest, body: bytes) -> None:
        cycle = self.cycle
        headers = self.headers  # the parser makes a new list for a pipelined request
        task = self.loop.create_task(self._answer_direct(request, body, headers, self._peer, cycle))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)  # a graceful shutdown waits for it

    async def _answer_direct(
        self,
        request: DirectRequest,
        body: bytes,
        headers: Headers,
        peer: str | None,
        cycle: DirectCycle,
    ) -> None:
        try:
            status, response_headers, content = await request.answer(body, headers, peer, cycle)
        except Exception:  # noqa: BLE001 - answer() raises nothing; no client is left waiting
            log.exception("the direct lane failed to answer a request")
            status, response_headers = 500, [JSON_TYPE]
            content = orjson.dumps({"error": INTERNAL_ERROR})
        except asyncio.CancelledError:  # past the exit timeout (logged by answer())
            if not cycle.disconnected:
                self._refuse(CUT_BY_SHUTDOWN, CUT_BY_SHUTDOWN_MESSAGE)
            raise
        finally:
            request.admission.release()  # type: ignore[attr-defined]
        if self.flow.write_paused and not cycle.disconnected:
            # as uvicorn's send(): a client that does not read holds its next requests
            await self.flow.drain()
        cycle.response_started = cycle.response_complete = True
        if cycle.disconnected or self.transport.is_closing():
            return
        # A drain (``shutdown``) clears keep_alive of the connection's newest request
        # only: one pipelined behind this one is answered, with the close, after it.
        self._write(status, content, response_headers, close=not cycle.keep_alive)
        self.on_response_complete()

    def _declared_length(self) -> int:
        for name, value in self.headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._refusal is not None:
            return
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._awaiting_head = True
        if self._shedding:  # answered already; its body is gone
            self._shedding = False
            self._refused = True
            self._arm_keep_alive()
            return
        chunks, self._body_chunks = self._body_chunks, []
        if self._direct is not None:
            request, self._direct = self._direct, None
            self._run_direct(request, _joined(chunks))
            return
        if self._whole_body and not self.cycle.response_complete:
            # handed over as bytes, which uvicorn's receive() passes on without a copy
            self.cycle.body = _joined(chunks)
        super().on_message_complete()

    def shutdown(self) -> None:
        """Called when the server stops accepting. An idle connection, one that has not
        sent its first request yet (most likely sending it now: it was opened during the
        drain) or a keep-alive one between two requests, gets a moment for its next request
        to arrive, which is answered with ``Connection: close``: closed at once, as uvicorn
        closes it, a request its client had just sent would be lost unanswered. A
        connection with a request under way is closed once that is answered."""
        self.policy.draining = True
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self.transport.is_closing():
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(
                min(FIRST_REQUEST_GRACE_SECONDS, self.policy.header_timeout_seconds),
                self._head_timed_out,
            )
            return
        super().shutdown()

    def _shed(self) -> object | None:
        """Ask the shedder about this request (never behind a pipelined request still
        running, whose answer must come first): ``SHED`` when it was answered here, an
        admission for the application, or None."""
        if self.cycle is not None and not self.cycle.response_complete:
            return None
        if self.parser.get_method() != b"POST":
            return None
        assert self.policy.shed is not None
        answer = self.policy.shed(self.url, self.headers, self._peer)
        if not isinstance(answer, tuple):
            return answer
        status, body, headers = answer
        self._shedding = True
        self._write(status, body, headers, close=self.policy.draining)
        self._in_body = True  # discarded as it comes, but not waited for: timed
        return SHED

    # ---- timers -----------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(
            self.policy.header_timeout_seconds, self._head_timed_out
        )

    def _arm_body_timer(self) -> None:
        self._body_seen = self.loop.time()
        self._body_timer = self.loop.call_later(
            self.policy.body_timeout_seconds, self._body_timed_out
        )

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes == 0:  # an idle connection that never sent a byte
            self.transport.close()
            return
        self._refuse_in_order(
            408,
            f"the request headers did not arrive within {self.policy.header_timeout_seconds:g} s "
            "(LAYERSERVE_HEADER_TIMEOUT_SECONDS)",
        )

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            # The server holds the body unread (a pipelined request waits for the answers
            # before it): that is no stall of the client's; its time starts once read again.
            self._body_seen = self.loop.time()
        idle = self.loop.time() - self._body_seen
        if idle < self.policy.body_timeout_seconds:
            self._body_timer = self.loop.call_later(
                self.policy.body_timeout_seconds - idle, self._body_timed_out
            )
            return
        cycle = self.cycle
        answered = cycle is None or cycle.response_started
        if not answered and self._direct is not None:
            self._abandon_direct(408)
        elif not answered:  # the application's request: its log line reads the flag
            self.scope[BODY_TIMED_OUT_KEY] = True  # type: ignore[literal-required]
        if cycle is not None:  # the application's receive() now reports a disconnect
            cycle.disconnected = True
            cycle.message_event.set()
        message = (
            f"the request body stalled for {self.policy.body_timeout_seconds:g} s "
            "(LAYERSERVE_BODY_TIMEOUT_SECONDS)"
        )
        if answered:
            self.transport.close()
        else:
            self._refuse(408, message)

    def _arm_keep_alive(self) -> None:
        """What uvicorn does once it has written a response, for one answered here: an
        idle connection closes after ``keep_alive_seconds`` (the next byte disarms it)."""
        if not self.transport.is_closing() and self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def _pause_if_refused_again(self) -> None:
        now = self.loop.time()
        again = now - self._last_refusal < RETRY_AFTER_SECONDS
        self._last_refusal = now
        if again and not self.transport.is_closing() and not self.flow.read_paused:
            self.flow.pause_reading()
            self._paused_until = time.monotonic() + REPEATED_REFUSAL_PAUSE_SECONDS
            self._resume_timer = self.loop.call_later(
                REPEATED_REFUSAL_PAUSE_SECONDS, self._resume_after_pause
            )

    def _resume_after_pause(self) -> None:
        # uvloop's timers count from the start of the loop's turn, in milliseconds: one can
        # fire before the pause has passed, and then waits out the rest.
        remaining = self._paused_until - time.monotonic()
        if remaining > 0:
            self._resume_timer = self.loop.call_later(remaining, self._resume_after_pause)
            return
        self._resume_timer = None
        if not self.transport.is_closing():
            self.flow.resume_reading()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._resume_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._resume_timer = None

    # ---- answering outside the application ----------------------------------------------
    def _head_too_large(self) -> str:
        return (
            f"the request line and headers exceed {self.policy.max_header_bytes} bytes "
            "(LAYERSERVE_MAX_HEADER_BYTES)"
        )

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser cannot read as HTTP/1.1 (a bad request line,
        header or chunk size; two Content-Lengths), written as the service's other errors
        are: JSON, then the connection closed."""
        reason = msg.rstrip(".")
        self._refuse_in_order(400, f"{reason}: it is not well-formed HTTP/1.1")

    def _refuse_in_order(self, status: int, message: str) -> None:
        """``_refuse`` a request refused from its head, after the answers to the requests
        pipelined before it: meanwhile nothing more is read (``on_response_complete``)."""
        if self._awaiting_head and self._answers_due():
            self._cancel_timers()
            self._deferred = (status, message)
            self.flow.pause_reading()
            return
        self._refuse(status, message)

    def _answers_due(self) -> bool:
        """Whether a request before the one being read is still to be answered."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts the next pipelined request, if any
        if self._deferred is None or self.transport.is_closing():
            return
        if self._answers_due():
            self.flow.pause_reading()  # (uvicorn resumed it)
            return
        status, message = self._deferred
        self._deferred = None
        self._refuse(status, message)

    def _refuse(self, status: int, message: str) -> None:
        """A JSON error written straight to the socket, then the connection closed."""
        self._cancel_timers()
        if self.transport.is_closing():
            return
        headers = [JSON_TYPE, (b"retry-after", RETRY_AFTER)] if status == 503 else [JSON_TYPE]
        self._write(status, orjson.dumps({"error": message}), headers, close=True)

    def _write(self, status: int, body: bytes, headers: Headers, close: bool) -> None:
        """A whole response written in one call (``headers``: all but the server's own,
        Content-Length and Connection), then the connection closed if ``close``."""
        head = [STATUS_LINE[status]]
        for name, value in [*self.server_state.default_headers, *headers]:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-length: %d\r\n" % len(body))
        if close:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        self.transport.writelines((b"".join(head), body))
        if close:
            self.transport.close()


def _transfer_coding(headers: Headers) -> str | None:
    """The request's Transfer-Encoding when it is other than ``chunked`` alone, else None."""
    values = [value for name, value in headers if name == b"transfer-encoding"]
    if not values:
        return None
    codings = [c.strip().lower() for c in b",".join(values).split(b",")]
    return None if codings == [b"chunked"] else b", ".join(codings).decode("latin-1")


def _joined(chunks: list[bytes]) -> bytes:
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
