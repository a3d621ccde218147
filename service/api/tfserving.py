"""TensorFlow Serving REST routes: ``/v1/models/{m}[/versions/{v}|/labels/{l}]`` status,
``/metadata`` and ``:predict`` (``:classify`` and ``:regress`` answer 501). The status
body also carries KServe V1's ``name`` and ``ready``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.routing import Route

from layerserve.service.api.deps import dataplane, read_body
from layerserve.service.protocols import tfserving

router = APIRouter(tags=["tensorflow-serving"])


def _version(name: str, version: str | None, label: str | None) -> str | None:
    return tfserving.version_for_label(name, label) if label is not None else version


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, list[str]]:
    """KServe V1: the names of the models that have a version loaded."""
    states = dataplane(request).repository.states()
    return {"models": [s.name for s in states if s.versions]}


@router.get("/v1/models/{name}")
@router.get("/v1/models/{name}/versions/{version}")
@router.get("/v1/models/{name}/labels/{label}")
async def model_status(
    request: Request, name: str, version: str | None = None, label: str | None = None
) -> dict[str, Any]:
    """State of every version (or the one addressed); ``ready`` for KServe V1 clients."""
    repository = dataplane(request).repository
    return tfserving.model_status(repository, name, _version(name, version, label))


@router.get("/v1/models/{name}/metadata")
@router.get("/v1/models/{name}/versions/{version}/metadata")
@router.get("/v1/models/{name}/labels/{label}/metadata")
async def model_metadata(
    request: Request, name: str, version: str | None = None, label: str | None = None
) -> dict[str, Any]:
    """The ``serving_default`` signature: inputs and outputs with DT_* types."""
    model = dataplane(request).model(name, _version(name, version, label))
    return tfserving.model_metadata(model)


@router.post("/v1/models/{name}:{method}")
@router.post("/v1/models/{name}/versions/{version}:{method}")
@router.post("/v1/models/{name}/labels/{label}:{method}")
async def predict(
    request: Request,
    name: str,
    method: str,
    version: str | None = None,
    label: str | None = None,
) -> Response:
    """``:predict`` with ``instances`` (row) or ``inputs`` (columnar); ``:classify`` and
    ``:regress`` are not supported (501)."""
    tfserving.check_method(method, request.url.path)
    plane = dataplane(request)
    model = plane.model(name, _version(name, version, label))
    tfserving.check_supported(method, model)
    parsed = tfserving.decode_predict(await read_body(request), model)
    outputs = await plane.infer(model, parsed.inputs)
    return Response(tfserving.encode_predict(model, parsed, outputs), media_type="application/json")


async def _predict_endpoint(request: Request) -> Response:
    params = request.path_params
    return await predict(
        request, params["name"], "predict", params.get("version"), params.get("label")
    )


# The hot path as plain Starlette routes, matched before the documented FastAPI routes
# (only ":predict", so that layerserve's own ":mask", ":validate", ... routes are reached).
FAST_ROUTES = [
    Route("/v1/models/{name}:predict", _predict_endpoint, methods=["POST"]),
    Route("/v1/models/{name}/versions/{version}:predict", _predict_endpoint, methods=["POST"]),
    Route("/v1/models/{name}/labels/{label}:predict", _predict_endpoint, methods=["POST"]),
]
