"""Open Inference Protocol (V2) REST routes, with and without /versions/{v}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import Route

from layerserve.service.api.deps import dataplane, read_body
from layerserve.service.api.errors import error_response
from layerserve.service.errors import InvalidInput, NotSupported
from layerserve.service.protocols import v2
from layerserve.service.protocols.v2 import HEADER_LENGTH

router = APIRouter(tags=["v2"])


def _versions(request: Request, name: str) -> list[str]:
    for state in dataplane(request).repository.states():
        if state.name == name:
            return sorted(state.versions, key=int)
    return []


@router.get("/v2")
async def server_metadata(request: Request) -> dict[str, Any]:
    """Server name, version and supported extensions."""
    return dataplane(request).server_metadata()


@router.get("/v2/health/live")
async def live(request: Request) -> dict[str, bool]:
    """200 while the process answers; never waits on inference."""
    return {"live": True}


@router.get("/v2/health/ready", response_model=None)
async def ready(request: Request) -> dict[str, bool] | JSONResponse:
    """200 once every model is loaded and warmed; 503 while loading or draining."""
    plane = dataplane(request)
    if plane.ready:
        return {"ready": True}
    reason = "draining" if plane.draining else "models are not all loaded"
    return error_response(503, f"server is not ready: {reason}")


@router.get("/v2/models/{name}/ready", response_model=None)
@router.get("/v2/models/{name}/versions/{version}/ready", response_model=None)
async def model_ready(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    """200 with ``{"name", "ready": true}`` when the model (version) can serve."""
    dataplane(request).model(name, version)
    return {"name": name, "ready": True}


@router.get("/v2/models/{name}")
@router.get("/v2/models/{name}/versions/{version}")
async def model_metadata(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    """Inputs and outputs with V2 datatypes; -1 marks a variable dimension."""
    model = dataplane(request).model(name, version)
    return v2.tensor_metadata(model, _versions(request, name))


@router.get("/v2/models/{name}/config")
@router.get("/v2/models/{name}/versions/{version}/config")
async def model_config(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    """The model configuration in Triton's ModelConfig JSON form."""
    model = dataplane(request).model(name, version)
    config = model.config
    batched = model.batched

    def dims(spec: Any) -> list[int]:
        return list(spec.shape[1:] if batched else spec.shape)

    return {
        "name": model.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": config.max_batch_size,
        "input": [
            {"name": s.name, "data_type": f"TYPE_{s.datatype}", "dims": dims(s)}
            for s in model.inputs
        ],
        "output": [
            {"name": s.name, "data_type": f"TYPE_{s.datatype}", "dims": dims(s)}
            for s in model.outputs
        ],
        "dynamic_batching": {
            "max_queue_delay_microseconds": config.max_queue_delay_us,
            "default_queue_policy": {
                "max_queue_size": config.max_queue_size,
                "default_timeout_microseconds": config.queue_timeout_ms * 1000,
                "allow_timeout_override": True,
            },
        }
        if batched
        else None,
        "instance_group": [
            {
                "count": config.instances,
                "kind": "KIND_GPU" if "CUDAExecutionProvider" in model.providers else "KIND_CPU",
            }
        ],
        "parameters": {
            "intra_op_thread_count": {"string_value": str(config.intra_op_threads)},
            "execution_providers": {"string_value": ",".join(model.providers)},
        },
    }


@router.post("/v2/models/{name}/infer")
@router.post("/v2/models/{name}/versions/{version}/infer")
async def infer(request: Request, name: str, version: str | None = None) -> Response:
    """Inference with JSON or binary tensors; ``Inference-Header-Content-Length`` marks
    binary data after the JSON header."""
    plane = dataplane(request)
    model = plane.model(name, version)
    body = await read_body(request)
    header = request.headers.get(HEADER_LENGTH)
    try:
        header_length = int(header) if header is not None else None
    except ValueError as exc:
        raise InvalidInput(f"invalid Inference-Header-Content-Length: {header!r}") from exc
    parsed = v2.decode_request(
        body, header_length, model, request.app.state.settings.max_request_bytes
    )
    outputs = await plane.infer(model, parsed.inputs, parsed.timeout_us)
    content, json_length = v2.encode_response(model, parsed, outputs)
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(json_length)},
    )


@router.post("/v2/repository/index")
async def repository_index(request: Request) -> list[dict[str, str]]:
    """Every model and version with its state (``{"ready": true}`` keeps ready ones)."""
    body = await read_body(request)
    document = v2.parse_json(body) if body.strip() else {}
    if not isinstance(document, dict) or not isinstance(document.get("ready", False), bool):
        raise InvalidInput('the index request body must be an object like {"ready": true}')
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


@router.post("/v2/repository/models/{name}/load")
async def load_model(request: Request, name: str) -> dict[str, Any]:
    """Load, or reload, a model from the repository directory."""
    parameters = await _control_parameters(request, "load")
    overrides = sorted(k for k in parameters if k == "config" or k.startswith("file:"))
    if overrides:
        raise NotSupported(
            f"load parameters {overrides} are not supported: this server loads models "
            "from the repository directory only"
        )
    await dataplane(request).load(name)
    return {"name": name, "load": True}


@router.post("/v2/repository/models/{name}/unload")
async def unload_model(request: Request, name: str) -> dict[str, Any]:
    """Stop serving a model; requests already queued on it finish first."""
    await _control_parameters(request, "unload")
    await dataplane(request).unload(name)
    return {"name": name, "unload": True}


async def _infer_endpoint(request: Request) -> Response:
    params = request.path_params
    return await infer(request, params["name"], params.get("version"))


# The hot path as plain Starlette routes, matched before the documented FastAPI routes:
# FastAPI's per-request route matching and parameter validation cost about as much as
# decoding a batch-1 request (see the service benchmark in the README).
FAST_ROUTES = [
    Route("/v2/models/{name}/infer", _infer_endpoint, methods=["POST"]),
    Route("/v2/models/{name}/versions/{version}/infer", _infer_endpoint, methods=["POST"]),
]
