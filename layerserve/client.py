"""A small HTTP client of a running layerserve server, for the command line: model upload,
model metadata and configuration. It needs httpx only (never FastAPI or onnxruntime)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from layerserve.errors import LayerserveError

DEFAULT_URL = "http://127.0.0.1:8080"


class ServerUnreachable(LayerserveError):
    """No connection to the server, or no answer in time."""


class ServerRefused(LayerserveError):
    """The server answered with an error status; the message is the server's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the server answered {status}: {message}")
        self.status = status
        self.server_message = message


class InvalidConfig(LayerserveError, ValueError):
    """A model config file that is not a JSON object."""


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def model_path(name: str, version: str | None = None) -> str:
    """``NAME`` or ``NAME/versions/V``, quoted for a URL path."""
    path = quote(name, safe="")
    return f"{path}/versions/{quote(version, safe='')}" if version else path


def error_message(response: httpx.Response) -> str:
    """The server's ``{"error"}`` message (with its ``problems``), else the body's start."""
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return "; ".join([document["error"], *map(str, document.get("problems") or [])])
    return response.text[:500] or response.reason_phrase


UPLOAD_ATTEMPTS = 3


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; ``ServerUnreachable`` or ``ServerRefused`` (status >= 400) otherwise."""
    try:
        response = httpx.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise ServerUnreachable(
            f"no answer from {url} in time ({type(exc).__name__}); is the server busy?"
        ) from exc
    except httpx.TransportError as exc:
        raise ServerUnreachable(
            f"cannot reach the server at {url}: {exc or type(exc).__name__}. "
            "Is `layerserve serve` running there?"
        ) from exc
    if response.status_code >= 400:
        raise ServerRefused(response.status_code, error_message(response))
    return response


def model_metadata(
    url: str, name: str, version: str | None = None, token: str | None = None
) -> dict[str, Any]:
    """V2 model metadata: ``{"name", "versions", "inputs", "outputs"}``."""
    address = f"{url.rstrip('/')}/v2/models/{model_path(name, version)}"
    return request("GET", address, headers=bearer(token), timeout=30.0).json()


def model_config(
    url: str, name: str, version: str | None = None, token: str | None = None
) -> dict[str, Any]:
    """V2 model configuration (Triton's form): ``max_batch_size`` (0: no limit on the
    rows of a request), ``input``, ``output``, ..."""
    address = f"{url.rstrip('/')}/v2/models/{model_path(name, version)}/config"
    return request("GET", address, headers=bearer(token), timeout=30.0).json()


def read_config(path: Path) -> str:
    """The text of a model config file, checked to be a JSON object."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidConfig(f"--config {path} is not UTF-8 text: {exc}") from exc
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidConfig(f"--config {path} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidConfig(
            f"--config {path} must hold a JSON object, received {type(parsed).__name__}"
        )
    return text


class _CountingReader:
    """A binary file that reports each read, so a progress bar follows httpx's stream."""

    def __init__(self, file: BinaryIO, on_read: Callable[[int], None]) -> None:
        self.file, self.on_read = file, on_read

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.on_read(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def fileno(self) -> int:
        return self.file.fileno()


def upload(
    url: str,
    name: str,
    model_file: Path,
    config_text: str | None = None,
    token: str | None = None,
    timeout: float = 600.0,
    on_read: Callable[[int], None] | None = None,
    idempotency_key: str | None = None,
    attempts: int = UPLOAD_ATTEMPTS,
) -> dict[str, Any]:
    """POST ``model_file`` (streamed, never read whole) as the next version of ``name``;
    the new version's metadata. The upload carries an ``Idempotency-Key`` (a new one,
    unless given) and is sent again with the same key when the connection fails before
    the answer arrives, so a lost 201 never makes a second version."""
    key = idempotency_key or uuid.uuid4().hex
    data = {"config": config_text} if config_text is not None else {}
    headers = {**bearer(token), "Idempotency-Key": key}
    for attempt in range(1, attempts + 1):
        with model_file.open("rb") as file:
            stream = _CountingReader(file, on_read) if on_read is not None else file
            try:
                response = request(
                    "POST",
                    f"{url.rstrip('/')}/v1/models/{model_path(name)}",
                    files={"file": (model_file.name, stream, "application/octet-stream")},
                    data=data,
                    headers=headers,
                    timeout=httpx.Timeout(timeout, connect=10.0),
                )
            except ServerUnreachable as exc:
                # a timeout is not retried: the server may still be converting the file
                if attempt == attempts or isinstance(exc.__cause__, httpx.TimeoutException):
                    raise
                continue
        return response.json()
    raise AssertionError("unreachable")
