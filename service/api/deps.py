"""Request helpers shared by the routes."""

from __future__ import annotations

from fastapi import Request

from layerserve.service.dataplane import DataPlane
from layerserve.service.errors import PayloadTooLarge
from layerserve.service.protocols import v2
from layerserve.service.protocols.body import check_declared_size, decompress
from layerserve.service.runtime import LoadedModel


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


async def read_v2_request(request: Request, model: LoadedModel) -> v2.V2Request:
    """The body of a V2 inference request for ``model``, JSON or binary, decoded."""
    body = await read_body(request)
    header_length = v2.header_length(request.headers.get(v2.HEADER_LENGTH))
    return v2.decode_request(
        body, header_length, model, request.app.state.settings.max_request_bytes
    )
