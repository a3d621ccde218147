"""Request helpers shared by the routes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request

from layerserve.service.batcher import Admission
from layerserve.service.body_limits import model_body_limit
from layerserve.service.dataplane import DataPlane
from layerserve.service.decoding import OFF_LOOP_BYTES, Spool
from layerserve.service.http_protocol import ADMISSION_KEY
from layerserve.service.protocols import v2
from layerserve.service.protocols.body import check_declared_size, decompress, too_large
from layerserve.service.runtime import LoadedModel

T = TypeVar("T")


def dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


def admission(request: Request, model: LoadedModel) -> Admission:
    """The inference request's place at ``model``: given by the server from the request's
    head, or taken here (a full model refuses with 503 before the body is read). Release
    it once the request is answered."""
    return request.scope.get(ADMISSION_KEY) or dataplane(request).admit(model)


async def read_body(request: Request, limit: int | None = None, reason: str = "") -> bytes:
    """The body, refused as soon as it (or its decompressed form) passes the limit
    (``max_request_bytes``, or ``limit`` when that is lower; ``reason`` says what it is).
    Large compressed bodies are inflated on a thread (zlib lets go of the GIL)."""
    server_limit = request.app.state.settings.max_request_bytes
    limit = server_limit if limit is None else min(limit, server_limit)
    check_declared_size(request.headers.get("content-length"), limit, reason)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit, reason)
        if chunk:
            chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = request.headers.get("content-encoding")
    if encoding and len(body) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(decompress, body, encoding, limit)
    return decompress(body, encoding, limit)


async def decode_inference_body(
    request: Request,
    model: LoadedModel,
    function: Callable[..., T],
    *args: Any,
    json_bytes: int | None = None,
) -> T:
    """Read and decode the body of an inference request for ``model``: ``function(body,
    *args)``. A body larger than any valid request for the model could be is refused from
    its Content-Length; a large JSON part (``json_bytes``, default the whole body) is
    decoded in a worker process, spooled to a file on the way when its size is declared,
    so that the event loop goes on answering."""
    limit = model_body_limit(model, request.app.state.settings.max_request_bytes)
    declared = check_declared_size(request.headers.get("content-length"), limit.size, limit.reason)
    large = json_bytes is None or json_bytes > OFF_LOOP_BYTES
    plane = dataplane(request)
    if large and declared and declared > OFF_LOOP_BYTES and not _encoded(request):
        with Spool() as spool:
            async for chunk in request.stream():
                if spool.size + len(chunk) > limit.size:
                    raise too_large(limit.size, limit.reason)
                await spool.write(chunk)
            return await plane.decoder.decode_file(function, spool.path, *args)
    body = await read_body(request, limit.size, limit.reason)
    return await plane.decoder.decode(function, body, *args, json_bytes=json_bytes)


def _encoded(request: Request) -> bool:
    encoding = request.headers.get("content-encoding")
    return bool(encoding) and encoding.lower() != "identity"


async def read_v2_request(request: Request, model: LoadedModel) -> v2.V2Request:
    """The body of a V2 inference request for ``model``, JSON or binary, decoded."""
    header_length = v2.header_length(request.headers.getlist(v2.HEADER_LENGTH))
    limit = request.app.state.settings.max_request_bytes
    return await decode_inference_body(
        request, model, v2.decode_request, header_length, model, limit, json_bytes=header_length
    )
