"""``layerserve bench``: from a served model's metadata to one pre-encoded request of
random inputs, each concurrency level through the load generator, and the results."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from layerserve import client, loadgen
from layerserve.errors import ConfigError, ShapeError


@dataclass(frozen=True)
class Plan:
    """What every request of a benchmark sends, and where."""

    url: str
    model: str
    version: str | None
    protocol: str
    rows: int
    host: str
    port: int
    payload: bytes

    @property
    def title(self) -> str:
        version = f" version {self.version}" if self.version else ""
        return f"{self.model}{version}, {self.protocol}, batch {self.rows}, {self.url}"


@dataclass
class Outcome:
    runs: list[loadgen.Run]
    first_error: tuple[int, str] | None  # status and message of the first failed request

    @property
    def all_failed(self) -> bool:
        return all(run.statuses.get(200, 0) == 0 for run in self.runs)


def plan(
    url: str,
    model: str,
    version: str | None = None,
    protocol: str = "json",
    batch: int = 1,
    shapes: Sequence[str] = (),
    token: str | None = None,
) -> Plan:
    """Read the model's metadata and encode one request of random inputs for it."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"--url must be a plain http:// URL, received {url!r}")
    if protocol not in loadgen.PROTOCOLS:
        raise ConfigError(
            f"unknown protocol {protocol!r}; expected one of {', '.join(loadgen.PROTOCOLS)}"
        )
    metadata = client.model_metadata(url, model, version, token)
    shapes_sent = request_shapes(metadata["inputs"], batch, shapes)
    first = next(iter(shapes_sent.values()), [])
    rows = first[0] if first else 1
    limit = client.model_config(url, model, version, token).get("max_batch_size") or 0
    check_batch(rows, limit, model, version)
    tensors = random_inputs(metadata["inputs"], shapes_sent)
    body, headers = loadgen.build_request(
        protocol, tensors, [output["name"] for output in metadata["outputs"]]
    )
    host, port = parts.hostname, parts.port or 80
    path = loadgen.inference_path(protocol, model, version, parts.path.rstrip("/"))
    payload = loadgen.http_request(host, port, path, body, {**headers, **client.bearer(token)})
    return Plan(url, model, version, protocol, rows, host, port, payload)


def check_batch(rows: int, max_batch_size: int, model: str, version: str | None) -> None:
    """Refuse, before any load, requests of more rows than the model takes (its V2
    config's ``max_batch_size``; 0: no limit): every one would fail."""
    if max_batch_size and rows > max_batch_size:
        which = f"model '{model}'" + (f" version {version}" if version else "")
        raise ConfigError(
            f"--batch {rows} is over the max_batch_size of {which}, {max_batch_size} rows "
            f"a request (its V2 model config); use --batch {max_batch_size} or less, or "
            "raise max_batch_size in the model's config.json on the server"
        )


def request_shapes(
    inputs: Sequence[Mapping[str, Any]], batch: int, given: Sequence[str] = ()
) -> dict[str, list[int]]:
    """Each input's request shape from V2 metadata (``-1`` for variable sizes): a
    variable first dimension becomes ``batch``; the other variable dimensions come from
    ``given``, entries ``NAME=D1,D2,...`` (or ``D1,D2,...`` for a single input) listing the
    dimensions after the first."""
    names = [spec["name"] for spec in inputs]
    rows = _parse_given(given, names)
    shapes = {}
    for spec in inputs:
        name, dims = spec["name"], list(spec["shape"])
        first, rest = (dims[0], dims[1:]) if dims else (None, [])
        if name in rows:
            rest = _fill(name, rest, rows[name])
        elif -1 in rest:
            example = ",".join(str(d if d >= 0 else 8) for d in rest)
            raise ShapeError(
                f"input '{name}' has variable dimensions after the first: {dims}; give "
                f"them with --shape {name}={example} (the dimensions after the first)"
            )
        shapes[name] = ([] if first is None else [batch if first < 0 else first]) + rest
    return shapes


def _parse_given(given: Sequence[str], names: Sequence[str]) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = {}
    for item in given:
        name, _, dims = item.rpartition("=")
        if not name:
            if len(names) != 1:
                raise ConfigError(
                    f"--shape {item!r} names no input, but the model has {len(names)}: "
                    f"{', '.join(names)}; write --shape NAME=D1,D2,..."
                )
            name = names[0]
        if name not in names:
            raise ConfigError(
                f"--shape {item!r}: the model has no input '{name}'; its inputs are "
                f"{', '.join(names)}"
            )
        try:
            values = [int(d) for d in dims.split(",") if d.strip()] if dims.strip() else []
        except ValueError:
            values = [-1]
        if any(v < 1 for v in values):
            raise ConfigError(
                f"--shape {item!r}: expected positive integers separated by commas, "
                f"received {dims!r}"
            )
        rows[name] = values
    return rows


