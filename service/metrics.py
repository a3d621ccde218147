"""Service metrics: Prometheus exposition with Triton's metric names, latency and batch-size
histograms, and the V2 statistics extension's JSON. Protocol-neutral (no FastAPI).

Nothing is counted twice: the Triton counters are read at scrape time from the batchers'
``BatchStats`` (kept by the data plane per model version); only the two histograms are
fed by the batcher observers. Every series of a model version appears while it is loaded.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from layerserve.service.batcher import BatchStats, Observer

if TYPE_CHECKING:
    from layerserve.service.dataplane import DataPlane
    from layerserve.service.runtime import LoadedModel

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# Triton's per-model counters (no ``_total`` suffix, as Triton exposes them).
COUNTERS: tuple[tuple[str, str, Callable[[BatchStats], int]], ...] = (
    (
        "nv_inference_request_success",
        "Number of successful inference requests, all batch sizes",
        lambda s: s.success,
    ),
    (
        "nv_inference_count",
        "Number of inferences performed (does not include cached requests)",
        lambda s: s.inference_count,
    ),
    (
        "nv_inference_exec_count",
        "Number of model executions performed (does not include cached requests)",
        lambda s: s.execution_count,
    ),
    (
        "nv_inference_request_duration_us",
        "Cumulative inference request duration in microseconds (includes cached requests)",
        lambda s: s.request_ns // 1000,
    ),
    (
        "nv_inference_queue_duration_us",
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
        lambda s: s.queue_ns // 1000,
    ),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
        lambda s: s.compute_input_ns // 1000,
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
        lambda s: s.compute_infer_ns // 1000,
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative inference compute output duration in microseconds (does not include cached "
        "requests)",
        lambda s: s.compute_output_ns // 1000,
    ),
)


# ---- the request in progress (request id, and whether the batcher counts it) ----------
@dataclass
class RequestContext:
    """Set by the request-log middleware for each HTTP request."""

    request_id: str
    accounted: bool = False  # the batcher took the request and counts its outcome


current_request: ContextVar[RequestContext | None] = ContextVar("layerserve_request", default=None)


def mark_accounted() -> None:
    """Called when a request reaches the batcher, which then counts its success or failure;
    a request failing before that (invalid input) is counted as OTHER by the middleware."""
    context = current_request.get()
    if context is not None:
        context.accounted = True


def current_request_id() -> str | None:
    context = current_request.get()
    return context.request_id if context is not None else None


# ---- histograms fed by the batcher observers --------------------------------------------
class Histogram:
    """Cumulative buckets and sum; observed on the event loop only."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, int]]:
        total, out = 0, []
        for bound, count in zip([*self.bounds, math.inf], self.counts, strict=True):
            total += count
            out.append((floatToGoString(bound), total))
        return out


class ServiceMetrics:
    """One per app: a private registry, the histograms, and the batcher observers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.batch_size: dict[tuple[str, str], Histogram] = {}
        self._plane: DataPlane | None = None
        self.registry.register(_Collector(self))

    def observer_for(self, model: LoadedModel) -> Observer:
        key = (model.name, model.version)
        latency = self.latency.setdefault(key, Histogram(LATENCY_BUCKETS))
        batch_size = self.batch_size.setdefault(key, Histogram(BATCH_BUCKETS))

        def observe(event: str, data: dict[str, Any]) -> None:
            if event == "success":
                latency.observe(data["request_s"])
            elif event == "executed":
                batch_size.observe(data["rows"])

        return observe

    def exposition(self, plane: DataPlane) -> str:
        """The Prometheus text format (0.0.4) of this data plane's metrics, read now."""
        self._plane = plane
        return render(self.registry)


