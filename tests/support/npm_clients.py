"""gRPC clients of other implementations, installed from the npm registry, for the tests:

- grpc-js, the gRPC of Node.js (its HTTP/2 is Node's own, nghttp2):
  ``tests/clients/grpc_js_client.js`` sends the calls a test lists (:func:`run_steps`), as
  the bytes of the protobuf messages the test made, and returns the bytes that came back,
  which :func:`answers` reads with layerserve's generated modules;
- ``buf curl`` (Buf's command-line tool, in Go: Go's HTTP/2, connect-go's gRPC), which
  learns the services from the server's reflection as ``grpcurl`` does, and takes and
  prints messages as proto3 JSON (:func:`buf_curl`).

They are installed from ``tests/clients/package-lock.json`` on first use (``npm ci``,
once for all pytest workers); without Node.js and npm the tests skip, naming them."""

from __future__ import annotations

import base64
import fcntl
import functools
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

CLIENTS = Path(__file__).parents[1] / "clients"
INSTALLED = CLIENTS / "node_modules" / ".layerserve-lock-sha256"
BUF = CLIENTS / "node_modules" / ".bin" / "buf"


@functools.cache  # once a process: a skip raises, and is asked again
def node() -> str:
    """The ``node`` executable, the clients' packages installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs Node.js and npm (node, npm on PATH) for the npm-installed clients")
    lock = hashlib.sha256((CLIENTS / "package-lock.json").read_bytes()).hexdigest()
    with open(CLIENTS / ".install-lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one `npm ci` for all pytest workers
        if not INSTALLED.exists() or INSTALLED.read_text() != lock:
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=CLIENTS,
                check=True,
                timeout=300,
            )
            INSTALLED.write_text(lock)
    return node


def call(method: MethodDescriptor, request: Message | list[Message], **options: Any) -> dict:
    """A call of ``method`` for the client: ``request`` (a list for a client stream) and
    the options ``grpc_js_client.js`` reads (``metadata``, ``deadline_ms``, ``compression``,
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
        [node(), str(CLIENTS / "grpc_js_client.js")],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["results"]


def buf_curl(
    target: str,
    method: str,
    messages: list[dict[str, Any]] | None = None,
    reflection: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """``buf curl`` calling ``method`` ("package.Service/Method") on ``target``, its schema
    from the server's reflection (``reflection``: "grpc-v1" or "grpc-v1alpha" alone; by
    default v1, then v1alpha if v1 is unimplemented): the messages it printed, and the
    error it printed (``code`` and ``message``) or None."""
    data = "".join(json.dumps(m) for m in messages or [{}])
    done = _buf([*_reflection(reflection), "-d", "@-", f"http://{target}/{method}"], data)
    error = None
    if done.returncode:
        assert done.stderr.startswith("{"), done.stderr  # not an answer's error: buf's own
        error = json.loads(done.stderr)
    return _json_documents(done.stdout), error


def buf_services(target: str, reflection: str | None = None) -> list[str]:
    """The services ``buf curl`` finds through the server's reflection."""
    done = _buf([*_reflection(reflection), "--list-services", f"http://{target}"])
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _reflection(protocol: str | None) -> list[str]:
    return [] if protocol is None else ["--reflect-protocol", protocol]


def _buf(arguments: list[str], data: str = "") -> subprocess.CompletedProcess[str]:
    """``buf curl`` over gRPC on HTTP/2 without TLS."""
    node()
    return subprocess.run(
        [str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge", *arguments],
        input=data,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _json_documents(text: str) -> list[dict[str, Any]]:
    """The JSON documents printed one after another."""
    decoder = json.JSONDecoder()
    documents, position = [], 0
    text = text.strip()
    while position < len(text):
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
        while position < len(text) and text[position].isspace():
            position += 1
    return documents
