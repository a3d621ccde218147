"""``layerserve upload`` (``client.upload``) after losing the server's answer: a proxy on
loopback lets the first upload through to a real server, then cuts the connection before
the 201 reaches the client; the client sends the upload again with the same
Idempotency-Key and gets the version the first attempt created, and the server holds one
version, not two."""

from __future__ import annotations

import contextlib
import socket
import threading

import httpx
from live_server import running_server

from layerserve import client, examples
from layerserve.export import to_onnx
from layerserve.service.settings import Settings


class AnswerDroppingProxy:
    """Forwards each connection to ``target``; the first connection's answer is dropped
    (the connection is closed as soon as the server starts answering)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.connections = 0
        self.keys: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            drop = self.connections == 1
            threading.Thread(target=self._relay, args=(downstream, drop), daemon=True).start()

    def _relay(self, downstream: socket.socket, drop: bool) -> None:
        upstream = socket.create_connection(self.target)
        head = b""

        def to_server() -> None:
            nonlocal head
            with contextlib.suppress(OSError):
                while chunk := downstream.recv(65536):
                    if len(head) < 4096:
                        head += chunk
                    upstream.sendall(chunk)

        forward = threading.Thread(target=to_server, daemon=True)
        forward.start()
        answer = upstream.recv(65536)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"idempotency-key:"):
                self.keys.append(line.split(b":", 1)[1].strip().decode())
        if not drop:
            while answer:
                downstream.sendall(answer)
                answer = upstream.recv(65536)
        for connection in (downstream, upstream):  # shutdown also wakes the other thread
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def close(self) -> None:
        self.listener.close()


def test_an_upload_whose_answer_is_lost_is_sent_again_and_makes_one_version(tmp_path):
    model_file = tmp_path / "mlp.onnx"
    to_onnx(examples.mlp(), model_file)
    repository = tmp_path / "repository"
    repository.mkdir()
    with running_server(Settings(model_repository=repository, log_level="warning")) as base:
        host, port = base.removeprefix("http://").split(":")
        proxy = AnswerDroppingProxy((host, int(port)))
        try:
            answer = client.upload(f"http://127.0.0.1:{proxy.address[1]}", "mlp", model_file)
        finally:
            proxy.close()
        assert proxy.connections == 2  # the first attempt lost its answer, the second got it
        assert len(proxy.keys) == 2 and proxy.keys[0] == proxy.keys[1]
        assert answer["version"] == "1"
        versions = httpx.get(base + "/v2/models/mlp").json()["versions"]
    assert versions == ["1"]
    assert sorted(p.name for p in (repository / "mlp").iterdir() if p.name.isdigit()) == ["1"]
