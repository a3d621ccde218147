"""Service settings: every option also comes from ``LAYERSERVE_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Provider = Literal["cpu", "cuda"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAYERSERVE_", protected_namespaces=())

    model_repository: Path = Path("model_repository")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    demo: bool = Field(False, description="Fill an empty repository with the demo models.")
    providers: list[Provider] = Field(default_factory=lambda: ["cpu"])
    allow_cpu_fallback: bool = Field(
        False, description="Serve on CPU when CUDA was asked for but is unavailable."
    )
    instances: int = Field(2, ge=1, description="Concurrent runs per model version.")
    intra_op_threads: int = Field(
        0, ge=0, description="onnxruntime threads per run; 0: cores divided by instances."
    )
    max_batch_size: int = Field(64, ge=0, description="Rows per merged run; 0: no merging.")
    max_queue_delay_us: int = Field(0, ge=0)
    max_queue_size: int = Field(1024, ge=1)
    queue_timeout_ms: int = Field(30_000, ge=1)
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    drain_seconds: float = Field(1.0, ge=0, description="Serve on after SIGTERM, not ready.")
    exit_timeout_seconds: float = Field(25.0, ge=0)
    log_level: str = "info"
    access_log: bool = False

    def threads_per_run(self, instances: int) -> int:
        if self.intra_op_threads:
            return self.intra_op_threads
        return max(1, (os.cpu_count() or 1) // instances)
