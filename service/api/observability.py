"""Prometheus ``/metrics`` and the V2 statistics extension (thin routes; the content is
built in ``layerserve.service.metrics``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from layerserve.service.api.deps import dataplane
from layerserve.service.api.request_log import RequestLogMiddleware
from layerserve.service.api.schemas import ModelName, Version, error_responses, route_docs
from layerserve.service.api.schemas_statistics import METRICS_EXAMPLE, ModelStatistics
from layerserve.service.metrics import CONTENT_TYPE, statistics_json

router = APIRouter(tags=["observability"])
STATS_OF_ALL_MODELS = "/v2/models/stats"


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {CONTENT_TYPE: {"schema": {"type": "string"}, "example": METRICS_EXAMPLE}},
        },
        **error_responses(),
    },
)
async def metrics(request: Request) -> Response:
    """Triton's per-model counters (labels ``model``, ``version``) and latency histograms."""
    text = request.app.state.metrics.exposition(dataplane(request))
    return Response(text, media_type=CONTENT_TYPE)


STATS = route_docs(ModelStatistics, 404, 503, summary="Model statistics")


@router.get(STATS_OF_ALL_MODELS, **STATS)
async def all_model_stats(request: Request) -> dict[str, Any]:
    """Statistics extension: every loaded model version."""
    return _stats(request, None, None)


@router.get("/v2/models/{name}/stats", **STATS)
async def model_stats(request: Request, name: ModelName) -> dict[str, Any]:
    """Statistics extension: every loaded version of a model."""
    return _stats(request, name, None)


@router.get("/v2/models/{name}/versions/{version}/stats", **STATS)
async def model_version_stats(
    request: Request, name: ModelName, version: Version
) -> dict[str, Any]:
    """Statistics extension: one model version."""
    return _stats(request, name, version)


def _stats(request: Request, name: str | None, version: str | None) -> dict[str, Any]:
    plane = dataplane(request)
    return statistics_json(plane, plane.loaded_models(name, version))


def install(app: FastAPI) -> None:
    """Add the request-id and access-log middleware. Include ``router`` before the V2
    router, so ``GET /v2/models/stats`` wins over ``GET /v2/models/{name}``."""
    app.add_middleware(RequestLogMiddleware, enabled=app.state.settings.access_log)