class _Collector:
    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        plane = self.metrics._plane
        if plane is None:
            return
        models = plane.loaded_models()
        stats = [(m, {"model": m.name, "version": m.version}, plane.statistics(m)) for m in models]

        success_name, success_help, success_value = COUNTERS[0]
        yield _counter(success_name, success_help, [(lb, success_value(s)) for _, lb, s in stats])
        yield _counter(
            "nv_inference_request_failure",
            "Number of failed inference requests, all batch sizes",
            [
                ({**lb, "reason": reason}, s.failure.get(reason, 0))
                for _, lb, s in stats
                for reason in FAILURE_REASONS
            ],
        )
        for name, documentation, value in COUNTERS[1:3]:
            yield _counter(name, documentation, [(lb, value(s)) for _, lb, s in stats])
        pending = Metric(
            "nv_inference_pending_request_count",
            "Instantaneous number of pending requests awaiting execution per-model.",
            "gauge",
        )
        for model, labels, _ in stats:
            pending.add_sample(pending.name, labels, plane.pending_requests(model))
        yield pending
        for name, documentation, value in COUNTERS[3:]:
            yield _counter(name, documentation, [(lb, value(s)) for _, lb, s in stats])

        yield from self._histograms(
            "layerserve_request_duration_seconds",
            "Duration of successful inference requests, queue included (seconds)",
            models,
            self.metrics.latency,
            LATENCY_BUCKETS,
        )
        yield from self._histograms(
            "layerserve_batch_size",
            "Rows per model execution (requests merged by the dynamic batcher)",
            models,
            self.metrics.batch_size,
            BATCH_BUCKETS,
        )
        fallback = GaugeMetricFamily(
            "layerserve_model_provider_fallback",
            "1 when the model version asked for CUDA but runs on the CPU provider",
            labels=["model", "version"],
        )
        for model in models:
            fallback.add_metric([model.name, model.version], int(model.fell_back_to_cpu))
        yield fallback

    @staticmethod
    def _histograms(
        name: str,
        documentation: str,
        models: list[LoadedModel],
        source: dict[tuple[str, str], Histogram],
        bounds: tuple[float, ...],
    ) -> Iterator[Metric]:
        family = HistogramMetricFamily(name, documentation, labels=["model", "version"])
        for model in models:
            histogram = source.get((model.name, model.version)) or Histogram(bounds)
            family.add_metric([model.name, model.version], histogram.buckets(), histogram.sum)
        yield family


def _counter(name: str, documentation: str, samples: list[tuple[dict[str, str], int]]) -> Metric:
    metric = Metric(name, documentation, "counter")
    for labels, value in samples:
        metric.add_sample(name, labels, value)
    return metric


# ---- text exposition --------------------------------------------------------------------
def render(registry: CollectorRegistry) -> str:
    """Prometheus text format 0.0.4, with counters named as given (Triton's names carry no
    ``_total``; prometheus_client's own writer would add it). Labels sorted by name."""
    lines = []
    for metric in registry.collect():
        documentation = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        lines.append(f"# HELP {metric.name} {documentation}")
        lines.append(f"# TYPE {metric.name} {metric.type}")
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            lines.append(f"{sample.name}{_labels(sample.labels)} {_number(sample.value)}")
    return "\n".join(lines) + "\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    pairs = ",".join(f'{key}="{_escape(str(labels[key]))}"' for key in sorted(labels))
    return "{" + pairs + "}"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer()):
        return str(int(value))
    return floatToGoString(value)


# ---- the V2 statistics extension ----------------------------------------------------------
def statistics_json(plane: DataPlane, models: list[LoadedModel]) -> dict[str, Any]:
    """``{"model_stats": [...]}`` with Triton's field names (statistics extension)."""
    return {"model_stats": [model_stat(m, plane.statistics(m)) for m in models]}


def model_stat(model: LoadedModel, stats: BatchStats) -> dict[str, Any]:
    return {
        "name": model.name,
        "version": model.version,
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": _duration(stats.success, stats.request_ns),
            "fail": _duration(stats.failed, stats.fail_ns),
            "queue": _duration(stats.success, stats.queue_ns),
            "compute_input": _duration(stats.success, stats.compute_input_ns),
            "compute_infer": _duration(stats.success, stats.compute_infer_ns),
            "compute_output": _duration(stats.success, stats.compute_output_ns),
            "cache_hit": _duration(0, 0),
            "cache_miss": _duration(0, 0),
        },
        "response_stats": {},
        "batch_stats": [
            {
                "batch_size": rows,
                "compute_input": _duration(entry.count, entry.compute_input_ns),
                "compute_infer": _duration(entry.count, entry.compute_infer_ns),
                "compute_output": _duration(entry.count, entry.compute_output_ns),
            }
            for rows, entry in sorted(stats.batches.items())
        ],
        "memory_usage": [],
    }


def _duration(count: int, ns: int) -> dict[str, int]:
    return {"count": count, "ns": ns}
