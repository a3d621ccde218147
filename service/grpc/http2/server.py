"""The gRPC server on this package's HTTP/2 connections, with grpc.aio.Server's way of
taking handlers (``add_generic_rpc_handlers``, ``add_registered_method_handlers``), so
that grpc's generated ``add_*_to_server`` functions, the health service and reflection
register on it unchanged."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from layerserve.service.grpc.http2 import frames as f
from layerserve.service.grpc.http2.connection import Connection
from layerserve.service.grpc.http2.rpc import (
    Call,
    Metadata,
    metadata_of,
    parse_timeout,
    status_block,
)
from layerserve.service.grpc.http2.stream import Stream

log = logging.getLogger("layerserve.service")

UNSUPPORTED_MEDIA = f.header_block(((b":status", b"415"), (b"content-type", b"text/plain")))


class _HandlerCallDetails(grpc.HandlerCallDetails):
    def __init__(self, method: str, invocation_metadata: Any) -> None:
        self.method = method
        self.invocation_metadata = invocation_metadata


@dataclass(frozen=True, slots=True)
class _CallPlan:
    """What one request's header fields make of its call, kept for the next call whose
    fields are the same list (so the same block, decoded once)."""

    headers: list[tuple[bytes, bytes]]
    metadata: Metadata
    handler: grpc.RpcMethodHandler
    timeout: float | None  # grpc-timeout in seconds
    encoding: str


class _Refused(asyncio.Protocol):
    """A connection past the limit, closed before the server's preface: to a client it
    never opened, and gRPC clients back off before trying again (one that opened and was
    then sent away would come straight back, over and over)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class Http2Server:
    """Serves the registered gRPC methods on one address."""

    def __init__(
        self,
        max_message: int,
        reuse_port: bool,
        max_connections: int = 2048,
        stall_seconds: float = 30.0,
        idle_seconds: float | None = None,
    ) -> None:
        self.max_message = max_message
        self.reuse_port = reuse_port
        self.max_connections = max_connections
        # A request that stops arriving for this long is answered and its stream closed
        # (LAYERSERVE_BODY_TIMEOUT_SECONDS, as an HTTP body's pause): see _sweep.
        self.stall_seconds = stall_seconds
        # A connection with no stream open for this long is sent away (gRPC's
        # MAX_CONNECTION_IDLE; LAYERSERVE_GRPC_MAX_CONNECTION_IDLE_SECONDS), so that
        # clients that keep idle connections cannot hold LAYERSERVE_MAX_CONNECTIONS.
        self.idle_seconds = idle_seconds
        self._sweeper: asyncio.TimerHandle | None = None
        self.methods: dict[bytes, grpc.RpcMethodHandler] = {}
        self.generic: list[grpc.GenericRpcHandler] = []
        self.connections: set[Connection] = set()
        self.calls: set[Call] = set()
        self._server: asyncio.base_events.Server | None = None
        self._idle: asyncio.Event | None = None

    # ---- registration, as grpc.aio.Server's ----------------------------------------------
    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        for name, handler in handlers.items():
            self.methods[f"/{service}/{name}".encode()] = handler

    def _handler(self, path: bytes, metadata: Any) -> grpc.RpcMethodHandler | None:
        handler = self.methods.get(path)
        if handler is not None:
            return handler
        details = _HandlerCallDetails(path.decode("latin-1"), metadata)
        for generic in self.generic:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None

    # ---- listening ---------------------------------------------------------------------
    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``; raises OSError when the address cannot be bound."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._connection,
            host.strip("[]"),
            port,
            reuse_port=self.reuse_port or None,
            backlog=1024,
        )
        for sock in self._server.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)

    def _sweep_interval(self) -> float:
        shortest = min(self.stall_seconds, self.idle_seconds or self.stall_seconds)
        return min(5.0, max(0.1, shortest / 4))

    def _sweep(self) -> None:
        """Answer the calls whose request stalled: a unary call's request not whole, or a
        message of a streaming call begun and not finished, with nothing received for
        ``stall_seconds`` while the client had window to send (a client this server holds
        back is not stalled). Each is answered DEADLINE_EXCEEDED, and its stream reset with
        NO_ERROR once answered (``Outbound._sent_end``), so that a client that stops
        mid-request holds no stream, and no connection, for ever; a streaming call waiting
        between messages is not stalled."""
        now = time.monotonic()
        for call in list(self.calls):
            stream = call.stream
            inside = call.requests is None or bool(stream.prefix) or stream.message is not None
            if (
                call.finished
                or stream.remote_closed
                or not inside
                or stream.recv_window <= 0
                or now - stream.seen < self.stall_seconds
            ):
                continue
            log.info(
                "gRPC call from %s: its request stalled for %g s",
                call.connection.peer,
                self.stall_seconds,
            )
            call.refuse(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the request stalled: nothing of it arrived for {self.stall_seconds:g} s "
                "(LAYERSERVE_BODY_TIMEOUT_SECONDS)",
            )
        if self.idle_seconds is not None:
            self._send_idle_away(now, self.idle_seconds)
        self._sweeper = asyncio.get_running_loop().call_later(self._sweep_interval(), self._sweep)

    def _send_idle_away(self, now: float, idle: float) -> None:
        """Connections with no stream open for ``idle`` seconds are sent away, in the two
        steps of ``Connection.send_away_idle``; gRPC clients open a new connection for
        their next call."""
        for connection in list(self.connections):
            if connection.streams or now - connection.idle_since < idle:
                continue
            log.debug("gRPC connection from %s idle: sent away", connection.peer)
            connection.send_away_idle(
                f"no call for {idle:g} s (LAYERSERVE_GRPC_MAX_CONNECTION_IDLE_SECONDS)"
            )

    def _connection(self) -> Connection | _Refused:
        if len(self.connections) >= self.max_connections:
            log.warning(
                "refused a gRPC connection: %d open (LAYERSERVE_MAX_CONNECTIONS)",
                len(self.connections),
            )
            return _Refused()
        connection = Connection(self._new_call, self.max_message, self.connections.discard)
        self.connections.add(connection)
        return connection

    def _new_call(
        self, connection: Connection, stream: Stream, headers: list[tuple[bytes, bytes]]
    ) -> Call | None:
        plan = connection.call_plan
        if not isinstance(plan, _CallPlan) or plan.headers is not headers:
            plan = self._plan(connection, stream, headers)
            if plan is None:
                return None
            connection.call_plan = plan
        deadline = None if plan.timeout is None else time.monotonic() + plan.timeout
        call = Call(
            connection,
            stream,
            plan.handler,
            plan.metadata,
            deadline,
            self.max_message,
            self.calls.discard,
            plan.encoding,
        )
        self.calls.add(call)
        return call

    def _plan(
        self, connection: Connection, stream: Stream, headers: list[tuple[bytes, bytes]]
    ) -> _CallPlan | None:
        """What a request's header fields make of its call; None, and the stream answered,
        when they make none."""
        fields = dict(headers)
        path = fields.get(b":path", b"")
        content_type = fields.get(b"content-type", b"")
        if fields.get(b":method") != b"POST" or not content_type.startswith(b"application/grpc"):
            connection.send_headers(stream, UNSUPPORTED_MEDIA, end=True)
            return None
        try:
            metadata = metadata_of(headers)
        except ValueError as exc:  # binascii.Error: a -bin value that is not base64
            block = status_block(
                grpc.StatusCode.INVALID_ARGUMENT, str(exc), (), True, connection.peer_header_list
            )
            connection.send_headers(stream, block, end=True)
            return None
        handler = self._handler(path, metadata)
        if handler is None:
            block = status_block(grpc.StatusCode.UNIMPLEMENTED, "Method not found!", (), True)
            connection.send_headers(stream, block, end=True)
            return None
        timeout = fields.get(b"grpc-timeout")
        seconds = None if timeout is None else parse_timeout(timeout)
        encoding = fields.get(b"grpc-encoding", b"identity").decode("latin-1")
        return _CallPlan(headers, metadata, handler, seconds, encoding)

    # ---- stopping ----------------------------------------------------------------------
    async def stop(self, grace: float | None) -> None:
        """No new calls; those running finish within ``grace`` seconds (None: however long
        they take), then the rest are answered UNAVAILABLE."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.go_away()
        deadline = None if grace is None else time.monotonic() + grace
        while self.calls and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.02)
        for call in list(self.calls):
            call.cut_off()
        for _ in range(50):  # the cut calls' answers are written
            if not self.calls:
                break
            await asyncio.sleep(0.01)
        if self._sweeper is not None:  # stalled calls are answered while others drain
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
