"""Benchmark of a served model version: the onnxruntime session that serves it, run
in-process on random inputs, one batch size after another.

Runs happen on one dedicated thread and one benchmark runs at a time in the server,
whatever its worker processes (a second one is refused with :class:`Conflict`; the
workers hold an abstract Unix socket named after the server's address while one runs),
so a benchmark adds at most one concurrent run to the inference traffic, and two never
halve each other's figures.

Batch sizes go from 1 to the model's ``max_batch_size``, or to ``UNBATCHED_MAX_BATCH``
for a model served without batching; an input whose first dimension is fixed allows only
that size. Dimensions other than the batch that the graph leaves variable must be given
per input in ``shapes`` (the shape of one sample): a guessed size would measure a
different workload than the one served.

Per batch size: at most ``warmup_runs`` unmeasured runs (stopping early once they take
``duration_s``, or their share of what the server's cap leaves beside the measuring, so
that warm-up and measuring together stay within the cap), then runs until ``duration_s``
has passed (at least one run, at most ``MAX_RUNS``). Latencies are taken between
consecutive clock readings, so they add up to the measured duration and
``samples_per_s = batch_size * runs / duration_s`` agrees with them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from layerserve.service import abstract_names
from layerserve.service.errors import Conflict, InferenceFailed, ValidationFailed
from layerserve.service.runtime import LoadedModel, TensorSpec

UNBATCHED_MAX_BATCH = 1024
MAX_BATCH_SIZES = 8
MAX_WARMUP_RUNS = 100
MAX_RUNS = 1_000_000
UNSUPPORTED_DATATYPES = ("BYTES", "BF16")

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="layerserve-benchmark")
_busy = threading.Lock()


@dataclass(frozen=True)
class BenchmarkSpec:
    """What to measure; ``shapes`` maps input names to the shape of one sample."""

    batch_sizes: Sequence[int] = (1,)
    duration_s: float = 1.0
    warmup_runs: int = 5
    shapes: dict[str, list[int]] = field(default_factory=dict)
    warmup_s: float | None = None  # the most warm-up may take per batch size


@dataclass(frozen=True)
class BatchResult:
    batch_size: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    samples_per_s: float
    duration_s: float


@dataclass(frozen=True)
class BenchmarkResult:
    model_name: str
    model_version: str
    providers: list[str]
    intra_op_threads: int
    shapes: dict[str, list[int]]
    results: list[BatchResult]


def max_batch(model: LoadedModel) -> int:
    return model.config.max_batch_size if model.batched else UNBATCHED_MAX_BATCH


def plan(
    model: LoadedModel, spec: BenchmarkSpec, max_seconds: float, max_input_bytes: int
) -> dict[str, list[int]]:
    """The sample shape of every input; :class:`ValidationFailed` listing every problem
    of ``spec`` for this model otherwise."""
    problems = _spec_problems(spec, max_seconds)
    problems += _batch_problems(model, spec.batch_sizes)
    shapes: dict[str, list[int]] = {}
    for name in spec.shapes:
        if name not in {s.name for s in model.inputs}:
            problems.append(
                f"'shapes' names an unknown input '{name}'; "
                f"the model's inputs are {[s.name for s in model.inputs]}"
            )
    for input_spec in model.inputs:
        shape, shape_problems = _sample_shape(input_spec, spec.shapes.get(input_spec.name))
        problems += shape_problems
        if shape is not None:
            shapes[input_spec.name] = shape
    if not problems and spec.batch_sizes:
        problems += _size_problems(model, shapes, max(spec.batch_sizes), max_input_bytes)
    if problems:
        raise ValidationFailed(
            f"invalid benchmark request for model '{model.name}' version {model.version}: "
            + "; ".join(problems),
            problems,
        )
    return shapes


def _spec_problems(spec: BenchmarkSpec, max_seconds: float) -> list[str]:
    problems = []
    count = len(spec.batch_sizes)
    if not 1 <= count <= MAX_BATCH_SIZES:
        problems.append(f"expected 1 to {MAX_BATCH_SIZES} batch sizes, received {count}")
    if len(set(spec.batch_sizes)) != count:
        problems.append(f"batch sizes must be distinct, received {list(spec.batch_sizes)}")
    if not (math.isfinite(spec.duration_s) and spec.duration_s > 0):
        problems.append(f"duration_s must be a positive number, received {spec.duration_s}")
    elif spec.duration_s * count > max_seconds * (1 + 1e-9):  # 0.1 x 3 is not over 0.3
        problems.append(
            f"duration_s {spec.duration_s:g} x {count} batch sizes = "
            f"{spec.duration_s * count:g} s exceeds the cap of {max_seconds:g} s per "
            "benchmark (LAYERSERVE_BENCHMARK_MAX_SECONDS); lower duration_s or the "
            "number of batch sizes"
        )
    if not 0 <= spec.warmup_runs <= MAX_WARMUP_RUNS:
        problems.append(
            f"warmup_runs must be between 0 and {MAX_WARMUP_RUNS}, received {spec.warmup_runs}"
        )
    return problems


def _batch_problems(model: LoadedModel, batch_sizes: Sequence[int]) -> list[str]:
    limit = max_batch(model)
    why = "its max_batch_size" if model.batched else "the limit for a model served unbatched"
    problems = [
        f"batch size {b} is out of range: model '{model.name}' takes 1 to {limit} ({why})"
        for b in dict.fromkeys(batch_sizes)
        if not 1 <= b <= limit
    ]
    for input_spec in model.inputs:
        fixed = input_spec.shape[0] if input_spec.shape else 1
        wrong = [b for b in batch_sizes if fixed >= 0 and b != fixed]
        if wrong:
            problems.append(
                f"input '{input_spec.name}' has the fixed shape {list(input_spec.shape)}: "
                f"the only batch size it takes is {fixed}, received {wrong}"
            )
    return problems


def _sample_shape(spec: TensorSpec, given: list[int] | None) -> tuple[list[int] | None, list[str]]:
    expected = list(spec.shape[1:])
    if spec.datatype in UNSUPPORTED_DATATYPES:
        return None, [
            f"input '{spec.name}' has datatype {spec.datatype}, which the benchmark cannot "
            "generate random data for"
        ]
    if given is None:
        if any(d < 0 for d in expected):
            example = [8 if d < 0 else d for d in expected]
            return None, [
                f"input '{spec.name}' has variable dimensions beyond the batch "
                f"(sample shape {expected}); give its sample shape in 'shapes', "
                f'e.g. {{"{spec.name}": {example}}}'
            ]
        return expected, []
    fits = len(given) == len(expected) and all(
        g >= 1 and (e < 0 or e == g) for g, e in zip(given, expected, strict=True)
    )
    if not fits:
        return None, [
            f"shapes['{spec.name}'] must fit the sample shape {expected} (-1: any size "
            f">= 1, the batch dimension left out), received {list(given)}"
        ]
    return list(given), []


def _size_problems(
    model: LoadedModel, shapes: dict[str, list[int]], batch: int, limit: int
) -> list[str]:
    needed = sum(
        batch * math.prod(shapes[s.name]) * s.dtype.itemsize
        for s in model.inputs
        if s.name in shapes
    )
    if needed <= limit:
        return []
    return [
        f"batch size {batch} needs {needed} bytes of input, over the limit of {limit} "
        "bytes for one request (LAYERSERVE_MAX_REQUEST_BYTES)"
    ]


async def run(
    model: LoadedModel,
    spec: BenchmarkSpec,
    shapes: dict[str, list[int]],
    server: str = "",
    max_seconds: float | None = None,
) -> BenchmarkResult:
    """Measure on the benchmark thread; :class:`Conflict` at once if one is running in
    this process or, given ``server`` (its address), in any worker of the server.
    ``max_seconds``: the cap warm-up and measuring share."""
    if max_seconds is not None:
        slack = max(0.0, max_seconds - spec.duration_s * len(spec.batch_sizes))
        spec = dataclasses.replace(spec, warmup_s=slack / len(spec.batch_sizes))
    if not _busy.acquire(blocking=False):
        raise Conflict(ALREADY_RUNNING)
    held = None
    try:
        held = _hold_server(server) if server else None
        future: Future[BenchmarkResult] = _executor.submit(measure, model, spec, shapes)
    except BaseException:
        if held is not None:
            held.close()
        _busy.release()
        raise

    def release(_: object) -> None:
        if held is not None:
            held.close()
        _busy.release()

    # Released when the work ends, also if the waiting request is cancelled meanwhile.
    future.add_done_callback(release)
    return await asyncio.wrap_future(future)


ALREADY_RUNNING = "a benchmark is already running; one runs at a time, retry when it has finished"


def _hold_server(server: str) -> socket.socket | None:
    """The server-wide claim, held while a benchmark runs (None where there is no
    abstract namespace: one benchmark per process there)."""
    try:
        return abstract_names.hold(f"layerserve-benchmark-{server}")
    except abstract_names.NameTaken:
        raise Conflict(ALREADY_RUNNING) from None


def measure(
    model: LoadedModel, spec: BenchmarkSpec, shapes: dict[str, list[int]]
) -> BenchmarkResult:
    """The blocking measurement (``shapes`` from :func:`plan`)."""
    rng = np.random.default_rng(0)
    results = []
    for batch in spec.batch_sizes:
        feeds = {
            s.name: random_tensor(rng, s, [batch, *shapes[s.name]] if s.shape else [])
            for s in model.inputs
        }
        try:
            results.append(_measure_batch(model, feeds, batch, spec))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises many kinds
            raise InferenceFailed(
                f"model '{model.name}' failed to run at batch size {batch}: {exc}"
            ) from exc
    return BenchmarkResult(
        model.name,
        model.version,
        list(model.providers),
        model.config.intra_op_threads,
        shapes,
        results,
    )


def _measure_batch(
    model: LoadedModel, feeds: dict[str, np.ndarray], batch: int, spec: BenchmarkSpec
) -> BatchResult:
    run_session = model.session.run
    clock = time.perf_counter
    warm_for = spec.duration_s if spec.warmup_s is None else min(spec.duration_s, spec.warmup_s)
    warm_until = clock() + warm_for
    for _ in range(spec.warmup_runs):
        run_session(None, feeds)
        if clock() >= warm_until:
            break
    latencies: list[float] = []
    start = now = clock()
    while True:
        before = now
        run_session(None, feeds)
        now = clock()
        latencies.append(now - before)
        if now - start >= spec.duration_s or len(latencies) >= MAX_RUNS:
            break
    elapsed = max(now - start, 1e-9)
    p50, p90, p99 = np.percentile(np.asarray(latencies) * 1000.0, [50, 90, 99])
    return BatchResult(
        batch_size=batch,
        runs=len(latencies),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        samples_per_s=batch * len(latencies) / elapsed,
        duration_s=elapsed,
    )


def random_tensor(rng: np.random.Generator, spec: TensorSpec, shape: list[int]) -> np.ndarray:
    """Random data of ``spec``'s dtype: normal floats, 0/1 integers (valid indices for any
    embedding), random booleans."""
    dtype = spec.dtype
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, 2, size=shape).astype(dtype)
