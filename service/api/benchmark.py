"""``POST /v1/models/{m}[/versions/{v}]:benchmark``: latency and throughput of a served
model version, measured in-process (``layerserve.service.benchmarking``). An admin
endpoint (see ``layerserve.service.access``)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from layerserve.service import benchmarking
from layerserve.service.api.deps import dataplane, read_body
from layerserve.service.api.errors import invalid_request
from layerserve.service.api.inspect_schemas import json_body
from layerserve.service.api.schemas import error_responses
from layerserve.service.errors import InvalidInput
from layerserve.service.protocols import v2

# A benchmark request is a few numbers; its body is read whole and bounded.
BODY_BYTES = 64 * 1024

router = APIRouter(tags=["benchmark"])


class BenchmarkRequest(BaseModel):
    """What to measure. The total, ``duration_s`` times the number of batch sizes, may
    not pass the server's cap (``LAYERSERVE_BENCHMARK_MAX_SECONDS``, 10 s by default)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # JSON numbers for numbers: never "1" or true
        json_schema_extra={
            "examples": [
                {"batch_sizes": [1, 8, 64], "duration_s": 0.5, "warmup_runs": 5},
                {"batch_sizes": [1, 4], "duration_s": 1.0, "shapes": {"hidden_1_input": [784]}},
            ]
        },
    )

    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1],
        min_length=1,
        max_length=benchmarking.MAX_BATCH_SIZES,
        description="Distinct batch sizes, each from 1 to the model's max_batch_size "
        f"({benchmarking.UNBATCHED_MAX_BATCH} for a model served without batching).",
    )
    duration_s: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="Measuring time per batch size."
    )
    warmup_runs: int = Field(
        5,
        ge=0,
        le=benchmarking.MAX_WARMUP_RUNS,
        description="Unmeasured runs before each batch size; they stop early once they "
        "have taken duration_s.",
    )
    shapes: dict[str, list[Annotated[int, Field(ge=1)]]] = Field(
        default_factory=dict,
        description="Shape of one sample (no batch dimension) per input; required for "
        "inputs with variable dimensions beyond the batch.",
    )


class BatchResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int
    runs: int = Field(description="Measured runs (warm-up runs excluded).")
    p50_ms: float = Field(description="Median latency of one run, milliseconds.")
    p90_ms: float
    p99_ms: float
    samples_per_s: float = Field(description="batch_size * runs / duration_s.")
    duration_s: float = Field(description="Measured time, at least the duration asked for.")


class BenchmarkResponse(BaseModel):
    """One result per batch size, in the order asked, and what they were measured on."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model_name": "mlp",
                    "model_version": "1",
                    "providers": ["CPUExecutionProvider"],
                    "intra_op_threads": 4,
                    "shapes": {"hidden_1_input": [784]},
                    "results": [
                        {
                            "batch_size": 1,
                            "runs": 9713,
                            "p50_ms": 0.048,
                            "p90_ms": 0.061,
                            "p99_ms": 0.094,
                            "samples_per_s": 19425.4,
                            "duration_s": 0.5,
                        },
                        {
                            "batch_size": 64,
                            "runs": 1337,
                            "p50_ms": 0.355,
                            "p90_ms": 0.402,
                            "p99_ms": 0.583,
                            "samples_per_s": 171130.9,
                            "duration_s": 0.5,
                        },
                    ],
                }
            ]
        },
    )

    model_name: str
    model_version: str
    providers: list[str] = Field(description="onnxruntime execution providers of the session.")
    intra_op_threads: int = Field(description="onnxruntime threads per run of the session.")
    shapes: dict[str, list[int]] = Field(description="The sample shape used for each input.")
    results: list[BatchResult]


RESPONSES = error_responses(400, 401, 403, 404, 409, 413, 503)


async def _benchmark(request: Request, name: str, version: str | None) -> BenchmarkResponse:
    model = dataplane(request).model(name, version)
    body = _read_request(await read_body(request, BODY_BYTES, "a benchmark request"))
    settings = request.app.state.settings
    spec = benchmarking.BenchmarkSpec(
        body.batch_sizes, body.duration_s, body.warmup_runs, body.shapes
    )
    shapes = benchmarking.plan(
        model, spec, settings.benchmark_max_seconds, settings.max_request_bytes
    )
    # The workers of one server share its runtime directory (one process needs no name)
    runtime_dir = request.app.state.cluster.runtime_dir
    server = hashlib.sha256(str(runtime_dir).encode()).hexdigest()[:32] if runtime_dir else ""
    result = await benchmarking.run(model, spec, shapes, server, settings.benchmark_max_seconds)
    return BenchmarkResponse.model_validate(asdict(result))


def _read_request(raw: bytes) -> BenchmarkRequest:
    """The body read as every JSON endpoint reads it, whatever its Content-Type, and
    checked strictly against the schema."""
    try:
        return BenchmarkRequest.model_validate(v2.parse_json(raw))
    except ValidationError as exc:
        raise InvalidInput(invalid_request(exc.errors(), ("body",))) from None


BODY = {"openapi_extra": json_body(BenchmarkRequest)}


@router.post("/v1/models/{name}:benchmark", responses=RESPONSES, **BODY)
async def benchmark_model(request: Request, name: str) -> BenchmarkResponse:
    """Benchmark the model's latest version: per batch size, p50/p90/p99 latency of one
    run and samples per second, measured on the served onnxruntime session with random
    inputs. One benchmark runs at a time in the server, whatever its worker processes
    (409 while one runs); it runs on one thread beside inference traffic. Needs admin
    access."""
    return await _benchmark(request, name, None)


@router.post("/v1/models/{name}/versions/{version}:benchmark", responses=RESPONSES, **BODY)
async def benchmark_version(request: Request, name: str, version: str) -> BenchmarkResponse:
    """Benchmark one version of the model; otherwise as ``/v1/models/{name}:benchmark``."""
    return await _benchmark(request, name, version)
