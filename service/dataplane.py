"""Protocol-neutral request handling: the repository, one batcher per model version,
readiness and draining. The HTTP layers only translate to and from this."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from layerserve import __version__
from layerserve.service.batcher import DynamicBatcher, Observer
from layerserve.service.demo import ensure_demo_repository
from layerserve.service.errors import ModelNotReady
from layerserve.service.repository import ModelRepository
from layerserve.service.runtime import LoadedModel
from layerserve.service.settings import Settings

log = logging.getLogger("layerserve.service")
SERVER_NAME = "layerserve"
EXTENSIONS = [
    "binary_tensor_data",
    "model_repository",
    "statistics",
    "model_configuration",
    "parameters",
    "schedule_policy",
]


class DataPlane:
    def __init__(self, settings: Settings, observer_factory: Any = None) -> None:
        self.settings = settings
        self.repository = ModelRepository(settings.model_repository, settings)
        self.started = False
        self.draining = False
        self._batchers: dict[tuple[str, str, int], DynamicBatcher] = {}
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ort-run")
        self._observer_factory = observer_factory

    # ---- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.settings.demo:
            await loop.run_in_executor(None, ensure_demo_repository, self.settings.model_repository)
        await loop.run_in_executor(None, self.repository.load_all)
        self.started = True

    async def stop(self) -> None:
        self.draining = True
        await asyncio.gather(*(b.close() for b in list(self._batchers.values())))
        self._executor.shutdown(wait=True)

    @property
    def live(self) -> bool:
        return True

    @property
    def ready(self) -> bool:
        return self.started and not self.draining and self.repository.all_ready

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}

    # ---- models -------------------------------------------------------------------
    def model(self, name: str, version: str | None = None) -> LoadedModel:
        return self.repository.get(name, version)

    def batchers(self) -> list[DynamicBatcher]:
        return list(self._batchers.values())

    def _batcher(self, model: LoadedModel) -> DynamicBatcher:
        key = (model.name, model.version, id(model))
        batcher = self._batchers.get(key)
        if batcher is None:
            observer: Observer | None = None
            if self._observer_factory is not None:
                observer = self._observer_factory(model)
            batcher = DynamicBatcher(model, self._executor, observer)
            self._batchers[key] = batcher
        return batcher

    async def load(self, name: str) -> None:
        """(Re)load a model off the event loop; the old versions drain afterwards."""
        old = [k for k in self._batchers if k[0] == name]
        await asyncio.get_running_loop().run_in_executor(None, self.repository.load, name)
        await self._retire(old)

    async def unload(self, name: str) -> None:
        old = [k for k in self._batchers if k[0] == name]
        self.repository.unload(name)
        await self._retire(old)

    async def _retire(self, keys: list[tuple[str, str, int]]) -> None:
        batchers = [self._batchers.pop(k) for k in keys if k in self._batchers]
        await asyncio.gather(*(b.close() for b in batchers))

    # ---- inference ----------------------------------------------------------------
    async def infer(
        self,
        name: str,
        version: str | None,
        inputs: dict[str, np.ndarray],
        timeout_us: int | None = None,
    ) -> tuple[LoadedModel, dict[str, np.ndarray]]:
        """Validate, queue, wait; returns the model version and all its outputs."""
        if not self.started:
            raise ModelNotReady("the server is still loading its models")
        model = self.model(name, version)
        rows = model.validate(inputs)
        outputs = await self._batcher(model).submit(inputs, rows, timeout_us)
        return model, outputs
