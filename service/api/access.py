"""Access control for every endpoint, as a pure ASGI middleware in front of routing (the
levels and checks are in ``layerserve.service.access``). Routes never check credentials
themselves."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from layerserve.service.access import (
    AccessPolicy,
    classify,
    client_address,
    is_loopback,
    one_authorization,
)
from layerserve.service.api.errors import service_error_response
from layerserve.service.errors import Forbidden, Unauthorized
from layerserve.service.request_context import mark_accounted

log = logging.getLogger("layerserve.service.access")
AUTHORIZATION = b"authorization"
POLICY_VIOLATION = 1008  # WebSocket close code


class AccessMiddleware:
    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        host = client_address(peer[0] if peer else None, scope.get("headers", ()))
        if peer and host != peer[0]:
            scope["client"] = (host, 0)  # what the logs and the routes see
        level = classify(scope.get("method", "GET"), route_path(scope))
        if level == "open" or (level == "api" and not self.policy.checks_api):
            await self.app(scope, receive, send)
            return
        try:
            self.policy.check(level, _authorization(scope), host)
        except (Unauthorized, Forbidden) as exc:
            mark_accounted()  # a refusal of credentials, never an inference's failure
            log.info(
                "access denied: %s %r from %s: %s",
                scope.get("method", "WEBSOCKET"),
                scope.get("path", ""),
                host or "-",
                type(exc).__name__,
            )
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": POLICY_VIOLATION})
                return
            await service_error_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The path routing matches: ``scope["path"]`` (already percent-decoded) without the
    root path, as Starlette's router computes it."""
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


def _authorization(scope: Scope) -> bytes | None:
    return one_authorization(
        [value for name, value in scope.get("headers", ()) if name.lower() == AUTHORIZATION]
    )


def install(app: FastAPI) -> None:
    """Add the middleware, inside the request-log middleware (so that a 401 or 403 carries
    a request id and gets its log line) and before routing and every other one."""
    settings = app.state.settings
    policy = AccessPolicy.from_secrets(_secret(settings.admin_token), _secret(settings.api_token))
    if policy.admin_token is None and not is_loopback(settings.host):
        log.warning(
            "LAYERSERVE_ADMIN_TOKEN is unset: admin endpoints answer loopback clients only. "
            "Behind a proxy or sidecar on this host that sets neither X-Forwarded-For nor "
            "Forwarded, "
            "every client is loopback; set LAYERSERVE_ADMIN_TOKEN there."
        )
    app.state.access_policy = policy
    app.add_middleware(AccessMiddleware, policy=policy)


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()
