"""``HEAD`` wherever ``GET`` is served (RFC 9110 section 9.3.2: the same status and
headers, no content), so that load balancers and uptime checks that probe with ``HEAD``
see what ``GET`` sees. The request goes on as a ``GET``, marked (:func:`is_head`) for a
route whose content is costly to make (a download), and its body is not sent."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MARK = "layerserve.head"


def is_head(request: Request) -> bool:
    """Whether the client asked with ``HEAD``: the headers are all it reads."""
    return bool(request.scope.get(MARK))


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # a copy: the server's own scope keeps HEAD, so that it sends no content
        inner = {**scope, "method": "GET", MARK: True}
        try:
            await self.app(inner, receive, headers_only)
        finally:  # what the layers inside set (the route chosen) is the request's
            scope.update((k, v) for k, v in inner.items() if k not in ("method", MARK))
