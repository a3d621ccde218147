"""The FastAPI application: ``create_app(settings)``; models load in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from layerserve import __version__
from layerserve.service.api import (
    access,
    benchmark,
    documentation,
    errors,
    inspect,
    models,
    observability,
    schemas,
    tfserving,
    v2,
)
from layerserve.service.api.head import HeadAsGet
from layerserve.service.cluster import Cluster
from layerserve.service.dataplane import DataPlane
from layerserve.service.metrics import ServiceMetrics
from layerserve.service.model_admin import ModelAdmin
from layerserve.service.settings import Settings
from layerserve.service.watcher import RepositoryWatcher


def freeze_heap() -> None:
    """Move the loaded models' objects out of the garbage collector's sight: without it,
    full collections of the long-lived heap paused requests for 45-73 ms under load."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, cluster: Cluster | None = None) -> FastAPI:
    """The application; ``cluster`` when it is one worker of several."""
    settings = settings or Settings()
    cluster = cluster or Cluster()
    metrics = ServiceMetrics()
    plane = DataPlane(settings, observer_factory=metrics.observer_for, joining=cluster.joining)
    admin = ModelAdmin(plane, settings, cluster)
    watcher = RepositoryWatcher(admin, settings.repository_poll_seconds)

    async def snapshot(_: None) -> dict[str, Any]:
        return metrics.snapshot(plane)

    cluster.on("snapshot", snapshot)
    cluster.on("converge", watcher.sibling_changed)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        grpc = app.state.grpc
        if grpc is not None and cluster.runtime_dir is None:
            await grpc.start()  # one process: live over gRPC while the models load
        await plane.start(read_only=admin.read_only)
        admin.start()  # the converters' forkserver, in the background
        await cluster.start()
        if cluster.runtime_dir is not None:
            # changes siblings made while this worker loaded, before it could hear them
            await watcher.converge_all()
        watcher.start()
        freeze_heap()
        for started in app.state.on_started:
            started()
        if grpc is not None:
            await grpc.start()  # a worker listens once its models are loaded
        yield
        if grpc is not None:
            await grpc.stop()  # begun with the HTTP server's (DrainingServer.shutdown)
        await watcher.stop()
        await cluster.close()
        await admin.stop_looking()
        await asyncio.get_running_loop().run_in_executor(None, admin.close)
        await plane.stop()

    app = FastAPI(
        title="layerserve",
        version=__version__,
        lifespan=lifespan,
        description="Keras-style models served with onnxruntime over the Open "
        "Inference Protocol (V2) and TensorFlow Serving REST. The same models answer the "
        "Open Inference Protocol over gRPC (`inference.GRPCInferenceService`, with the "
        "`grpc.health.v1` health service and server reflection) on `--grpc-port` "
        "(default 8081), which this HTTP document does not describe.",
        openapi_tags=schemas.OPENAPI_TAGS,
        generate_unique_id_function=documentation.operation_id,
        docs_url=None,  # documentation.install serves both pages without a CDN
        redoc_url=None,
        # a path with a trailing slash is no route (404), not a redirect whose Location
        # would be built from the client's Host header
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.dataplane = plane
    app.state.model_admin = admin
    app.state.metrics = metrics
    app.state.cluster = cluster
    app.state.watcher = watcher
    app.state.on_started = []  # called once the models are loaded (a worker listens then)
    errors.install(app)
    # Observability first: GET /v2/models/stats must win over GET /v2/models/{name}.
    app.include_router(observability.router)
    app.include_router(v2.router)
    # The ":mask", ":validate" and ":benchmark" routes must win over TF Serving's
    # ":{method}", which must win over the upload route's POST /v1/models/{name}.
    app.include_router(inspect.router)
    app.include_router(benchmark.router)
    app.include_router(tfserving.router)
    app.include_router(models.router)
    documentation.install(app)
    app.router.routes[:0] = [*v2.FAST_ROUTES, *tfserving.FAST_ROUTES]
    # Inside access control and the request log (which name the HEAD and see the client's
    # address as access control finds it), outside routing (which sees the GET it stands
    # for).
    app.add_middleware(HeadAsGet)
    access.install(app)
    app.state.grpc = None
    if settings.grpc_port:
        from layerserve.service.grpc.server import GrpcServer

        worker = cluster.runtime_dir is not None
        app.state.grpc = GrpcServer(app, app.state.access_policy, worker=worker)
    # Added last, so it runs first: every response, a 401/403 from access control
    # included, carries X-Request-ID and gets its log line.
    observability.install(app)
    return app
