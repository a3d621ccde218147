"""The FastAPI application: ``create_app(settings)``; models load in the lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from layerserve import __version__
from layerserve.service.api import errors, v2
from layerserve.service.dataplane import DataPlane
from layerserve.service.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    plane = DataPlane(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        yield
        await plane.stop()

    app = FastAPI(
        title="layerserve",
        version=__version__,
        lifespan=lifespan,
        description="Keras-style models served with onnxruntime over the Open "
        "Inference Protocol (V2) and TensorFlow Serving REST.",
    )
    app.state.settings = settings
    app.state.dataplane = plane
    errors.install(app)
    app.include_router(v2.router)
    return app
