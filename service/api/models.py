"""Model management (admin): upload a model file as a new version (multipart), delete a
version or a model, download the served ONNX graph, export a Keras-family file to ONNX
without storing it. The work is in ``service/model_admin.py``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from layerserve.service import idempotency
from layerserve.service.api import schemas_models as docs
from layerserve.service.api.head import is_head
from layerserve.service.api.schemas import ModelName, Version
from layerserve.service.errors import InvalidInput
from layerserve.service.http_protocol import CLIENT_CLOSED_REQUEST
from layerserve.service.model_admin import Body, ModelAdmin

router = APIRouter(tags=["models"])
CHUNK_BYTES = 1024 * 1024
IDEMPOTENCY_KEY_PARAMETER = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_LENGTH + 2},
    "example": "8e03978e-40d5-43e8-bc93-6894a57f9324",
    "description": "Makes retries safe: a new random key per upload, resent unchanged "
    "with every retry of it. A retry of an upload that created a version answers 201 "
    f"with that version and the same body (and `{idempotency.REPLAYED_HEADER}: true`) "
    "without storing anything; the same key with a different file, file name or config "
    f"is refused with 422. The key: {idempotency.KEY_RULE}; it is kept in the version's "
    "upload.json for as long as the version exists.",
}


def model_admin(request: Request) -> ModelAdmin:
    return request.app.state.model_admin


def _body(request: Request) -> Body:
    headers = request.headers
    encoding = headers.get("content-encoding", "identity")
    if encoding.lower() != "identity":
        raise InvalidInput(
            f"Content-Encoding is not supported for model files; expected none (identity), "
            f"received {encoding!r}: send the file as it is (.keras and .h5 are compressed)"
        )
    return Body(request.stream(), headers.get("content-type"), headers.get("content-length"))


@router.post(
    "/v1/models/{name:segment}",
    summary="Upload a model version",
    status_code=201,
    response_model=docs.UploadedVersion,
    responses=docs.UPLOAD_ERRORS,
    openapi_extra={**docs.UPLOAD_FORM, "parameters": [IDEMPOTENCY_KEY_PARAMETER]},
)
async def upload_model(
    request: Request, response: Response, name: ModelName
) -> dict[str, Any] | Response:
    """Store the uploaded file as the model's next version and serve it. The body streams
    to disk (at most ``LAYERSERVE_MAX_UPLOAD_BYTES``); Keras-family files are exported to
    ONNX (in a child process limited by ``LAYERSERVE_CONVERSION_MEMORY_BYTES`` and
    ``LAYERSERVE_CONVERSION_TIMEOUT_SECONDS``) and checked against the NumPy reference.
    The version appears whole once it loads, or not at all: a refused upload leaves the
    repository as it was."""
    keys = request.headers.getlist(idempotency.HEADER)
    try:
        uploaded = await model_admin(request).upload(name, _body(request), keys)
    except ClientDisconnect:  # gone before the whole file arrived: nothing was stored
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if uploaded.replayed:
        response.headers[idempotency.REPLAYED_HEADER] = "true"
    return uploaded.answer


@router.delete(
    "/v1/models/{name:segment}",
    summary="Delete a model",
    response_model=docs.Deleted,
    responses=docs.NOT_FOUND,
)
async def delete_model(request: Request, name: ModelName) -> dict[str, Any]:
    """Stop serving every version of the model, then remove its directory. Requests
    already queued or running finish first; later ones get 404."""
    return await model_admin(request).delete(name)


@router.delete(
    "/v1/models/{name:segment}/versions/{version:segment}",
    summary="Delete a model version",
    response_model=docs.Deleted,
    responses=docs.NOT_FOUND,
)
async def delete_version(request: Request, name: ModelName, version: Version) -> dict[str, Any]:
    """Stop serving the version, then remove its directory. Requests already queued or
    running on it finish first; later ones get 404."""
    return await model_admin(request).delete(name, version)


@router.get(
    "/v1/models/{name}/onnx",
    summary="Download the served ONNX graph",
    response_class=Response,
    responses=docs.DOWNLOAD_RESPONSES,
)
async def download_onnx(request: Request, name: ModelName) -> Response:
    """The model.onnx the model's highest version is served from, byte for byte."""
    return await _download(request, name, None)


@router.get(
    "/v1/models/{name}/versions/{version}/onnx",
    summary="Download the served ONNX graph of a version",
    response_class=Response,
    responses=docs.DOWNLOAD_RESPONSES,
)
async def download_version_onnx(request: Request, name: ModelName, version: Version) -> Response:
    """The model.onnx the version is served from, byte for byte."""
    return await _download(request, name, version)


async def _download(request: Request, name: str, version: str | None) -> Response:
    onnx_file = await model_admin(request).open_onnx(name, version)
    headers = {
        "Content-Disposition": f'attachment; filename="{onnx_file.filename}"',
        "Content-Length": str(onnx_file.size),
    }
    if is_head(request):  # the headers only: the file is not read
        onnx_file.handle.close()
        return Response(media_type="application/octet-stream", headers=headers)
    return StreamingResponse(
        _chunks(onnx_file.handle), media_type="application/octet-stream", headers=headers
    )


@router.post(
    "/v1/export",
    summary="Convert a Keras-family file to ONNX",
    response_class=Response,
    responses=docs.EXPORT_RESPONSES,
    openapi_extra=docs.EXPORT_FORM,
)
async def export_model(request: Request) -> Response:
    """Load the file with the NumPy reference (Lambda bytecode refused), export it to ONNX,
    check parity, and answer the graph. Nothing is stored."""
    try:
        exported = await model_admin(request).export(_body(request))
    except ClientDisconnect:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    headers = {
        "X-Source-Format": exported.source_format,
        "Content-Disposition": f'attachment; filename="{exported.filename}"',
    }
    if exported.max_abs_error is not None:
        headers["X-Parity-Max-Abs-Error"] = repr(exported.max_abs_error)
    return Response(exported.onnx_bytes, media_type="application/octet-stream", headers=headers)


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
