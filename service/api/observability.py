"""Prometheus ``/metrics`` and the V2 statistics extension (thin routes; the content is
built in ``layerserve.service.metrics``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from layerserve.service.api.deps import dataplane
from layerserve.service.api.request_log import RequestLogMiddleware
from layerserve.service.metrics import CONTENT_TYPE, statistics_json

router = APIRouter(tags=["observability"])
STATS_OF_ALL_MODELS = "/v2/models/stats"


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Triton's per-model counters (labels ``model``, ``version``) and latency histograms."""
    text = request.app.state.metrics.exposition(dataplane(request))
    return Response(text, media_type=CONTENT_TYPE)


@router.get(STATS_OF_ALL_MODELS)
@router.get("/v2/models/{name}/stats")
@router.get("/v2/models/{name}/versions/{version}/stats")
async def model_stats(request: Request, name: str | None = None, version: str | None = None) -> Any:
    """Statistics extension: every loaded version, every version of a model, or one."""
    plane = dataplane(request)
    return statistics_json(plane, plane.loaded_models(name, version))


def install(app: FastAPI) -> None:
    """Add the request-id and access-log middleware. Include ``router`` before the V2
    router, so ``GET /v2/models/stats`` wins over ``GET /v2/models/{name}``."""
    app.add_middleware(RequestLogMiddleware)
