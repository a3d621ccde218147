"""Request helpers shared by the routes."""

from __future__ import annotations

from fastapi import Request

from layerserve.service.dataplane import DataPlane
from layerserve.service.errors import PayloadTooLarge
from layerserve.service.protocols.body import check_declared_size, decompress


def dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """The body, refused as soon as it (or its decompressed form) passes the limit
    (``max_request_bytes``, or ``limit`` when that is lower)."""
    server_limit = request.app.state.settings.max_request_bytes
    limit = server_limit if limit is None else min(limit, server_limit)
    check_declared_size(request.headers.get("content-length"), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"request body exceeds the maximum allowed input size of {limit} bytes"
            )
        chunks.append(chunk)
    return decompress(b"".join(chunks), request.headers.get("content-encoding"), limit)
