"""Running the service on uvicorn, with a graceful SIGTERM drain (``launch.serve``
starts it: one process, or worker processes under a supervisor).

On SIGTERM (or SIGINT) the server reports not ready at once and
keeps serving for ``drain_seconds`` (load balancers need a moment to stop sending), with
``Connection: close`` on every response so that clients leave their keep-alive
connections; then it stops accepting connections, lets in-flight requests finish within
``exit_timeout_seconds``, finishes the queued work in the lifespan shutdown, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI

from layerserve import __version__
from layerserve.service.api.app import create_app
from layerserve.service.api.fast_lane import FastLane
from layerserve.service.api.shedding import ReleaseAdmissions, shedder
from layerserve.service.cluster import Cluster
from layerserve.service.http_protocol import ConnectionPolicy, GuardedHttpProtocol
from layerserve.service.launch import LISTEN_BACKLOG, bind
from layerserve.service.logs import configure_logging
from layerserve.service.settings import Settings

log = logging.getLogger("layerserve.service")
SERVER_HEADER = f"layerserve/{__version__}"


class DrainingServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, settings: Settings, policy: ConnectionPolicy, app: FastAPI
    ) -> None:
        super().__init__(config)
        self.app = app  # the FastAPI application inside the server's ASGI wrapper
        self.settings = settings
        self.policy = policy
        self._draining = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        """First signal: not ready, then stop after the drain. A second SIGINT forces the
        exit. Unlike plain uvicorn, the signal is not raised again after shutdown: a
        drained server exits 0."""
        if self._draining:
            if sig == signal.SIGINT and self.should_exit:
                self.force_exit = True
            self.should_exit = True
            return
        self._draining = True
        self.policy.draining = True
        self.app.state.dataplane.draining = True
        log.info("signal %s: not ready now, draining for %.1f s", sig, self.settings.drain_seconds)
        if self.settings.drain_seconds <= 0:
            self.should_exit = True
            return
        timer = threading.Timer(self.settings.drain_seconds, self._stop_accepting)
        timer.daemon = True
        timer.start()

    def _stop_accepting(self) -> None:
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, after adopting the connections still in the listen backlog:
        closing the listener would reset them, though their clients may have sent a
        request already. Each is served like any other during the drain (its first
        request answered with ``Connection: close``)."""
        pending = []
        for listener in sockets or []:
            with contextlib.suppress(OSError):
                while True:
                    connection, _ = listener.accept()
                    pending.append(connection)
        for server in self.servers:
            server.close()
        if getattr(self.app.state, "grpc", None) is not None:
            self.app.state.grpc.begin_stop()  # gRPC stops accepting with HTTP
        loop = asyncio.get_running_loop()
        for connection in pending:
            connection.setblocking(False)
            await loop.connect_accepted_socket(self._new_protocol, connection)
        await super().shutdown(sockets)
        for open_connection in list(self.server_state.connections):  # past the exit timeout
            if isinstance(open_connection, GuardedHttpProtocol):
                try:
                    open_connection.abandon_at_exit()
                except Exception:  # noqa: BLE001 - the others are still answered
                    log.exception("a connection could not be answered at exit")

    def _new_protocol(self) -> asyncio.Protocol:
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )


def connection_policy(settings: Settings) -> ConnectionPolicy:
    return ConnectionPolicy(
        header_timeout_seconds=settings.header_timeout_seconds,
        body_timeout_seconds=settings.body_timeout_seconds,
        max_header_bytes=settings.max_header_bytes,
        max_header_count=settings.max_header_count,
        max_connections=settings.max_connections,
    )


def build_server(settings: Settings, cluster: Cluster | None = None) -> DrainingServer:
    """A server for ``settings``; ``cluster`` when it is one worker of several."""
    app = create_app(settings, cluster)
    policy = connection_policy(settings)
    policy.shed = shedder(app)
    config = uvicorn.Config(
        ReleaseAdmissions(FastLane(app)),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # logging is set up once, by configure_logging
        access_log=False,  # one line per request comes from the request-log middleware
        timeout_graceful_shutdown=int(settings.exit_timeout_seconds) or None,
        timeout_keep_alive=settings.keep_alive_seconds,  # type: ignore[arg-type]
        backlog=LISTEN_BACKLOG,
        proxy_headers=False,  # forwarding headers: one rule, in the access middleware
        server_header=False,
        headers=[("server", SERVER_HEADER)],
        loop="auto",
        http=functools.partial(GuardedHttpProtocol, policy=policy),  # type: ignore[arg-type]
        lifespan="on",
    )
    return DrainingServer(config, settings, policy, app)


def serve_worker(settings: Settings, cluster: Cluster) -> None:
    """One worker process: it loads the models, then listens on its own socket for the
    shared port, so that the kernel sends connections only to workers that serve."""
    configure_logging(settings.log_level, settings.log_format)
    server = build_server(settings, cluster)
    sockets: list[socket.socket] = []

    def listen() -> None:
        sockets.append(bind(settings.host, settings.port, reuse_port=True))

    server.app.state.on_started.append(listen)
    # uvicorn listens on the sockets of this list once the lifespan startup is done.
    server.run(sockets=sockets)
