"""Request ids and one structured log line per HTTP request (a pure ASGI middleware, so it
adds no task or body copy to the inference path).

The id comes from the client's ``X-Request-ID`` header when it is a sane token (at most
128 characters of ``[A-Za-z0-9._~:/+=@-]``), otherwise a new one is made; it is returned in
the ``X-Request-ID`` response header and is available to other code through
``layerserve.service.metrics.current_request_id()``. The log line is key=value:

    request_id=3f2a... method=POST path=/v2/models/mlp/infer status=200 duration_ms=1.84 ...

An inference request answered 400 or 413 before it reached the batcher (invalid input,
oversized body) is counted as ``nv_inference_request_failure{reason="OTHER"}`` for the
model version it names, when that version is loaded.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from layerserve.service.metrics import RequestContext, current_request

log = logging.getLogger("layerserve.service.requests")
HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"^[A-Za-z0-9._~:/+=@-]{1,128}$")
_PLAIN = re.compile(r"^[A-Za-z0-9._~:/+=@%,-]*$")
_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_TFS_PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/([^/:]+)|/labels/[^/:]+)?:predict$")
CLIENT_ERRORS = (400, 413)

Scope = dict[str, Any]


class RequestLogMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope.get("headers", ())) or uuid.uuid4().hex
        context = RequestContext(request_id)
        token = current_request.set(context)
        started = time.perf_counter()
        status = 500
        id_header = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != HEADER]
                message = {**message, "headers": [*headers, id_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if status in CLIENT_ERRORS and not context.accounted:
                _count_invalid_request(scope)
            if log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                log.info(
                    "request_id=%s method=%s path=%s status=%d duration_ms=%.2f client=%s",
                    request_id,
                    scope.get("method", ""),
                    _value(scope.get("path", "")),
                    status,
                    (time.perf_counter() - started) * 1000,
                    client[0] if client else "-",
                )
            current_request.reset(token)


def _incoming_id(headers: Any) -> str | None:
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
