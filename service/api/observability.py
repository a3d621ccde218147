"""Prometheus ``/metrics`` and the V2 statistics extension (thin routes; the content is
built in ``layerserve.service.metrics``). Both answer totals over every worker process of
the server, whichever worker a client reaches."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from layerserve.service.api.deps import dataplane
from layerserve.service.api.request_log import RequestLogMiddleware
from layerserve.service.api.schemas import ModelName, Version, error_responses, route_docs
from layerserve.service.api.schemas_statistics import METRICS_EXAMPLE, ModelStatistics
from layerserve.service.cluster import Cluster
from layerserve.service.metrics import (
    CONTENT_TYPE,
    VersionCounts,
    exposition,
    statistics_json,
    totals,
)

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
    """Triton's per-model counters (labels ``model``, ``version``) and histograms, totals
    over the worker processes; the number of workers and of their restarts."""
    cluster = _cluster(request)
    versions = await _totals(request)
    restarts = await asyncio.to_thread(cluster.restarts)  # a file the supervisor writes
    text = exposition(versions, workers=cluster.workers, restarts=restarts)
    return Response(text, media_type=CONTENT_TYPE)


STATS = route_docs(ModelStatistics, 404, 503, summary="Model statistics")


@router.get(STATS_OF_ALL_MODELS, **STATS)
async def all_model_stats(request: Request) -> dict[str, Any]:
    """Statistics extension: every loaded model version, totals over the workers."""
    return await _stats(request, None, None)


@router.get("/v2/models/{name}/stats", **STATS)
async def model_stats(request: Request, name: ModelName) -> dict[str, Any]:
    """Statistics extension: every loaded version of a model, totals over the workers."""
    return await _stats(request, name, None)


@router.get("/v2/models/{name}/versions/{version}/stats", **STATS)
async def model_version_stats(
    request: Request, name: ModelName, version: Version
) -> dict[str, Any]:
    """Statistics extension: one model version, totals over the workers."""
    return await _stats(request, name, version)


async def _stats(request: Request, name: str | None, version: str | None) -> dict[str, Any]:
    """The versions this worker serves (404 or 503 as for inference), with the totals of
    every worker."""
    models = dataplane(request).loaded_models(name, version)
    summed = {counts.key: counts for counts in await _totals(request)}
    return statistics_json(
        [summed.get((m.name, m.version)) or VersionCounts(m.name, m.version) for m in models]
    )


async def _totals(request: Request) -> list[VersionCounts]:
    """This worker's counts, read before anything is awaited, and its siblings'."""
    local = request.app.state.metrics.snapshot(dataplane(request))
    return totals([local, *await _cluster(request).peer_snapshots()])


def _cluster(request: Request) -> Cluster:
    return request.app.state.cluster


def install(app: FastAPI) -> None:
    """Add the request-id and access-log middleware. Include ``router`` before the V2
    router, so ``GET /v2/models/stats`` wins over ``GET /v2/models/{name}``."""
    app.add_middleware(RequestLogMiddleware, enabled=app.state.settings.access_log)
