"""Service settings: every option also comes from ``LAYERSERVE_*`` environment variables."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Provider = Literal["cpu", "cuda"]
# Upper bounds of the batching and thread options, here and in a model's config.json: past
# them a value is a mistake (5,000 threads per session, a queue delay of hours).
MAX_BATCH = 1 << 20
MAX_QUEUE_DELAY_US = 1_000_000
MAX_QUEUE_SIZE = 1_000_000
MAX_QUEUE_TIMEOUT_MS = 3_600_000
MAX_INSTANCES = 64
MAX_THREADS = 256
MAX_WORKERS = 256
DEFAULT_INSTANCES = 2


TOKEN_RULE = (
    "a non-empty token of visible ASCII characters (no spaces, no surrounding whitespace "
    "or newline)"
)


def is_token(text: str) -> bool:
    """Whether a configured token is one a client can send in ``Authorization: Bearer``:
    visible ASCII (RFC 6750's token characters and more; gRPC metadata carries ASCII
    only), so that it matches alike over HTTP and gRPC. An empty one, or one with a stray
    newline from a secret file, could never match a header, or would match an empty one."""
    return bool(text) and all("!" <= c <= "~" for c in text)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAYERSERVE_", protected_namespaces=())

    model_repository: Path = Field(
        Path("model_repository"),
        description="The model repository: <repo>/<model>/<version>/model.onnx.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on.")
    grpc_port: int = Field(
        8081,
        ge=0,
        le=65535,
        description="Port of the Open Inference Protocol's gRPC service "
        "(inference.GRPCInferenceService, with grpc.health.v1 and reflection); 0: no gRPC.",
    )
    grpc_max_message_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        le=2**31 - 1,
        description="Largest gRPC message received or sent, in bytes; past it a call is "
        "answered RESOURCE_EXHAUSTED.",
    )
    grpc_server: Literal["http2", "grpcio"] = Field(
        "http2",
        description="What serves the gRPC port: http2, layerserve's own HTTP/2 server (a "
        "call costs a fraction of grpcio's), or grpcio, gRPC's asyncio server.",
    )
    demo: bool = Field(False, description="Fill an empty repository with the demo models.")
    providers: list[Provider] = Field(
        default_factory=lambda: ["cpu"],
        description="onnxruntime execution providers, in order of preference: cpu, or cuda "
        "for the CUDA execution provider.",
    )
    allow_cpu_fallback: bool = Field(
        False, description="Serve on CPU when CUDA was asked for but is unavailable."
    )
    workers: int = Field(
        0,
        ge=0,
        le=MAX_WORKERS,
        description="Worker processes sharing the port, each with its own onnxruntime "
        "sessions and batchers; 0: one per CPU this process may use (cgroup quota and "
        "affinity); 1: a single process, no supervisor.",
    )
    repository_poll_seconds: float = Field(
        2.0,
        ge=0,
        le=86_400,
        description="Every this many seconds each worker reads the model repository and "
        "converges to it (new, removed and replaced versions, config.json edits); 0: only "
        "on an explicit load and on changes made through this server.",
    )
    read_only: bool = Field(
        False,
        description="Serve the repository as it is on disk: upload, delete and unload "
        "answer 403 (also set automatically when the repository cannot be written).",
    )
    instances: int | None = Field(
        None,
        ge=1,
        le=MAX_INSTANCES,
        description="Concurrent runs per model version; unset: 2, or 1 when a worker has "
        "a single CPU.",
    )
    intra_op_threads: int = Field(
        0,
        ge=0,
        le=MAX_THREADS,
        description="onnxruntime threads per run; 0: a worker's CPUs divided by instances.",
    )
    max_batch_size: int = Field(
        64, ge=0, le=MAX_BATCH, description="Rows per merged run; 0: no merging."
    )
    max_queue_delay_us: int = Field(
        0,
        ge=0,
        le=MAX_QUEUE_DELAY_US,
        description="Microseconds to wait for more requests to merge into one run "
        "(0: merge only what is queued).",
    )
    max_queue_size: int = Field(
        1024,
        ge=1,
        le=MAX_QUEUE_SIZE,
        description="Requests queued per model version: while it is reached, or the model "
        "has as many requests as it can queue and run at once, a request is answered 503 "
        "from its head. A request admitted from its head is queued once read, even past it.",
    )
    queue_timeout_ms: int = Field(
        30_000,
        ge=1,
        le=MAX_QUEUE_TIMEOUT_MS,
        description="Milliseconds a request may wait in the queue; then it gets 504.",
    )
    max_request_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest request body in bytes (413 past it); a model whose inputs have "
        "fixed sizes gets the lower limit its largest valid request needs.",
    )
    drain_seconds: float = Field(
        1.0, ge=0, le=3600, description="Serve on after SIGTERM, not ready."
    )
    exit_timeout_seconds: float = Field(
        25.0,
        ge=0,
        le=3600,
        description="After SIGTERM and the drain, seconds to finish the requests in flight.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token for upload, delete, load/unload, download, export and "
        "benchmark; unset: those answer loopback clients only.",
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token for inference and model metadata; unset: open."
    )
    max_upload_bytes: int = Field(
        1024 * 1024 * 1024, ge=1024, description="Largest model file accepted by an upload."
    )
    max_unpacked_bytes: int = Field(
        4 * 1024 * 1024 * 1024,
        ge=1024,
        description="Largest total size an uploaded archive (.keras, .zip) may expand to.",
    )
    max_config_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest JSON config in an upload (.keras config.json/metadata.json, a "
        "layerserve zip's JSON, an .h5 model_config), checked before it is inflated. The "
        "largest keras.applications config (NASNetLarge) is 1.0 MB.",
    )
    conversion_memory_bytes: int = Field(
        4 * 1024 * 1024 * 1024,
        ge=256 * 1024 * 1024,
        le=1024 * 1024 * 1024 * 1024,
        description="Address space (RLIMIT_AS) of the child process converting an upload; "
        "past it the upload is refused with 413. It counts reserved as well as used memory: "
        "about 0.4 GiB plus seven times the model's weights (0.5 GB of weights fit 4 GiB).",
    )
    conversion_timeout_seconds: float = Field(
        300.0,
        ge=0.1,
        le=86_400.0,
        description="Wall-clock limit of converting one upload; past it the child process "
        "is killed and the upload refused.",
    )
    benchmark_max_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Cap on a benchmark request's measuring time, all batch sizes.",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        "info", description="Logging level: critical, error, warning, info, debug or trace."
    )
    access_log: bool = Field(False, description="One log line per request (key=value or JSON).")
    direct_lane: bool = Field(
        True,
        description="Answer plain V2 infer and TF Serving :predict requests on the "
        "connection, past the ASGI application (same responses, a fifth less CPU per "
        "request); false: every request goes through the application.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text: human-readable lines; json: one JSON object per line."
    )
    admin_token_file: Path | None = Field(
        None,
        description="Read the admin token from this file (e.g. a Kubernetes secret); one "
        "trailing newline is dropped. Not together with LAYERSERVE_ADMIN_TOKEN.",
    )
    api_token_file: Path | None = Field(
        None, description="Read the API token from this file, as admin_token_file."
    )
    keep_alive_seconds: float = Field(
        5.0, gt=0, le=3600, description="An idle keep-alive connection is closed after this."
    )
    grpc_max_connection_idle_seconds: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="A gRPC connection with no call open for this long is sent GOAWAY and "
        "closed (gRPC's MAX_CONNECTION_IDLE); clients open a new one for their next call.",
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=3600, description="The request line and headers must arrive within this."
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="Longest pause between two pieces of a request body."
    )
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, le=16 * 1024 * 1024, description="Largest request line + headers."
    )
    max_header_count: int = Field(100, ge=8, le=10_000, description="Most header fields.")
    max_connections: int = Field(
        2048,
        ge=1,
        le=1_000_000,
        description="Open connections on each port; one more is answered 503 (gRPC: closed).",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("model_repository", mode="before")
    @classmethod
    def _a_repository_is_named(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("the model repository is empty: name its directory")
        try:
            a_file = value is not None and Path(value).exists() and not Path(value).is_dir()
        except OSError as exc:  # a parent that cannot be searched
            raise ValueError(f"cannot look at {str(value)!r}: {exc.strerror}") from exc
        if a_file:
            raise ValueError(f"{str(value)!r} is a file: the model repository is a directory")
        return value

    @model_validator(mode="after")
    def _ports_differ(self) -> Settings:
        if self.grpc_port and self.grpc_port == self.port:
            raise ValueError(
                f"port and grpc_port are both {self.port}: HTTP and gRPC need ports of their "
                "own (or grpc_port 0: no gRPC)"
            )
        return self

    @model_validator(mode="after")
    def _demo_needs_writes(self) -> Settings:
        if self.demo and self.read_only:
            raise ValueError("demo writes the demo models into the repository: not with read_only")
        return self

    @model_validator(mode="after")
    def _read_token_files(self) -> Settings:
        pairs = (("admin_token", "admin_token_file"), ("api_token", "api_token_file"))
        for token_field, file_field in pairs:
            path = getattr(self, file_field)
            if path is None:
                continue
            if getattr(self, token_field) is not None:
                raise ValueError(
                    f"set LAYERSERVE_{token_field.upper()} or LAYERSERVE_{file_field.upper()}, "
                    "not both"
                )
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read {file_field} {str(path)!r}: {exc}") from exc
            token = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
            setattr(self, token_field, SecretStr(token))
        return self

    @model_validator(mode="after")
    def _tokens_are_bearer_tokens(self) -> Settings:
        """Each token one a client can send (:func:`is_token`), named by the
        variable or the file it came from."""
        for token_field in ("admin_token", "api_token"):
            secret = getattr(self, token_field)
            if secret is None or is_token(secret.get_secret_value()):
                continue
            path = getattr(self, f"{token_field}_file")
            source = f"LAYERSERVE_{token_field.upper()}" + (
                f"_FILE ({str(path)!r}) must hold" if path is not None else " must be"
            )
            raise ValueError(f"{source} {TOKEN_RULE}; unset it to disable the check")
        return self

    def worker_count(self) -> int:
        """Worker processes: the setting, or one per available CPU."""
        return self.workers or available_cpus()

    def cpus_per_worker(self) -> int:
        """A worker's share of the CPUs. ``serve`` resolves ``workers`` before building
        a worker; a server built in-process with ``workers`` 0 is one process."""
        return max(1, available_cpus() // max(1, self.workers))

    def default_instances(self) -> int:
        """Concurrent runs per model version when neither the server nor the model's
        config sets them: 2, or 1 where a worker has one CPU, so that workers x
        instances x threads never exceeds the cores."""
        return self.instances or min(DEFAULT_INSTANCES, self.cpus_per_worker())

    def threads_per_run(self, instances: int) -> int:
        if self.intra_op_threads:
            return self.intra_op_threads
        return max(1, self.cpus_per_worker() // instances)


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may use: the affinity mask, capped by a cgroup CPU quota (a
    container's ``--cpus``), which ``os.cpu_count()`` ignores."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_cpu_quota(root: Path) -> float | None:
    """CPUs allowed by cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``; None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 else quota_us / period_us
