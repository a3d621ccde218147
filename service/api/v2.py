"""Open Inference Protocol (V2) REST routes, with and without /versions/{v}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import Route

from layerserve.service.api import schemas
from layerserve.service.api.deps import admission, dataplane, read_body, read_v2_request
from layerserve.service.api.schemas import InferModelName, ModelName, Version, route_docs
from layerserve.service.errors import InvalidInput, ModelNotReady, NotSupported
from layerserve.service.protocols import v2

router = APIRouter(tags=["v2"])


def _versions(request: Request, name: str) -> list[str]:
    for state in dataplane(request).repository.states():
        if state.name == name:
            return sorted(state.versions, key=int)
    return []


# ---- server --------------------------------------------------------------------------
@router.get("/v2", summary="Server metadata", **route_docs(schemas.ServerMetadata))
async def server_metadata(request: Request) -> dict[str, Any]:
    """Server name, version and supported extensions."""
    return dataplane(request).server_metadata()


@router.get("/v2/health/live", summary="Server live", **route_docs(schemas.ServerLive))
async def live(request: Request) -> dict[str, bool]:
    """200 while the process answers; never waits on inference."""
    return {"live": True}


@router.get("/v2/health/ready", summary="Server ready", **route_docs(schemas.ServerReady, 503))
async def ready(request: Request) -> dict[str, bool] | JSONResponse:
    """200 once every model is loaded and warmed; 503 while loading or draining."""
    plane = dataplane(request)
    if plane.ready:
        return {"ready": True}
    reason = "draining" if plane.draining else "models are not all loaded"
    raise ModelNotReady(f"server is not ready: {reason}")


# ---- models --------------------------------------------------------------------------
MODEL_READY = route_docs(
    schemas.ModelReady,
    404,
    503,
    summary="Model ready",
    description='200 with ``{"name", "ready": true}`` when the model (version) can serve; '
    "404 for an unknown model or version, 503 while it loads.",
)


@router.get("/v2/models/{name}/ready", **MODEL_READY)
async def model_ready(request: Request, name: ModelName) -> dict[str, Any]:
    return _model_ready(request, name, None)


@router.get("/v2/models/{name}/versions/{version}/ready", **MODEL_READY)
async def model_version_ready(
    request: Request, name: ModelName, version: Version
) -> dict[str, Any]:
    return _model_ready(request, name, version)


def _model_ready(request: Request, name: str, version: str | None) -> dict[str, Any]:
    dataplane(request).model(name, version)
    return {"name": name, "ready": True}


MODEL_METADATA = route_docs(
    schemas.ModelMetadata,
    404,
    503,
    summary="Model metadata",
    description="Inputs and outputs with V2 datatypes; -1 marks a variable dimension.",
)


@router.get("/v2/models/{name}", **MODEL_METADATA)
async def model_metadata(request: Request, name: ModelName) -> dict[str, Any]:
    return _model_metadata(request, name, None)


@router.get("/v2/models/{name}/versions/{version}", **MODEL_METADATA)
async def model_version_metadata(
    request: Request, name: ModelName, version: Version
) -> dict[str, Any]:
    return _model_metadata(request, name, version)


def _model_metadata(request: Request, name: str, version: str | None) -> dict[str, Any]:
    model = dataplane(request).model(name, version)
    return v2.tensor_metadata(model, _versions(request, name))


MODEL_CONFIG = route_docs(
    schemas.ModelConfiguration,
    404,
    503,
    summary="Model configuration",
    description="The model configuration in Triton's ModelConfig JSON form.",
)


@router.get("/v2/models/{name}/config", **MODEL_CONFIG)
async def model_config(request: Request, name: ModelName) -> dict[str, Any]:
    return _model_config(request, name, None)


@router.get("/v2/models/{name}/versions/{version}/config", **MODEL_CONFIG)
async def model_version_config(
    request: Request, name: ModelName, version: Version
) -> dict[str, Any]:
    return _model_config(request, name, version)


def _model_config(request: Request, name: str, version: str | None) -> dict[str, Any]:
    return v2.model_configuration(dataplane(request).model(name, version))


# ---- inference -----------------------------------------------------------------------
BINARY_HEADER = {
    "description": "Length of the JSON part of a binary body; 0: the body is the raw bytes "
    "of the model's only input, batch 1.",
    "schema": {"type": "integer", "minimum": 0},
}
INFER = {
    "response_model": None,
    "summary": "Inference",
    "description": "Runs the model on JSON or binary tensors. With "
    "``Inference-Header-Content-Length`` the body is that many bytes of JSON followed by "
    "the binary tensor data (``parameters.binary_data_size`` per input); outputs asked "
    "for with ``binary_data`` come back the same way. Bodies may be gzip or deflate "
    "encoded (``Content-Encoding``).",
    "responses": {
        200: {
            "model": schemas.InferenceResponse,
            "description": "Success",
            "content": {
                "application/json": {
                    "examples": {
                        "hadamard-sum": {
                            "summary": "Only the requested output, with the request id",
                            "value": schemas.INFER_RESPONSE,
                        },
                        "hadamard-all-outputs": {
                            "summary": "Every output",
                            "value": schemas.INFER_FLAT_RESPONSE,
                        },
                    }
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
            "headers": {"Inference-Header-Content-Length": BINARY_HEADER},
        },
        **schemas.error_responses(400, 404, 413, 500, 503, 504),
    },
    "openapi_extra": {
        "parameters": [
            {"name": "Inference-Header-Content-Length", "in": "header", **BINARY_HEADER}
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": schemas.inline_schema(schemas.InferenceRequest),
                    "examples": {
                        "hadamard-sum": {
                            "summary": "Two inputs, batch 2, nested data; one output",
                            "value": schemas.INFER_EXAMPLE,
                        },
                        "hadamard-all-outputs": {
                            "summary": "Flat data; every output",
                            "value": schemas.INFER_FLAT_EXAMPLE,
                        },
                    },
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
    },
}


@router.post("/v2/models/{name}/infer", **INFER)
async def infer(request: Request, name: InferModelName) -> Response:
    return await _infer(request, name, None)


@router.post("/v2/models/{name}/versions/{version}/infer", **INFER)
async def infer_version(request: Request, name: InferModelName, version: Version) -> Response:
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    plane = dataplane(request)
    model = plane.model(name, version)
    place = admission(request, model)
    try:
        parsed = await read_v2_request(request, model)
        outputs = await plane.infer(model, parsed.inputs, parsed.timeout_us, place)
        content, json_length = await plane.decoder.encode(
            v2.encode_response,
            model,
            parsed,
            outputs,
            text_values=v2.text_values(model, parsed, outputs),
        )
    finally:
        place.release()
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(json_length)},
    )


# ---- repository extension ------------------------------------------------------------
def _optional_body(model: type, example: Any) -> dict[str, Any]:
    schema = schemas.inline_schema(model)
    content = {"application/json": {"schema": schema, "example": example}}
    return {"requestBody": {"required": False, "content": content}}


@router.post(
    "/v2/repository/index",
    summary="Repository index",
    openapi_extra=_optional_body(schemas.RepositoryIndexRequest, {"ready": True}),
    **route_docs(schemas.RepositoryIndex, 400),
)
async def repository_index(request: Request) -> list[dict[str, str]]:
    """Every model and version with its state (``{"ready": true}`` keeps ready ones)."""
    body = await read_body(request)
    document = v2.parse_json(body) if body.strip() else {}
    if not isinstance(document, dict):
        raise InvalidInput('the index request body must be an object like {"ready": true}')
    if not isinstance(document.get("ready", False), bool):
        raise InvalidInput(
            f"'ready' in the index request must be true or false, got {document['ready']!r}"
        )
    only_ready = document.get("ready", False)
    entries = dataplane(request).repository.index()
    return [e for e in entries if e["state"] == "READY"] if only_ready else entries


async def _control_parameters(request: Request, action: str) -> dict[str, Any]:
    body = await read_body(request)
    document = v2.parse_json(body) if body.strip() else {}
    parameters = document.get("parameters", {}) if isinstance(document, dict) else None
    if not isinstance(parameters, dict):
        raise InvalidInput(
            f'the {action} request body must be empty or an object like {{"parameters": {{}}}}'
        )
    return parameters


CONTROL_BODY = _optional_body(schemas.RepositoryControlRequest, {"parameters": {}})


@router.post(
    "/v2/repository/models/{name}/load",
    summary="Load a model",
    openapi_extra=CONTROL_BODY,
    **route_docs(schemas.LoadResponse, 400, 404, 501),
)
async def load_model(request: Request, name: ModelName) -> dict[str, Any]:
    """Load, or reload, a model from the repository directory."""
    parameters = await _control_parameters(request, "load")
    overrides = sorted(k for k in parameters if k == "config" or k.startswith("file:"))
    if overrides:
        raise NotSupported(
            f"load parameters {overrides} are not supported: this server loads models "
            "from the repository directory only"
        )
    await request.app.state.model_admin.load(name)
    return {"name": name, "load": True}


@router.post(
    "/v2/repository/models/{name}/unload",
    summary="Unload a model",
    openapi_extra=CONTROL_BODY,
    **route_docs(schemas.UnloadResponse, 400, 404),
)
async def unload_model(request: Request, name: ModelName) -> dict[str, Any]:
    """Stop serving a model; requests already queued on it finish first."""
    await _control_parameters(request, "unload")
    await request.app.state.model_admin.unload(name)
    return {"name": name, "unload": True}


async def _infer_endpoint(request: Request) -> Response:
    params = request.path_params
    return await _infer(request, params["name"], params.get("version"))


# The hot path as plain Starlette routes, matched before the documented FastAPI routes:
# FastAPI's per-request route matching and parameter validation cost about as much as
# decoding a batch-1 request (see the service benchmark in the README).
FAST_ROUTES = [
    Route("/v2/models/{name}/infer", _infer_endpoint, methods=["POST"]),
    Route("/v2/models/{name}/versions/{version}/infer", _infer_endpoint, methods=["POST"]),
]
