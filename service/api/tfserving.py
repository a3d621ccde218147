"""TensorFlow Serving REST routes: ``/v1/models/{m}[/versions/{v}|/labels/{l}]`` status,
``/metadata`` and ``:predict`` (``:classify`` and ``:regress`` answer 501). The status
body also carries KServe V1's ``name`` and ``ready``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from starlette.routing import Route

from layerserve.service.api import schemas_tfserving as tfs
from layerserve.service.api.deps import admission, dataplane, decode_inference_body
from layerserve.service.api.schemas import (
    InferModelName,
    Label,
    ModelName,
    Version,
    error_responses,
    inline_schema,
    route_docs,
)
from layerserve.service.protocols import tfserving, tfserving_models

router = APIRouter(tags=["tensorflow-serving"])
Method = Annotated[
    str,
    Path(
        description="``predict``; ``classify`` and ``regress`` answer 501.",
        json_schema_extra={"enum": list(tfserving.METHODS)},
    ),
]


@router.get("/v1/models", summary="List models", **route_docs(tfs.ModelList))
async def list_models(request: Request) -> dict[str, list[str]]:
    """KServe V1: the names of the models that have a version loaded."""
    states = dataplane(request).repository.states()
    return {"models": [s.name for s in states if s.versions]}


# ---- status ----------------------------------------------------------------------------
STATUS = route_docs(
    tfs.ModelStatus,
    404,
    summary="Model status",
    description="State of every version (or the one addressed); ``ready`` for KServe V1 "
    "clients. The only label is ``latest``.",
)


@router.get("/v1/models/{name:segment}", **STATUS)
async def model_status(request: Request, name: ModelName) -> dict[str, Any]:
    return _status(request, name, None)


@router.get("/v1/models/{name:segment}/versions/{version:segment}", **STATUS)
async def model_version_status(
    request: Request, name: ModelName, version: Version
) -> dict[str, Any]:
    return _status(request, name, version)


@router.get("/v1/models/{name:segment}/labels/{label:segment}", **STATUS)
async def model_label_status(request: Request, name: ModelName, label: Label) -> dict[str, Any]:
    version = tfserving_models.version_for_label(name, label)
    return _status(request, name, version, labelled=True)


def _status(
    request: Request, name: str, version: str | None, labelled: bool = False
) -> dict[str, Any]:
    return tfserving_models.model_status(dataplane(request).repository, name, version, labelled)


# ---- metadata --------------------------------------------------------------------------
METADATA = route_docs(
    tfs.TFModelMetadata,
    404,
    503,
    summary="Model metadata (signature)",
    description="The ``serving_default`` signature: inputs and outputs with DT_* types.",
)


@router.get("/v1/models/{name}/metadata", **METADATA)
async def model_metadata(request: Request, name: ModelName) -> dict[str, Any]:
    return _metadata(request, name, None)


@router.get("/v1/models/{name}/versions/{version}/metadata", **METADATA)
async def model_version_metadata(
    request: Request, name: ModelName, version: Version
) -> dict[str, Any]:
    return _metadata(request, name, version)


@router.get("/v1/models/{name}/labels/{label}/metadata", **METADATA)
async def model_label_metadata(request: Request, name: ModelName, label: Label) -> dict[str, Any]:
    return _metadata(request, name, tfserving_models.version_for_label(name, label))


def _metadata(request: Request, name: str, version: str | None) -> dict[str, Any]:
    return tfserving_models.model_metadata(dataplane(request).model(name, version))


# ---- predict ---------------------------------------------------------------------------
PREDICT = {
    "response_model": None,
    "summary": "Predict",
    "description": "``:predict`` with ``instances`` (row format, answered with "
    "``predictions``) or ``inputs`` (columnar format, answered with ``outputs``). Bytes "
    'travel as ``{"b64": ...}``; NaN and Infinity tokens are accepted and written. Bodies '
    "may be gzip or deflate encoded (``Content-Encoding``).",
    "responses": {
        200: {
            "model": tfs.PredictRowResponse | tfs.PredictColumnarResponse,
            "description": "Success",
            "content": {
                "application/json": {
                    "examples": {
                        "row": {
                            "summary": "Row format: one prediction per instance",
                            "value": tfs.PREDICT_ROW_RESPONSE,
                        },
                        "columnar": {
                            "summary": "Columnar format: each output's whole batch",
                            "value": tfs.PREDICT_COLUMNAR_RESPONSE,
                        },
                    }
                }
            },
        },
        **error_responses(400, 404, 413, 500, 501, 503, 504),
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            inline_schema(tfs.PredictRowRequest),
                            inline_schema(tfs.PredictColumnarRequest),
                        ]
                    },
                    "examples": {
                        "row": {
                            "summary": "Row format, named inputs (hadamard)",
                            "value": tfs.PREDICT_ROW_EXAMPLE,
                        },
                        "columnar": {
                            "summary": "Columnar format (hadamard)",
                            "value": tfs.PREDICT_COLUMNAR_EXAMPLE,
                        },
                    },
                }
            },
        }
    },
}


@router.post("/v1/models/{name}:{method}", **PREDICT)
async def predict(request: Request, name: InferModelName, method: Method) -> Response:
    return await _predict(request, name, method)


@router.post("/v1/models/{name}/versions/{version}:{method}", **PREDICT)
async def predict_version(
    request: Request, name: InferModelName, version: Version, method: Method
) -> Response:
    return await _predict(request, name, method, version=version)


@router.post("/v1/models/{name}/labels/{label}:{method}", **PREDICT)
async def predict_label(
    request: Request, name: InferModelName, label: Label, method: Method
) -> Response:
    return await _predict(request, name, method, label=label)


async def _predict(
    request: Request,
    name: str,
    method: str,
    version: str | None = None,
    label: str | None = None,
) -> Response:
    tfserving.check_method(method, request.url.path)
    plane = dataplane(request)
    if label is not None:
        version = tfserving_models.version_for_label(name, label)
    model = plane.model(name, version)
    tfserving.check_supported(method, model)
    place = admission(request, model)
    try:
        parsed = await decode_inference_body(request, model, tfserving.decode_predict, model)
        outputs = await plane.infer(model, parsed.inputs, admission=place)
        content = await plane.decoder.encode(
            tfserving.encode_predict,
            model,
            parsed,
            outputs,
            text_values=tfserving.answer_values(model, parsed, outputs),
        )
    finally:
        place.release()
    return Response(content, media_type="application/json")


async def _predict_endpoint(request: Request) -> Response:
    params = request.path_params
    return await _predict(
        request, params["name"], "predict", params.get("version"), params.get("label")
    )


# The hot path as plain Starlette routes, matched before the documented FastAPI routes
# (only ":predict", so that layerserve's own ":mask", ":validate", ... routes are reached).
FAST_ROUTES = [
    Route("/v1/models/{name}:predict", _predict_endpoint, methods=["POST"]),
    Route("/v1/models/{name}/versions/{version}:predict", _predict_endpoint, methods=["POST"]),
    Route("/v1/models/{name}/labels/{label}:predict", _predict_endpoint, methods=["POST"]),
]
