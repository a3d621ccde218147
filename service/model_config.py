"""The optional per-model ``config.json`` of the model repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

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

MAX_VERSIONS = 10_000
# The largest config.json read from the repository: a config lists at most MAX_VERSIONS
# versions (about 60 KB); every worker reads the file at every poll.
MAX_CONFIG_FILE_BYTES = 1024 * 1024


def read_config_file(path: Path) -> bytes:
    """The bytes of a config.json, at most MAX_CONFIG_FILE_BYTES of them (ModelLoadError
    past that, read no further); OSError as ``open`` raises it."""
    with path.open("rb") as file:
        raw = file.read(MAX_CONFIG_FILE_BYTES + 1)
    if len(raw) > MAX_CONFIG_FILE_BYTES:
        raise ModelLoadError(
            f"invalid {path}: Expected at most {MAX_CONFIG_FILE_BYTES} bytes. Received: a "
            "larger file"
        )
    return raw


# Strict: a value of the wrong JSON type is refused, never coerced ("8" for 8, true for 1,
# "yes" or 1 for true), since a coerced value would serve with a setting nobody wrote.
STRICT = ConfigDict(extra="forbid", strict=True)


def _whole(value: object) -> object:
    """JSON has one number type: 8.0 (as json.dumps writes a float) is the number 8."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A whole number in JSON: 8 or 8.0, never 8.5, "8" or true.
JsonInt = Annotated[int, BeforeValidator(_whole)]


class Latest(BaseModel):
    model_config = STRICT
    num_versions: JsonInt = Field(1, ge=1, le=MAX_VERSIONS)


class Specific(BaseModel):
    model_config = STRICT
    versions: list[Annotated[JsonInt, Field(ge=0)]] = Field(min_length=1, max_length=MAX_VERSIONS)


class Everything(BaseModel):
    model_config = STRICT


class VersionPolicy(BaseModel):
    """Which of a model's versions on disk are served, in Triton's form (TensorFlow
    Serving's ``model_version_policy`` has the same three): ``{"latest": {"num_versions":
    N}}`` the N highest, ``{"all": {}}`` every one (layerserve's default), or
    ``{"specific": {"versions": [1, 3]}}`` those listed that exist."""

    model_config = STRICT

    latest: Latest | None = None
    all: Everything | None = None
    specific: Specific | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionPolicy:
        chosen = [k for k in ("latest", "all", "specific") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "expected exactly one of 'latest', 'all' or 'specific'; received "
                f"{chosen or 'none'}"
            )
        return self

    def select(self, versions: list[str]) -> list[str]:
        """The versions served among ``versions`` (numbers as strings), lowest first."""
        ordered = sorted(versions, key=int)
        if self.latest is not None:
            return ordered[-self.latest.num_versions :]
        if self.specific is not None:
            wanted = set(self.specific.versions)
            return [v for v in ordered if int(v) in wanted]
        return ordered

    def describe(self) -> dict:
        return self.model_dump(exclude_none=True)


SERVE_ALL = VersionPolicy(all=Everything())


class ModelConfig(BaseModel):
    """Batching, providers, threads and the version policy of one model; unset fields
    take the server's."""

    model_config = STRICT

    max_batch_size: JsonInt | None = Field(None, ge=0, le=MAX_BATCH)
    max_queue_delay_us: JsonInt | None = Field(None, ge=0, le=MAX_QUEUE_DELAY_US)
    max_queue_size: JsonInt | None = Field(None, ge=1, le=MAX_QUEUE_SIZE)
    queue_timeout_ms: JsonInt | None = Field(None, ge=1, le=MAX_QUEUE_TIMEOUT_MS)
    providers: list[Provider] | None = Field(None, min_length=1)
    allow_cpu_fallback: bool | None = None
    instances: JsonInt | None = Field(None, ge=1, le=MAX_INSTANCES)
    intra_op_threads: JsonInt | None = Field(None, ge=0, le=MAX_THREADS)
    version_policy: VersionPolicy | None = None

    @classmethod
    def read(cls, model_dir: Path) -> ModelConfig:
        path = model_dir / "config.json"
        if not path.exists():
            return cls()
        try:
            return cls.parse(read_config_file(path), path)
        except OSError as exc:
            raise ModelLoadError(f"cannot read {path}: {exc}") from exc

    @classmethod
    def parse(cls, raw: bytes, path: Path) -> ModelConfig:
        """The config in ``raw`` (the bytes of ``path``), or ModelLoadError naming it. An
        empty file is no config, as a missing one is (the repository reads it so too)."""
        if not raw.strip():
            return cls()
        try:
            return cls.model_validate(json.loads(raw.decode("utf-8")))
        except (ValueError, ValidationError) as exc:
            raise ModelLoadError(f"invalid {path}: {exc}") from exc

    def policy(self) -> VersionPolicy:
        return self.version_policy or SERVE_ALL

    def resolved(self, settings: Settings) -> ResolvedConfig:
        instances = self.instances or settings.default_instances()
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
            version_policy=self.policy().describe(),
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
    version_policy: dict = Field(default_factory=lambda: SERVE_ALL.describe())


def _pick(value, default):  # noqa: ANN001, ANN202 - 0 and False are real values here
    return default if value is None else value
