"""Inspection routes: a model's masks (``:mask``), a request checked without running it
(``:validate``), and the shapes of a model config (``/v1/shapes``)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from layerserve.service import inspection, masks, shapes
from layerserve.service.api.deps import dataplane, read_body, read_v2_request
from layerserve.service.api.inspect_schemas import (
    MaskRequest,
    MaskResponse,
    ShapesRequest,
    ShapesResponse,
    ValidateRequest,
    ValidateResponse,
    ValidationErrorResponse,
    json_body,
)
from layerserve.service.api.schemas import ModelName, Version, error_responses
from layerserve.service.protocols import v2

router = APIRouter(tags=["inspection"])
# The mask examples are written for the demo model with a Masking layer.
MaskModelName = Annotated[
    str, Path(description="A model of the repository.", examples=["masking_lstm"])
]
# Configs /v1/shapes builds at once; further requests wait on the event loop.
SHAPE_BUILDS = 2


def _docs(request_model: type, response_model: type, *errors: int, **extra: Any) -> dict:
    return {
        "response_model": None,
        "responses": {
            200: {"model": response_model, "description": "Success"},
            **error_responses(*errors),
            **extra.pop("responses", {}),
        },
        "openapi_extra": json_body(request_model),
        **extra,
    }


# ---- :mask ---------------------------------------------------------------------------
MASK = _docs(
    MaskRequest,
    MaskResponse,
    400,
    404,
    413,
    503,
    summary="Masks of a request",
    description="For a V2 inference request: per input row, which timesteps the "
    "model's Masking layers mask (inputs no Masking layer reads report null), and the "
    "masks of its outputs (``<output>_mask``). Runs the model once. 400 for a model with "
    "neither Masking layers on its inputs nor mask outputs.",
)


@router.post("/v1/models/{name}:mask", **MASK)
async def model_masks(request: Request, name: MaskModelName) -> dict[str, Any]:
    return await _masks(request, name, None)


@router.post("/v1/models/{name}/versions/{version}:mask", **MASK)
async def model_version_masks(
    request: Request, name: MaskModelName, version: Version
) -> dict[str, Any]:
    return await _masks(request, name, version)


async def _masks(request: Request, name: str, version: str | None) -> dict[str, Any]:
    plane = dataplane(request)
    model = plane.model(name, version)
    masks.require_masks(model)
    parsed = await read_v2_request(request, model)
    outputs = await plane.infer(model, parsed.inputs, parsed.timeout_us)
    return masks.mask_report(model, parsed.inputs, outputs)


# ---- :validate -----------------------------------------------------------------------
VALIDATE = _docs(
    ValidateRequest,
    ValidateResponse,
    404,
    413,
    503,
    responses={
        400: {"model": ValidationErrorResponse, "description": "Every problem, one per entry."}
    },
    summary="Validate a request",
    description="Checks V2 input descriptors (name, shape, datatype; data optional) "
    "against the model without running it. 200 with the datatype and concrete shape of "
    "each output the request would produce; 400 listing every problem: unknown, missing "
    "or repeated inputs, rank, each mismatching dimension, datatype, data length, batch "
    "sizes.",
)


@router.post("/v1/models/{name}:validate", **VALIDATE)
async def model_validate(request: Request, name: ModelName) -> dict[str, Any]:
    return await _validate(request, name, None)


@router.post("/v1/models/{name}/versions/{version}:validate", **VALIDATE)
async def model_version_validate(
    request: Request, name: ModelName, version: Version
) -> dict[str, Any]:
    return await _validate(request, name, version)


async def _validate(request: Request, name: str, version: str | None) -> dict[str, Any]:
    model = dataplane(request).model(name, version)
    document = v2.parse_json(await read_body(request))
    limit = request.app.state.settings.max_request_bytes
    return await run_in_threadpool(inspection.validate_request, model, document, limit)


# ---- /v1/shapes ----------------------------------------------------------------------
@router.post(
    "/v1/shapes",
    **_docs(
        ShapesRequest,
        ShapesResponse,
        400,
        413,
        summary="Shapes of a model config",
        description="Each layer's output shape and parameter count for a layerserve or "
        "Keras model config (the summary table as JSON), for design-time checks. No "
        "weights are allocated. Refused with 400: Lambda bytecode, configs over "
        f"{shapes.MAX_PARAMS:,} parameters or {shapes.MAX_LAYERS} layers; 413: bodies "
        f"over {shapes.MAX_BODY_BYTES} bytes.",
    ),
)
async def model_shapes(request: Request) -> dict[str, Any]:
    document = v2.parse_json(await read_body(request, shapes.MAX_BODY_BYTES))
    config, input_shape = shapes.parse_request(document)
    async with _shape_builds(request):
        return await run_in_threadpool(shapes.summarize, config, input_shape)


def _shape_builds(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    if not hasattr(state, "shape_builds"):
        state.shape_builds = asyncio.Semaphore(SHAPE_BUILDS)
    return state.shape_builds
