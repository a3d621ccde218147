"""HTTP/1.1 over a raw socket, for tests that send what a well-behaved client would not."""

from __future__ import annotations

import socket

Response = tuple[int, dict[str, str], bytes]


def read_response(sock: socket.socket) -> Response:
    """One HTTP response (Content-Length framed): status, lower-case headers, body."""
    return read_responses(sock, 1)[0]


def read_responses(sock: socket.socket, count: int) -> list[Response]:
    """``count`` responses in a row (Content-Length framed), as pipelined requests get
    them: each status, lower-case headers and body."""
    data, responses = b"", []
    while len(responses) < count:
        while b"\r\n\r\n" not in data:
            data += _received(sock, data)
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        while len(data) < length:
            data += _received(sock, data)
        responses.append((int(lines[0].split()[1]), headers, data[:length]))
        data = data[length:]
    return responses


def _received(sock: socket.socket, data: bytes) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError(f"closed before a response: {data!r}")
    return chunk


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
