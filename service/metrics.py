"""Service metrics: Prometheus exposition with Triton's metric names, latency and batch-size
histograms, and the V2 statistics extension's JSON. Protocol-neutral (no FastAPI).

Nothing is counted twice: the Triton counters are read at scrape time from the batchers'
``BatchStats`` (kept by the data plane per model version); only the two histograms are
fed by the batcher observers. Every series of a model version appears while it is loaded.

A server of several worker processes answers totals whichever worker a client reaches:
each worker gives a :meth:`ServiceMetrics.snapshot` of its own counts (JSON, sent to the
sibling that asks), the answering worker adds them up (:func:`merge_snapshots`) and the
exposition and the statistics extension are rendered from the totals.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from layerserve.service.batcher import BatchStats, ExecutionStats, Observer

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


# ---- histograms fed by the batcher observers --------------------------------------------
@dataclass
class Histogram:
    """Counts per bucket (not cumulative; the last bucket is +Inf) and the sum of the
    observations; observed on the event loop only."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum

    def buckets(self) -> list[tuple[str, int]]:
        total, out = 0, []
        for bound, count in zip([*self.bounds, math.inf], self.counts, strict=True):
            total += count
            out.append((floatToGoString(bound), total))
        return out


# ---- one process's counts of a model version, and their totals over processes --------------
@dataclass
class VersionCounts:
    """Everything counted for one model version, by one process or summed over the
    worker processes; what the exposition and the statistics extension are rendered from."""

    name: str
    version: str
    stats: BatchStats = field(default_factory=BatchStats)
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    pending: int = 0
    fell_back_to_cpu: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)

    def add(self, other: VersionCounts) -> None:
        """Add another process's counts: every count, duration and histogram adds up, the
        last inference is the latest, and a fallback to CPU in any process shows."""
        for item in dataclasses.fields(BatchStats):
            mine, theirs = getattr(self.stats, item.name), getattr(other.stats, item.name)
            if item.name == "last_inference_ms":
                self.stats.last_inference_ms = max(mine, theirs)
            elif item.name == "failure":
                mine.update(theirs)  # a Counter: adds
            elif item.name == "batches":
                for rows, entry in theirs.items():
                    _add_execution(mine.setdefault(rows, ExecutionStats()), entry)
            else:
                setattr(self.stats, item.name, mine + theirs)
        self.latency.add(other.latency)
        self.batch_size.add(other.batch_size)
        self.pending += other.pending
        self.fell_back_to_cpu = self.fell_back_to_cpu or other.fell_back_to_cpu

    def to_json(self) -> dict[str, Any]:
        """A copy in JSON types (batch sizes become a list: JSON keys are strings)."""
        stats = {
            item.name: getattr(self.stats, item.name) for item in dataclasses.fields(BatchStats)
        }
        stats["failure"] = dict(self.stats.failure)
        stats["batches"] = [
            {"batch_size": rows, **dataclasses.asdict(entry)}
            for rows, entry in sorted(self.stats.batches.items())
        ]
        return {
            "name": self.name,
            "version": self.version,
            "stats": stats,
            "latency": {"counts": list(self.latency.counts), "sum": self.latency.sum},
            "batch_size": {"counts": list(self.batch_size.counts), "sum": self.batch_size.sum},
            "pending": self.pending,
            "fell_back_to_cpu": self.fell_back_to_cpu,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VersionCounts:
        stats = dict(data["stats"])
        failure = collections.Counter(stats.pop("failure"))
        batches = {}
        for entry in stats.pop("batches"):
            rows = entry["batch_size"]
            batches[rows] = ExecutionStats(**{k: v for k, v in entry.items() if k != "batch_size"})
        return cls(
            data["name"],
            data["version"],
            BatchStats(**stats, failure=failure, batches=batches),
            Histogram(LATENCY_BUCKETS, list(data["latency"]["counts"]), data["latency"]["sum"]),
            Histogram(BATCH_BUCKETS, list(data["batch_size"]["counts"]), data["batch_size"]["sum"]),
            data["pending"],
            data["fell_back_to_cpu"],
        )


def _add_execution(total: ExecutionStats, part: ExecutionStats) -> None:
    for item in dataclasses.fields(ExecutionStats):
        setattr(total, item.name, getattr(total, item.name) + getattr(part, item.name))


def totals(snapshots: Iterable[dict[str, Any]]) -> list[VersionCounts]:
    """The model versions of several processes' snapshots, each summed over the snapshots
    that have it (a version loaded in one process only is still there), by name and
    version number."""
    summed: dict[tuple[str, str], VersionCounts] = {}
    for snapshot in snapshots:
        for data in snapshot["models"]:
            part = VersionCounts.from_json(data)
            if part.key in summed:
                summed[part.key].add(part)
            else:
                summed[part.key] = part
    return [summed[key] for key in sorted(summed, key=lambda k: (k[0], int(k[1])))]


def merge_snapshots(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Several processes' snapshots as one, of the same shape (see :func:`totals`)."""
    return {"models": [counts.to_json() for counts in totals(snapshots)]}


class ServiceMetrics:
    """One per app: the histograms, the batcher observers that feed them, and the
    snapshot of this process's counts."""

    def __init__(self) -> None:
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.batch_size: dict[tuple[str, str], Histogram] = {}

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

    def snapshot(self, plane: DataPlane) -> dict[str, Any]:
        """This process's counts of every loaded model version, read now, in JSON types:
        what a sibling worker asks for to answer totals. Called on the event loop, where
        the counts change, so the copy is consistent."""
        models = []
        for model in plane.loaded_models():
            key = (model.name, model.version)
            counts = VersionCounts(
                model.name,
                model.version,
                plane.statistics(model),
                self.latency.get(key) or Histogram(LATENCY_BUCKETS),
                self.batch_size.get(key) or Histogram(BATCH_BUCKETS),
                plane.pending_requests(model),
                model.fell_back_to_cpu,
            )
            models.append(counts.to_json())
        return {"models": models}


# ---- text exposition --------------------------------------------------------------------
def exposition(versions: list[VersionCounts], workers: int = 1, restarts: int = 0) -> str:
    """The Prometheus text format (0.0.4) of these counts, and of the worker processes."""
    return render(families(versions, workers, restarts))


def families(versions: list[VersionCounts], workers: int, restarts: int) -> Iterator[Metric]:
    labelled = [({"model": v.name, "version": v.version}, v) for v in versions]
    success_name, success_help, success_value = COUNTERS[0]
    yield _counter(success_name, success_help, [(lb, success_value(v.stats)) for lb, v in labelled])
    yield _counter(
        "nv_inference_request_failure",
        "Number of failed inference requests, all batch sizes",
        [
            ({**lb, "reason": reason}, v.stats.failure.get(reason, 0))
            for lb, v in labelled
            for reason in FAILURE_REASONS
        ],
    )
    for name, documentation, value in COUNTERS[1:3]:
        yield _counter(name, documentation, [(lb, value(v.stats)) for lb, v in labelled])
    pending = Metric(
        "nv_inference_pending_request_count",
        "Instantaneous number of pending requests awaiting execution per-model.",
        "gauge",
    )
    for labels, v in labelled:
        pending.add_sample(pending.name, labels, v.pending)
    yield pending
    for name, documentation, value in COUNTERS[3:]:
        yield _counter(name, documentation, [(lb, value(v.stats)) for lb, v in labelled])

    latency = HistogramMetricFamily(
        "layerserve_request_duration_seconds",
        "Duration of successful inference requests, queue included (seconds)",
        labels=["model", "version"],
    )
    batch_size = HistogramMetricFamily(
        "layerserve_batch_size",
        "Rows per model execution (requests merged by the dynamic batcher)",
        labels=["model", "version"],
    )
    fallback = GaugeMetricFamily(
        "layerserve_model_provider_fallback",
        "1 when the model version asked for CUDA but runs on the CPU provider",
        labels=["model", "version"],
    )
    for v in versions:
        latency.add_metric([v.name, v.version], v.latency.buckets(), v.latency.sum)
        batch_size.add_metric([v.name, v.version], v.batch_size.buckets(), v.batch_size.sum)
        fallback.add_metric([v.name, v.version], int(v.fell_back_to_cpu))
    yield from (latency, batch_size, fallback)

    # The server's own counter follows Triton's counters here: named as given, no _total.
    yield _counter(
        "layerserve_worker_restarts", "Worker processes restarted after they died", [({}, restarts)]
    )
    yield GaugeMetricFamily("layerserve_workers", "Worker processes serving this port", workers)


def _counter(name: str, documentation: str, samples: list[tuple[dict[str, str], int]]) -> Metric:
    metric = Metric(name, documentation, "counter")
    for labels, value in samples:
        metric.add_sample(name, labels, value)
    return metric


def render(metrics: Iterable[Metric]) -> str:
    """Prometheus text format 0.0.4, with counters named as given (Triton's names carry no
    ``_total``; prometheus_client's own writer would add it). Labels sorted by name."""
    lines = []
    for metric in metrics:
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
def statistics_json(versions: list[VersionCounts]) -> dict[str, Any]:
    """``{"model_stats": [...]}`` with Triton's field names (statistics extension)."""
    return {"model_stats": [model_stat(v.name, v.version, v.stats) for v in versions]}


def model_stat(name: str, version: str, stats: BatchStats) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
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
