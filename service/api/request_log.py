"""Request ids and one structured log line per HTTP request (a pure ASGI middleware, so it
adds no task or body copy to the inference path).

The id comes from the client's ``X-Request-ID`` header when it is a sane token (at most
128 characters of ``[A-Za-z0-9._~:/+=@-]``), otherwise a new one is made; it is returned in
the ``X-Request-ID`` response header and is available to other code through
``layerserve.service.request_context.current_request_id()``. With ``LAYERSERVE_ACCESS_LOG`` on, the
log line is key=value (its fields become JSON keys with ``LAYERSERVE_LOG_FORMAT=json``):

    request_id=3f2a... method=POST path=/v2/models/mlp/infer status=200 duration_ms=1.84 ...

A request the application gives up on once told of a disconnect, without answering, is
logged with status 499 (nginx's "client closed request") when its client left mid-body, and
408 when its body stalled and the connection answered 408, as the direct lane logs them.
An inference request answered 400 or 413 before it reached the batcher (invalid input,
oversized body) is counted as ``nv_inference_request_failure{reason="OTHER"}`` for the
model version it names, when that version is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import time
import uuid
from typing import Any

from layerserve.service.api.errors import error_response
from layerserve.service.http_protocol import (
    BODY_TIMED_OUT_KEY,
    CLIENT_CLOSED_REQUEST,
    CLIENT_GONE_KEY,
    CUT_BY_SHUTDOWN,
    CUT_BY_SHUTDOWN_MESSAGE,
)
from layerserve.service.request_context import RequestContext, current_request

log = logging.getLogger("layerserve.service.requests")
HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"^[A-Za-z0-9._~:/+=@-]{1,128}$")
_PLAIN = re.compile(r"^[A-Za-z0-9._~:/+=@%,-]*$")
_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_TFS_PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/([^/:]+)|/labels/[^/:]+)?:predict$")
CLIENT_ERRORS = (400, 413)

Scope = dict[str, Any]


class RequestLogMiddleware:
    def __init__(self, app: Any, enabled: bool = False) -> None:
        self.app = app
        self.enabled = enabled  # LAYERSERVE_ACCESS_LOG

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_id(scope.get("headers", ())) or new_request_id()
        method = scope.get("method", "")  # as the client asked (HEAD is served as GET)
        context = RequestContext(request_id)
        token = current_request.set(context)
        started = context.started
        status = 500  # unless the application answers, or gives up on a client gone
        answered = disconnected = False
        # whether the client had left when its answer began or was cut off: it heard
        # nothing, and the line says 499 (the status still counts, as it was computed)
        gone = scope.get(CLIENT_GONE_KEY, _never)
        left = False
        id_header = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status, answered, left
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = True
                left = gone()
                headers = [h for h in message.get("headers", ()) if h[0].lower() != HEADER]
                message = {**message, "headers": [*headers, id_header]}
            await send(message)

        async def tracking_receive() -> dict[str, Any]:
            nonlocal disconnected
            message = await receive()
            disconnected = message["type"] == "http.disconnect"
            return message

        try:
            await self.app(scope, tracking_receive, send_with_id)
            if not answered and disconnected:  # the application gave up on a client gone
                status = 408 if scope.get(BODY_TIMED_OUT_KEY) else CLIENT_CLOSED_REQUEST
        except asyncio.CancelledError:  # uvicorn cancels what runs past the exit timeout
            if not answered:  # uvicorn would answer 500: the client hears what is logged
                left = gone()
                if not left:
                    answer = error_response(CUT_BY_SHUTDOWN, CUT_BY_SHUTDOWN_MESSAGE)
                    with contextlib.suppress(Exception):
                        await answer(scope, tracking_receive, send_with_id)
                status = CUT_BY_SHUTDOWN
            raise
        finally:
            if status in CLIENT_ERRORS and not context.accounted:
                _count_invalid_request(scope)
            if self.enabled:
                client = scope.get("client")
                log_request(
                    request_id,
                    method,
                    scope.get("path", ""),
                    CLIENT_CLOSED_REQUEST if left else status,
                    started,
                    client[0] if client else None,
                )
            current_request.reset(token)


def _never() -> bool:
    return False


def url_path(url: bytes) -> str:
    """The path of a request target as the log line shows it: without the query."""
    return url.partition(b"?")[0].decode("latin-1")


def log_request(
    request_id: str, method: str, path: str, status: int, started: float, client: str | None
) -> None:
    """The access log line of one answered request (``started``: its perf_counter time)."""
    if not log.isEnabledFor(logging.INFO):
        return
    fields = {
        "request_id": request_id,
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "client": client or "-",
    }
    log.info(
        "request_id=%s method=%s path=%s status=%d duration_ms=%.2f client=%s",
        request_id,
        method,
        _value(path),
        status,
        fields["duration_ms"],
        fields["client"],
        extra={"fields": fields},
    )


_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


def incoming_id(headers: Any) -> str | None:
    """The client's X-Request-ID when it is a sane token (see above), else None."""
    for name, value in headers:
        if name.lower() == HEADER:
            return value.decode("ascii") if _VALID_ID.match(value) else None
    return None


def _value(text: str) -> str:
    return text if _PLAIN.match(text) else json.dumps(text)


def _count_invalid_request(scope: Scope) -> None:
    path = scope.get("path", "")
    match = _V2_INFER.match(path) or _TFS_PREDICT.match(path)
    app = scope.get("app")
    plane = getattr(getattr(app, "state", None), "dataplane", None)
    if match is None or plane is None or scope.get("method") != "POST":
        return
    plane.count_failure(match.group(1), match.group(2), "OTHER")
