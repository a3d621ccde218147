"""Protocol-neutral request handling: the repository, one batcher per model version,
readiness and draining. The HTTP layers only translate to and from this."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from layerserve import __version__
from layerserve.service.batcher import Admission, BatchStats, DynamicBatcher, Observer
from layerserve.service.decoding import BodyDecoder
from layerserve.service.demo import ensure_demo_repository
from layerserve.service.errors import ModelNotReady, ServiceError
from layerserve.service.repository import ModelRepository
from layerserve.service.request_context import mark_accounted, request_elapsed_s
from layerserve.service.runtime import LoadedModel
from layerserve.service.settings import Settings
from layerserve.service.storage import remove_stale_staging

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
    def __init__(
        self, settings: Settings, observer_factory: Any = None, joining: bool = False
    ) -> None:
        self.settings = settings
        self.repository = ModelRepository(settings.model_repository, settings, joining)
        self.started = False
        self.draining = False
        self._batchers: dict[tuple[str, str, int], DynamicBatcher] = {}
        # Statistics per (model, version), kept across reloads so counters never go back.
        self._stats: dict[tuple[str, str], BatchStats] = {}
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ort-run")
        self._observer_factory = observer_factory
        self.decoder = BodyDecoder()

    # ---- lifecycle ----------------------------------------------------------------
    async def start(self, read_only: bool = False) -> None:
        loop = asyncio.get_running_loop()
        root = self.settings.model_repository
        if self.settings.demo and read_only:
            log.error("no demo models: the model repository %s is read-only", root)
        elif self.settings.demo:
            await loop.run_in_executor(None, ensure_demo_repository, root)
        if not read_only:
            await loop.run_in_executor(None, remove_stale_staging, root)
        await loop.run_in_executor(None, self.repository.load_all)
        self.started = True

    async def stop(self) -> None:
        self.draining = True
        await asyncio.gather(*(b.close() for b in list(self._batchers.values())))
        self._executor.shutdown(wait=True)
        self.decoder.close()

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

    def loaded_models(
        self, name: str | None = None, version: str | None = None
    ) -> list[LoadedModel]:
        """Every loaded version of every model, of ``name``, or the one version addressed
        (ModelNotFound / ModelNotReady as for inference)."""
        if name is not None:
            model = self.model(name, version)
            if version:
                return [model]
        loaded = []
        for state in self.repository.states():
            versions = state.versions  # a reload swaps the dict; read one snapshot
            if name is None or state.name == name:
                loaded.extend(versions[v] for v in sorted(versions, key=int))
        return loaded

    def statistics(self, model: LoadedModel) -> BatchStats:
        """The cumulative statistics of a model version (zero before its first request)."""
        return self._stats.setdefault((model.name, model.version), BatchStats())

    def pending_requests(self, model: LoadedModel) -> int:
        """Requests of this model version queued but not yet executing."""
        key = (model.name, model.version)
        return sum(b.pending for k, b in list(self._batchers.items()) if k[:2] == key)

    def count_failure(self, name: str, version: str | None, reason: str = "OTHER") -> bool:
        """Count the request in progress, failed before reaching the batcher (e.g. invalid
        input), with the time since the server began it; False when no such model version
        is loaded."""
        try:
            model = self.model(name, version)
        except ServiceError:
            return False
        elapsed_ns = int(request_elapsed_s() * 1e9)
        self.statistics(model).record_failure(reason, max(elapsed_ns, 0))
        return True

    def _batcher(self, model: LoadedModel) -> DynamicBatcher:
        key = (model.name, model.version, id(model))
        batcher = self._batchers.get(key)
        if batcher is None:
            observer: Observer | None = None
            if self._observer_factory is not None:
                observer = self._observer_factory(model)
            batcher = DynamicBatcher(model, self._executor, observer, self.statistics(model))
            self._batchers[key] = batcher
        return batcher

    async def load(self, name: str) -> None:
        """(Re)load a model off the event loop; the old versions drain afterwards, also
        those a partly failed load replaced."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.repository.load, name)
        finally:
            await self._retire_stale(name)
        gc.collect()
        gc.freeze()  # as at start-up: keep the new session's objects out of full collections

    async def converge(
        self,
        name: str,
        settle_seconds: float = 0.0,
        force: bool = False,
        trusted: frozenset[str] = frozenset(),
    ) -> None:
        """Serve what the repository holds for ``name`` now (see
        ``ModelRepository.converge``); versions replaced or gone drain, then close."""
        converge = functools.partial(self.repository.converge, name, force, settle_seconds, trusted)
        await asyncio.get_running_loop().run_in_executor(None, converge)
        await self._retire_stale(name)

    async def unload(self, name: str) -> None:
        self.repository.unload(name)
        await self._retire_stale(name)

    async def unload_version(self, name: str, version: str) -> None:
        """Stop serving one version; requests queued or running on it finish first."""
        self.repository.unload_version(name, version)
        await self._retire_stale(name)

    async def forget(self, name: str) -> None:
        """Stop serving every version of ``name`` (unknown afterwards, not unavailable);
        requests queued or running on it finish first."""
        self.repository.forget(name)
        await self._retire_stale(name)

    async def _retire_stale(self, name: str) -> None:
        """Close, once their work is done, the batchers of ``name`` whose model version
        is no longer the one served (replaced, unloaded or gone). A batcher holds its
        model, so the id in its key cannot be reused while it exists."""
        await self._retire([k for k in self._batchers if k[0] == name and not self._serving(k)])

    def _serving(self, key: tuple[str, str, int]) -> bool:
        name, version, identity = key
        try:
            return id(self.repository.get(name, version)) == identity
        except ServiceError:
            return False

    async def _retire(self, keys: list[tuple[str, str, int]]) -> None:
        batchers = [self._batchers.pop(k) for k in keys if k in self._batchers]
        await asyncio.gather(*(b.close() for b in batchers))

    # ---- inference ----------------------------------------------------------------
    def try_admit(self, model: LoadedModel) -> Admission | None:
        """Admit a request for ``model`` (None when its queue and runs are full)."""
        return self._batcher(model).try_admit()

    def refuse(self, model: LoadedModel) -> ServiceError:
        """The counted 503 of a request refused because the model is full."""
        mark_accounted()
        return self._batcher(model).refuse(request_elapsed_s())

    def admit(self, model: LoadedModel) -> Admission:
        """Admit a request for ``model`` or refuse it (503) before its body is read or
        decoded: under overload a refusal must cost next to nothing, so that the time goes
        to the requests that were admitted. Release the admission once it is answered."""
        admission = self.try_admit(model)
        if admission is None:
            raise self.refuse(model)
        return admission

    async def infer(
        self,
        model: LoadedModel,
        inputs: dict[str, np.ndarray],
        timeout_us: int | None = None,
        admission: Admission | None = None,
    ) -> dict[str, np.ndarray]:
        """Validate, queue and wait on ``model`` (from :meth:`model`); all its outputs.
        ``admission`` (from :meth:`admit`): the request is queued even if the queue is full."""
        if not self.started:
            raise ModelNotReady("the server is still loading its models")
        rows = model.validate(inputs)
        mark_accounted()  # from here on the batcher counts the outcome
        batcher = self._batcher(model)
        try:
            return await batcher.submit(inputs, rows, timeout_us, admission)
        finally:
            if not self.repository.serves(model):
                await self._retire_straggler(model, batcher)

    async def _retire_straggler(self, model: LoadedModel, batcher: DynamicBatcher) -> None:
        """A request that found its model just before a reload, unload or delete made a
        batcher after the old ones were retired: close it once its work is done, so it
        does not keep the old session alive."""
        key = (model.name, model.version, id(model))
        if self._batchers.get(key) is batcher:
            del self._batchers[key]
            await batcher.close()  # once the other stragglers' work is done
