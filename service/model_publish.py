"""Publishing an upload's staged version: the checks that would refuse it, made before
anything is written (so that no client is ever served a version or a config that is then
taken back), the write of ``config.json`` and the rename into place, and their undoing."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from layerserve.service import storage
from layerserve.service.dataplane import DataPlane
from layerserve.service.errors import Conflict, ModelLoadError, ModelRejected
from layerserve.service.model_config import ModelConfig
from layerserve.service.model_versions import (
    config_bytes,
    describe,
    merge_config,
    read_config,
)
from layerserve.service.repository import MODEL_FILE
from layerserve.service.repository_scan import SETTLE_SECONDS
from layerserve.service.runtime import LoadedModel
from layerserve.service.settings import Settings

T = TypeVar("T")


class Publishing:
    """What :class:`~layerserve.service.model_admin.ModelAdmin` publishes uploads with."""

    plane: DataPlane
    settings: Settings
    root: Path

    async def _in_pool(self, function: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    async def _publish(
        self,
        name: str,
        staged: Path,
        config: ModelConfig | None,
        record: dict[str, Any],
        loaded: LoadedModel,
    ) -> dict[str, Any]:
        """Publish the staged version (under the model's locks) and serve it. What would
        refuse it is checked before anything is written, so that no client is ever served
        a version, or a config, that is then taken back; the checks after publishing catch
        what changed on disk meanwhile."""
        model_dir = self.root / name
        if config is not None:  # over config.json as it is now, under the model's locks
            config = await asyncio.to_thread(merge_config, model_dir, config)
        others = [m.version for m in self.plane.loaded_models() if m.name == name]
        await asyncio.to_thread(self._check_policy_selects_next, name, config)
        if config is not None and others:
            await self._check_config_loads(name, config, others)
        created, old_config, version = await asyncio.to_thread(
            self._write_and_rename, name, staged, config
        )
        model = dataclasses.replace(loaded, version=version, path=model_dir / version / MODEL_FILE)
        await asyncio.to_thread(self.plane.repository.add_version, model)
        if config is not None and others:
            try:  # the model's config changed: its other versions take it too
                await self.plane.load(name)
            except ModelLoadError as exc:
                await self.plane.unload_version(name, version)
                await asyncio.to_thread(self._undo, name, version, created, config, old_config)
                await self.plane.converge(name, SETTLE_SECONDS)
                raise _config_refused(others, exc) from exc
        else:  # the version policy may retire older versions; versions being copied in
            # by hand wait, as in a poll
            await self.plane.converge(name, SETTLE_SECONDS, trusted=frozenset({version}))
        if version not in self.plane.repository.served_versions(name):
            await asyncio.to_thread(self._undo, name, version, created, config, old_config)
            await self.plane.converge(name, SETTLE_SECONDS)
            raise _policy_refused(name, version)
        model = self.plane.model(name, version)
        return describe(model, record)

    def _check_policy_selects_next(self, name: str, config: ModelConfig | None) -> None:
        """Refuse an upload the version policy would not serve (``specific`` versions
        without the number it would get), before it is written."""
        model_dir = self.root / name
        policy = (config if config is not None else read_config(model_dir)).policy()
        version = str(storage.next_version(self.root, name))
        on_disk = [str(n) for n in storage.numeric_entries(model_dir)]
        if version not in policy.select([*on_disk, version]):
            raise _policy_refused(name, version)

    async def _check_config_loads(self, name: str, config: ModelConfig, others: list[str]) -> None:
        """Refuse a config that the model's served versions do not load with (its batch
        size or providers, say), before it is written."""
        resolved = config.resolved(self.settings)
        for version in others:
            path = self.root / name / version / MODEL_FILE
            try:
                await self._in_pool(LoadedModel.load, name, version, path, resolved)
            except ModelLoadError as exc:
                raise _config_refused(others, exc) from exc

    def _write_and_rename(
        self, name: str, staged: Path, config: ModelConfig | None
    ) -> tuple[bool, bytes | None, str]:
        model_dir, created = storage.ensure_model_dir(self.root, name)
        config_path = model_dir / storage.CONFIG_FILE
        old_config = storage.read_optional(config_path)
        try:
            if config is not None:
                storage.write_atomic(config_path, config_bytes(config))
            storage.clear_unloaded(self.root, name)  # a new version serves
            version = storage.publish_version(self.root, name, staged)
        except BaseException:
            self._undo(name, None, created, config, old_config)
            raise
        return created, old_config, version

    def _undo(
        self,
        name: str,
        version: str | None,
        created: bool,
        config: ModelConfig | None,
        old_config: bytes | None,
    ) -> None:
        model_dir = self.root / name
        if created:
            storage.remove_dir(self.root, model_dir)
            return
        if version is not None:
            storage.remove_dir(self.root, model_dir / version)
        if config is not None:
            storage.restore_file(model_dir / storage.CONFIG_FILE, old_config)


def _policy_refused(name: str, version: str) -> Conflict:
    return Conflict(
        f"the version policy of model '{name}' does not select the new version "
        f"{version}; nothing was stored: change version_policy in its config.json"
    )


def _config_refused(others: list[str], exc: ModelLoadError) -> ModelRejected:
    return ModelRejected(
        f"the new config does not load the model's other versions {others}; "
        f"nothing was stored: {exc}"
    )