def _fill(name: str, model_dims: list[int], given: list[int]) -> list[int]:
    if len(given) != len(model_dims):
        raise ShapeError(
            f"--shape for input '{name}' gives {len(given)} dimensions {given}, but the "
            f"model's input has {len(model_dims)} after the first: {model_dims}"
        )
    for axis, (want, got) in enumerate(zip(model_dims, given, strict=True), start=1):
        if want >= 0 and want != got:
            raise ShapeError(
                f"--shape for input '{name}': dimension {axis} must be {want} (fixed by the "
                f"model), received {got}"
            )
    return given


def random_inputs(
    inputs: Sequence[Mapping[str, Any]], shapes: Mapping[str, Sequence[int]], seed: int = 0
) -> dict[str, np.ndarray]:
    """Random tensors of each input's datatype and shape: numbers in [0, 1) for floats,
    0..9 for integers, text of eight letters for BYTES."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for spec in inputs:
        name, datatype, shape = spec["name"], spec["datatype"], tuple(shapes[spec["name"]])
        if datatype in loadgen.TEXT_TYPES:
            letters = rng.integers(ord("a"), ord("z") + 1, size=(*shape, 8), dtype=np.uint8)
            array = np.array([bytes(w).decode() for w in letters.reshape(-1, 8)], dtype=object)
            tensors[name] = array.reshape(shape)
            continue
        if datatype not in loadgen.V2_TO_NUMPY:
            raise ConfigError(f"input '{name}' has datatype {datatype}, which bench cannot make")
        dtype = np.dtype(loadgen.V2_TO_NUMPY[datatype]).newbyteorder("=")
        if dtype.kind == "f":
            tensors[name] = rng.random(shape).astype(dtype)
        elif dtype.kind == "b":
            tensors[name] = rng.random(shape) < 0.5
        else:
            tensors[name] = rng.integers(0, 10, size=shape).astype(dtype)
    return tensors


def run(
    plan: Plan,
    levels: Sequence[int],
    warmup: float,
    duration: float,
    tick: Callable[[int, float], None] | None = None,
) -> Outcome:
    """Each concurrency level for ``warmup + duration`` seconds, one after the other;
    ``tick(level_index, seconds)`` follows the time passed within a level."""
    runs, first_error = [], None
    for index, level in enumerate(levels):
        try:
            result = loadgen.run_level(
                plan.host,
                plan.port,
                plan.payload,
                level,
                warmup,
                duration,
                None if tick is None else lambda seconds, i=index: tick(i, seconds),
            )
        except OSError as exc:
            raise client.ServerUnreachable(
                f"the connections to {plan.host}:{plan.port} failed at concurrency {level}: "
                f"{exc or type(exc).__name__}"
            ) from exc
        if first_error is None and result["first_error"] is not None:
            first_error = _error_message(*result["first_error"])
        runs.append(
            loadgen.Run(
                plan.protocol,
                plan.rows,
                level,
                int(result["succeeded"]),
                int(result["errors"]),
                duration,
                result["latencies"],
                client_cpu=result["client_cpu"],
                sent=result["sent"],
                received=result["received"],
                statuses=result["statuses"],
                failed=int(result["failed"]),
            )
        )
    return Outcome(runs, first_error)


def _error_message(status: int, body: bytes) -> tuple[int, str]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return status, document["error"]
    return status, body.decode("utf-8", "replace")


def level_rows(outcome: Outcome) -> list[dict[str, Any]]:
    """One dict per level: throughput and latency percentiles (ms) of the successful
    requests, the failed ones apart (``failed_per_s`` in the measuring window, ``errors``
    warm-up included), and every status count."""
    return [
        {
            "concurrency": run.concurrency,
            "requests": run.requests,
            "requests_per_s": run.rps,
            "samples_per_s": run.rps * run.batch,
            "p50_ms": run.percentile(50),
            "p90_ms": run.percentile(90),
            "p99_ms": run.percentile(99),
            "failed_per_s": run.failed / run.seconds,
            "errors": run.errors,
            "sent": run.sent,
            "received": run.received,
            "statuses": {str(status): count for status, count in sorted(run.statuses.items())},
            "client_cpu": run.client_cpu,
        }
        for run in outcome.runs
    ]


def report(plan: Plan, outcome: Outcome, warmup: float, duration: float) -> dict[str, Any]:
    """The whole benchmark as JSON-ready data."""
    error = None
    if outcome.first_error is not None:
        error = {"status": outcome.first_error[0], "error": outcome.first_error[1]}
    return {
        "url": plan.url,
        "model": plan.model,
        "version": plan.version,
        "protocol": plan.protocol,
        "batch": plan.rows,
        "warmup_s": warmup,
        "duration_s": duration,
        "levels": level_rows(outcome),
        "first_error": error,
    }
