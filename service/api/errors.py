"""The one place where errors become HTTP responses: always ``{"error": "..."}``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from layerserve.errors import LayerserveError
from layerserve.service import errors
from layerserve.service.http_protocol import RETRY_AFTER_SECONDS

log = logging.getLogger("layerserve.service")

STATUS: dict[type[Exception], int] = {
    errors.InvalidInput: 400,
    errors.AmbiguousCredentials: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.Conflict: 409,
    errors.ParityFailed: 422,
    errors.IdempotencyKeyReused: 422,
    errors.ModelLoadError: 400,
    errors.ModelNotFound: 404,
    errors.PayloadTooLarge: 413,
    errors.NotSupported: 501,
    errors.InsufficientStorage: 507,
    errors.ModelNotReady: 503,
    errors.QueueFull: 503,
    errors.QueueTimeout: 504,
    errors.InferenceFailed: 500,
}
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def status_of(error: Exception) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400 if isinstance(error, LayerserveError) else 500


def error_response(
    status: int, message: str, problems: list[str] | None = None, bearer_error: str = ""
) -> JSONResponse:
    """``bearer_error``: RFC 6750's error code for a Bearer token that was sent
    (invalid_token with a 401, insufficient_scope with a 403)."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else {}
    if status == 401 or bearer_error:
        error = f', error="{bearer_error}"' if bearer_error else ""
        headers["WWW-Authenticate"] = f'Bearer realm="layerserve"{error}'
    content: dict[str, object] = {"error": message}
    if problems is not None:
        content["problems"] = problems
    return JSONResponse(content, status_code=status, headers=headers or None)


def service_error_response(exc: errors.ServiceError) -> JSONResponse:
    """The response for a domain error, for code outside FastAPI's handlers (ASGI
    middleware, plain Starlette routes)."""
    return error_response(
        status_of(exc),
        str(exc),
        getattr(exc, "problems", None),
        getattr(exc, "bearer_error", ""),  # the RFC 6750 code its class names
    )


def report_service_error(method: str, path: str, exc: errors.ServiceError) -> None:
    """Log a domain error that is the server's failure (5xx, unless 501 or 503); a 504,
    a request that waited past its queue timeout (which the client may have set itself,
    to a microsecond), as a warning."""
    status = status_of(exc)
    if status == 504:
        log.warning("%s %s failed: %s", method, path, exc)
    elif status >= 500 and status not in (501, 503):
        log.error("%s %s failed: %s", method, path, exc)


async def service_error(request: Request, exc: errors.ServiceError) -> JSONResponse:
    report_service_error(request.method, request.url.path, exc)
    return service_error_response(exc)


async def library_error(request: Request, exc: LayerserveError) -> JSONResponse:
    return error_response(400, str(exc))


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.ServiceError, service_error)  # type: ignore[arg-type]
    app.add_exception_handler(LayerserveError, library_error)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, invalid_request(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route for {request.method} {request.url.path}"
        allowed = (exc.headers or {}).get("Allow")
        if exc.status_code == 405:
            allowed = allowed_methods(request) or allowed
        if exc.status_code == 405 and allowed:
            message = (
                f"method {request.method} is not allowed for {request.url.path}; "
                f"expected one of: {allowed}"
            )
        response = error_response(exc.status_code, message)
        if allowed:
            response.headers["Allow"] = allowed
        return response

    app.add_middleware(UnexpectedErrorMiddleware)


def invalid_request(problems: Iterable[Mapping[str, Any]], where: tuple[str, ...] = ()) -> str:
    """The message of a request pydantic refused: each problem's location (under
    ``where``) and what was expected."""
    listed = "; ".join(
        f"{'.'.join(str(p) for p in (*where, *e['loc']))}: {e['msg']}" for e in problems
    )
    return f"invalid request: {listed}"


def allowed_methods(request: Request) -> str:
    """Every method some route serves for this path, e.g. "GET, POST, DELETE" for
    /v1/models/{name} (Starlette's 405 names only the first matching route's): the
    methods that would not be answered 405."""
    allowed = []
    for method in METHOD_ORDER:
        scope = {**request.scope, "method": method}
        if any(r.matches(scope)[0] is Match.FULL for r in request.app.router.routes):
            allowed.append(method)
    if "GET" in allowed and "HEAD" not in allowed:  # answered as GET (api/head.py)
        allowed.insert(allowed.index("GET") + 1, "HEAD")
    return ", ".join(allowed)


class UnexpectedErrorMiddleware:
    """Answers an unexpected exception with a JSON 500 and does not re-raise it, so the
    client's keep-alive connection survives (Starlette's own handler re-raises)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:  # the client left mid-body: no one to answer, nothing broke
            return
        except Exception:  # noqa: BLE001 - the last line of defence
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = error_response(500, errors.INTERNAL_ERROR)
                await response(scope, receive, send)
