"""Bodies up to ``WHOLE_BODY_BYTES`` reach the application in one piece, read without
pausing the socket (uvicorn pauses past 64 KiB until the application asks for more); larger
ones still stream in pieces, under flow control. Either way the bytes are the ones sent, on a
real uvicorn, whether they arrive at once or trickle in."""

from __future__ import annotations

import hashlib
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from live_server import running_server
from starlette.requests import Request
from starlette.responses import JSONResponse

from layerserve.service.http_protocol import WHOLE_BODY_BYTES
from layerserve.service.settings import Settings


def add_receive_route(app: Any) -> None:
    """POST /test/receive: how many request messages the body came in, and its digest."""

    async def receive(request: Request) -> JSONResponse:
        messages, digest, size = 0, hashlib.sha256(), 0
        while True:
            message = await request.receive()
            messages += 1
            digest.update(message.get("body", b""))
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        return JSONResponse({"messages": messages, "sha256": digest.hexdigest(), "size": size})

    app.add_route("/test/receive", receive, methods=["POST"])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(model_repository=tmp_path_factory.mktemp("empty"))
    with running_server(settings, customize=add_receive_route) as url:
        yield url


@pytest.mark.parametrize(
    ("size", "whole"),
    [(200_000, True), (WHOLE_BODY_BYTES, True), (WHOLE_BODY_BYTES + 1, False), (3 << 20, False)],
)
def test_a_body_arrives_whole_up_to_the_bound(server, size, whole):
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    answer = httpx.post(server + "/test/receive", content=body, timeout=30).json()
    assert answer["size"] == size
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()
    assert (answer["messages"] == 1) is whole, answer


def test_a_body_that_trickles_in_arrives_whole_and_intact(server):
    body = bytes(range(256)) * 1000  # 256 KB in 16 pieces, 20 ms apart
    parts = urlsplit(server)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            b"POST /test/receive HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for start in range(0, len(body), 16_000):
            time.sleep(0.02)
            sock.sendall(body[start : start + 16_000])
        reply = b""
        while b"}" not in reply:
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
    head, _, document = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), reply
    answer = orjson.loads(document)
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()
    assert answer["messages"] == 1, answer
