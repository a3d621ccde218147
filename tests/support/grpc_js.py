"""grpc-js, the gRPC of Node.js (its HTTP/2 is Node's own, nghttp2), as a test client:
``tests/clients/grpc-js/client.js`` sends the calls a test lists, as the bytes of the
protobuf messages the test made, and returns the bytes that came back, which
:func:`answers` reads with layerserve's generated modules.

The client's packages are installed from its ``package-lock.json`` on first use
(``npm ci``, once for all pytest workers); without Node.js and npm the tests skip,
naming them."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

CLIENT = Path(__file__).parents[1] / "clients" / "grpc-js"
INSTALLED = CLIENT / "node_modules" / ".layerserve-lock-sha256"


def node() -> str:
    """The ``node`` executable, the client's packages installed for it."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs Node.js and npm (node, npm on PATH) for the grpc-js client")
    lock = hashlib.sha256((CLIENT / "package-lock.json").read_bytes()).hexdigest()
    with open(CLIENT / ".install-lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one `npm ci` for all pytest workers
        if not INSTALLED.exists() or INSTALLED.read_text() != lock:
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=CLIENT,
                check=True,
                timeout=300,
            )
            INSTALLED.write_text(lock)
    return node


def call(method: MethodDescriptor, request: Message | list[Message], **options: Any) -> dict:
    """A call of ``method`` for the client: ``request`` (a list for a client stream) and
    the options ``client.js`` reads (``metadata``, ``deadline_ms``, ``compression``,
    ``cancel_after_ms``, ``end_after_ms``)."""
    kind = {
        (False, False): "unary",
        (True, False): "client_stream",
        (False, True): "server_stream",
        (True, True): "bidi_stream",
    }[(method.client_streaming, method.server_streaming)]
    path = f"/{method.containing_service.full_name}/{method.name}"
    encoded: dict[str, Any] = {"path": path, "kind": kind, **options}
    if method.client_streaming:
        assert isinstance(request, list)
        encoded["requests"] = [_b64(r.SerializeToString()) for r in request]
    else:
        assert isinstance(request, Message)
        encoded["request"] = _b64(request.SerializeToString())
    return encoded


def answers(method: MethodDescriptor, result: dict[str, Any]) -> list[Message]:
    """The messages a call received, as ``method``'s response type."""
    response_type = message_factory.GetMessageClass(method.output_type)
    return [response_type.FromString(base64.b64decode(r)) for r in result["responses"]]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def run_steps(
    target: str,
    steps: list[list[dict[str, Any]]],
    channel: dict[str, Any] | None = None,
    timeout: float = 120,
) -> list[list[dict[str, Any]]]:
    """Each step's calls sent at once, a step after the one before has ended; how each
    call ended as the client saw it: ``code``, ``details``, ``responses`` (read them
    with :func:`answers`) and ``trailers``."""
    plan = {
        "target": target,
        "channel": channel or {},
        "steps": steps,
    }
    done = subprocess.run(
        [node(), str(CLIENT / "client.js")],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["results"]
