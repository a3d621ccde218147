"""A server whose shedder admits ``POST /direct`` for the direct lane, with a stand-in
answer that echoes the body: the connection's own behaviour (``service/http_protocol.py``)
on a real uvicorn, without a model."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from live_server import free_port

from layerserve.service.direct_requests import DirectRequest, Headers
from layerserve.service.http_protocol import ADMISSION_KEY, ConnectionPolicy, GuardedHttpProtocol

BODY_TIMEOUT = 0.5


class Place:
    """An admission: counts its releases."""

    def __init__(self) -> None:
        self.releases = 0

    def release(self) -> None:
        self.releases += 1


class StandIn:
    """The shedder and the application of a test server: POST /direct is admitted for
    the direct lane, whose answer echoes the body (after ``hold`` is set, when given); the
    application answers every request it gets with ``app:<path>``."""

    def __init__(self) -> None:
        self.places: list[Place] = []
        self.answered: list[bytes] = []
        self.abandoned: list[tuple[bytes, int]] = []  # the X-Request-ID and status of each
        self.app_calls: list[tuple[str, object]] = []
        self.hold: asyncio.Event | None = None
        self.answering = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def shed(self, url: bytes, headers: Headers, peer: str | None) -> object:
        if not url.startswith(b"/direct"):
            return None
        place = Place()
        self.places.append(place)
        return DirectRequest(place, self.answer, self.abandon)

    def abandon(self, headers: Headers, peer: str | None, started: float, status: int) -> None:
        assert peer == "127.0.0.1" and started <= time.perf_counter()
        self.abandoned.append((dict(headers).get(b"x-request-id", b"-"), status))

    async def answer(
        self, body: bytes, headers: Headers, peer: str | None, started: float
    ) -> tuple:
        self.loop = asyncio.get_running_loop()
        self.answering.set()
        if self.hold is not None:
            await self.hold.wait()
        self.answered.append(body)
        return 200, [(b"content-type", b"text/plain")], b"direct:" + body

    async def app(self, scope: dict, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.app_calls.append((scope["path"], scope.get(ADMISSION_KEY)))
        if scope.get(ADMISSION_KEY) is not None:
            scope[ADMISSION_KEY].release()
        content = b"app:" + scope["path"].encode() + b":" + body
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(content))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def let_go(self) -> None:
        """Let the held answer finish (from the test's thread)."""
        assert self.loop is not None and self.hold is not None
        self.loop.call_soon_threadsafe(self.hold.set)


@contextlib.contextmanager
def stand_in_server() -> Iterator[tuple[StandIn, ConnectionPolicy, uvicorn.Server, int]]:
    stand_in = StandIn()
    policy = ConnectionPolicy(body_timeout_seconds=BODY_TIMEOUT, shed=stand_in.shed)
    port = free_port()
    config = uvicorn.Config(
        stand_in.app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        interface="asgi3",
        lifespan="off",
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        http=functools.partial(GuardedHttpProtocol, policy=policy),  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    server.config.install_signal_handlers = False  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield stand_in, policy, server, port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def post(path: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: x", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
