"""The optional per-model ``config.json`` of the model repository."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from layerserve.service.errors import ModelLoadError
from layerserve.service.settings import (
    MAX_BATCH,
    MAX_INSTANCES,
    MAX_QUEUE_DELAY_US,
    MAX_QUEUE_SIZE,
    MAX_QUEUE_TIMEOUT_MS,
    MAX_THREADS,
    Provider,
    Settings,
)


class ModelConfig(BaseModel):
    """Batching, providers and threads for one model; unset fields take the server's."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int | None = Field(None, ge=0, le=MAX_BATCH)
    max_queue_delay_us: int | None = Field(None, ge=0, le=MAX_QUEUE_DELAY_US)
    max_queue_size: int | None = Field(None, ge=1, le=MAX_QUEUE_SIZE)
    queue_timeout_ms: int | None = Field(None, ge=1, le=MAX_QUEUE_TIMEOUT_MS)
    providers: list[Provider] | None = None
    allow_cpu_fallback: bool | None = None
    instances: int | None = Field(None, ge=1, le=MAX_INSTANCES)
    intra_op_threads: int | None = Field(None, ge=0, le=MAX_THREADS)

    @classmethod
    def read(cls, model_dir: Path) -> ModelConfig:
        path = model_dir / "config.json"
        if not path.exists():
            return cls()
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, ValidationError) as exc:
            raise ModelLoadError(f"invalid {path}: {exc}") from exc

    def resolved(self, settings: Settings) -> ResolvedConfig:
        instances = self.instances or settings.instances
        threads = self.intra_op_threads or settings.threads_per_run(instances)
        return ResolvedConfig(
            max_batch_size=_pick(self.max_batch_size, settings.max_batch_size),
            max_queue_delay_us=_pick(self.max_queue_delay_us, settings.max_queue_delay_us),
            max_queue_size=self.max_queue_size or settings.max_queue_size,
            queue_timeout_ms=self.queue_timeout_ms or settings.queue_timeout_ms,
            providers=list(self.providers or settings.providers),
            allow_cpu_fallback=_pick(self.allow_cpu_fallback, settings.allow_cpu_fallback),
            instances=instances,
            intra_op_threads=threads,
        )


class ResolvedConfig(BaseModel):
    max_batch_size: int
    max_queue_delay_us: int
    max_queue_size: int
    queue_timeout_ms: int
    providers: list[Provider]
    allow_cpu_fallback: bool
    instances: int
    intra_op_threads: int


def _pick(value, default):  # noqa: ANN001, ANN202 - 0 and False are real values here
    return default if value is None else value
