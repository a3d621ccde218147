"""V2 error tests' shared pieces: the repository their server serves, request builders,
and the table-row type of a client mistake with the check every row gets."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from grpc_test_models import ONNX, write_identity
from live_server import running_server, write_model

from layerserve import examples
from layerserve.service.settings import Settings

LIMIT = 256 * 1024  # the error servers' max_request_bytes


@contextlib.contextmanager
def error_server(root: Path) -> Iterator[str]:
    """A server on the models the client-mistake tables send to; yields its URL."""
    write_error_repository(root)
    with running_server(Settings(model_repository=root, max_request_bytes=LIMIT)) as url:
        yield url


def write_error_repository(root: Path) -> None:
    """The models the client-mistake tables send to."""
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 8})
    write_model(root, "hadamard", examples.hadamard_model())
    for datatype in ONNX:
        write_identity(root, f"identity_{datatype.lower()}", datatype)
    write_identity(root, "fixed", "FP32", {"max_batch_size": 0}, shape=(2, 3))


def mlp_input(rows: int = 1, **changes) -> dict:
    entry = {
        "name": "hidden_1_input",
        "shape": [rows, 784],
        "datatype": "FP32",
        "data": [0.25] * (rows * 784),
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def x_input(datatype: str, data, shape=(1, 3), **changes) -> dict:
    return {"name": "x", "shape": list(shape), "datatype": datatype, "data": data, **changes}


def binary(document: dict, tail: bytes, header: int | str | None = None) -> dict:
    head = json.dumps(document).encode()
    length = len(head) if header is None else header
    return {"content": head + tail, "headers": {"Inference-Header-Content-Length": str(length)}}


def chunked(size: int):
    def stream():
        sent = 0
        while sent < size:
            yield b" " * 16384
            sent += 16384

    return stream()


def two_rows() -> list[dict]:
    return [
        {"name": "left", "shape": [2, 8], "datatype": "FP32", "data": [1.0] * 16},
        {"name": "right", "shape": [1, 8], "datatype": "FP32", "data": [1.0] * 8},
    ]


@dataclass
class Case:
    path: str
    status: int
    says: tuple[str, ...]
    json: object = None
    content: object = None
    headers: dict | list = field(default_factory=dict)
    method: str = "POST"


def case(path: str, status: int, says, body=None, **kwargs) -> Case:
    if body is not None:
        kwargs = {**kwargs, "json": body}
    return Case(path, status, tuple(says) if isinstance(says, list) else (says,), **kwargs)


MLP = "/v2/models/mlp/infer"
BYTES_ID = "/v2/models/identity_bytes/infer"
FP32_BINARY = {"name": "hidden_1_input", "shape": [1, 784], "datatype": "FP32"}


def assert_clear_error(http: httpx.Client, mistake: Case) -> None:
    """The mistake's status and an ``{"error": ...}`` body with every fragment; the
    connection and the server survive it."""
    response = http.request(
        mistake.method,
        mistake.path,
        json=mistake.json,
        content=mistake.content,
        headers=mistake.headers,
    )
    assert response.status_code == mistake.status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    for fragment in mistake.says:
        assert fragment in body["error"], body["error"]
    assert http.get("/v2/health/live").json() == {"live": True}
