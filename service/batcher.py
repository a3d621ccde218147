"""The dynamic batcher of one model version (Triton semantics, in-process).

Requests whose inputs agree apart from the batch dimension are merged, up to
``max_batch_size`` rows, waiting at most ``max_queue_delay_us`` for more (0: merge only
what is already queued). Each request gets exactly its own rows back. A failing merged run
is retried request by request, so one bad request cannot fail the others. A model whose
rows depend on one another (recorded by the exporter, or found by the load's probe) has no
request merged.

A run is expected to take what the model's last run took, scaled by the values of its
inputs. A batch expected within ``LOOP_RUN_BUDGET_S`` runs on the event loop itself, once
the loop's current turn is done (so the requests decoded in that turn run together), with no
thread to wake and no GIL to hand over and back: for a small model, that handoff cost more
than the run. Any longer run goes to a thread pool, whose threads take the next batch from the
queue themselves (at most ``instances`` at a time): once such a request is queued, its run
never waits for the event loop, which under overload is busy answering other clients.
A run on the loop that takes ten times the budget keeps the model's runs on threads for
``LOOP_RUN_COOLDOWN_S``. A request is refused
(503) when ``max_queue_size`` requests already wait, so an admitted request waits at most
for the queue ahead of it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from layerserve.service.errors import InferenceFailed, QueueFull, QueueTimeout
from layerserve.service.request_context import request_elapsed_s
from layerserve.service.runtime import LoadedModel

# A batch expected to run within this runs on the event loop (see the module docstring):
# measured with benchmarks/service_load.py, batch-1 JSON requests to the demo MLP (runs of
# tens of microseconds) gained 16-42%, while batch-64 runs (0.2 ms), on the loop, lost a
# third of their throughput to the parsing they no longer overlapped.
LOOP_RUN_BUDGET_S = 0.0001
# A run on the loop that took LOOP_RUN_OVERRUN times the budget keeps the model's runs on
# threads for LOOP_RUN_COOLDOWN_S: a model whose run time depends on the data (not only on
# its size) cannot hold the loop more than once in that time. A smaller overrun (a run
# preempted by another process, say) only sends the next batch to a thread.
LOOP_RUN_OVERRUN = 10
LOOP_RUN_COOLDOWN_S = 5.0
log = logging.getLogger("layerserve.service")


# Compared by identity: the queue finds a request by the object, never by its arrays
# (comparing two requests' inputs by value raises, or takes the time of the data).
@dataclass(eq=False)
class Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    key: tuple
    future: asyncio.Future
    enqueued: float
    deadline: float
    started: float = 0.0
    values: int = 0  # of every input: what a run's time is scaled by


@dataclass
class ExecutionStats:
    """The executions of one batch size: how many, and their durations (ns)."""

    count: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0


@dataclass
class BatchStats:
    """Triton-style cumulative statistics of one model version, updated on the event
    loop only. Request durations (ns) are summed per request: every request of a merged
    run is charged that run's compute durations, as Triton does; ``batches`` holds the
    per-execution durations by batch size (rows)."""

    success: int = 0
    failure: dict[str, int] = field(default_factory=lambda: collections.Counter())
    inference_count: int = 0
    execution_count: int = 0
    request_ns: int = 0
    fail_ns: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    last_inference_ms: int = 0
    batches: dict[int, ExecutionStats] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.failure.values())

    @property
    def batch_sizes(self) -> dict[int, int]:
        return collections.Counter({rows: b.count for rows, b in self.batches.items()})

    def record_failure(self, reason: str, ns: int = 0) -> None:
        self.failure[reason] += 1
        self.fail_ns += ns

    def record_execution(self, rows: int, timing: tuple[int, int, int]) -> None:
        self.execution_count += 1
        entry = self.batches.setdefault(rows, ExecutionStats())
        entry.count += 1
        entry.compute_input_ns += timing[0]
        entry.compute_infer_ns += timing[1]
        entry.compute_output_ns += timing[2]


Observer = Callable[[str, dict[str, Any]], None]


class Admission:
    """A request admitted by a batcher: once its body is decoded it is queued whatever the
    queue holds then (:meth:`DynamicBatcher.submit`). :meth:`release` once it is answered
    (twice is harmless: the route and the server both release it)."""

    __slots__ = ("batcher", "released")

    def __init__(self, batcher: DynamicBatcher) -> None:
        self.batcher = batcher
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.batcher.admitted -= 1


RunResult = tuple[list[Any], tuple[int, int, int]]


class DynamicBatcher:
    def __init__(
        self,
        model: LoadedModel,
        executor: ThreadPoolExecutor,
        observer: Observer | None = None,
        stats: BatchStats | None = None,
    ) -> None:
        self.model = model
        self.executor = executor
        self.config = model.config
        # Observers are called on the event loop, never on an executor thread.
        self.observer = observer or (lambda event, data: None)
        self.stats = stats if stats is not None else BatchStats()
        self._loop = asyncio.get_running_loop()
        # The queue and the counters below are shared with the executor threads.
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)  # a request was queued
        self._queue: collections.deque[Pending] = collections.deque()
        self._workers = 0  # threads (or the loop) draining the queue, at most `instances`
        self._in_flight = 0  # batches taken whose results are not delivered yet
        self._closed = False
        # Admitted requests (being read, queued, run or answered), bounded by what the
        # model can queue and run at once; past it a request is refused from its head.
        # A request is admitted while the queue holds fewer than max_queue_size, and is
        # never refused afterwards: refusing it once its body was read and decoded would
        # spend the time that admitting from the head saves (under overload, a tenth of
        # the admitted requests were refused so, and goodput fell by a third). The queue
        # can so hold more than max_queue_size for a moment, never more than the window.
        self.admitted = 0
        self._window = model.config.max_queue_size + model.config.instances * max(
            1, model.config.max_batch_size
        )
        # The last run's seconds and input values (unknown at first: the first run is on a
        # thread). Runs wait for more requests on a thread only: a delay keeps them there.
        self._last_run = (float("inf"), 1)
        self._loop_runs_from = 0.0  # monotonic time: no loop runs before it (cooldown)
        self._loop_runs = model.config.max_queue_delay_us == 0
        # one string for every refusal: under overload it is the answer given most
        self._refusal = (
            f"inference request for model '{model.name}' exceeds maximum queue size "
            f"{model.config.max_queue_size}; retry later, or raise max_queue_size in the "
            "model's config.json (LAYERSERVE_MAX_QUEUE_SIZE for every model)"
        )

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._in_flight > 0 or self._workers > 0

    def try_admit(self) -> Admission | None:
        """An admission when there is room (see :meth:`has_room`), else None."""
        if not self.has_room():
            return None
        self.admitted += 1
        return Admission(self)

    def has_room(self) -> bool:
        """False when a request arriving now is refused: the cheap check made before its
        body is read. Requests already admitted fill the queue and the runs first."""
        return self.admitted < self._window and len(self._queue) < self.config.max_queue_size

    def refuse(self, waited_s: float) -> QueueFull:
        """The error of a request refused because the queue is full, counted with the
        ``waited_s`` since the server began it."""
        self._count_failure("REJECTED", waited_s)
        return QueueFull(self._refusal)

    async def submit(
        self,
        inputs: dict[str, np.ndarray],
        rows: int,
        timeout_us: int | None = None,
        admission: Admission | None = None,
    ) -> dict[str, np.ndarray]:
        """Queue a validated request and wait for its own output rows. A request this
        batcher admitted (``admission``) is queued whatever the queue holds; any other is
        refused when the queue is full."""
        now = time.monotonic()
        budget = self.config.queue_timeout_ms / 1000
        if timeout_us:
            budget = min(budget, timeout_us / 1e6)
        key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items()))
        item = Pending(inputs, rows, key, self._loop.create_future(), now, now + budget)
        item.values = sum(a.size for a in inputs.values())
        admitted = admission is not None and admission.batcher is self
        with self._lock:
            if not admitted and len(self._queue) >= self.config.max_queue_size:
                full = True
            else:
                full = False
                self._queue.append(item)
                start_worker = self._workers < self.config.instances
                if start_worker:
                    self._workers += 1
                else:
                    self._more.notify()
        if full:
            raise self.refuse(request_elapsed_s())
        if start_worker:
            if self._runs_on_loop(item.values):
                self._loop.call_soon(self._drain_on_loop)
            else:
                self.executor.submit(self._drain)
        self.observer("queued", {"pending": len(self._queue)})
        return await item.future

    async def close(self) -> None:
        """Finish queued and running work; no thread is left waiting on this batcher."""
        self._closed = True
        while self.busy:
            with self._lock:
                self._more.notify_all()
            await asyncio.sleep(0.005)

    # ---- draining the queue: on the loop, or on executor threads -----------------------
    def _runs_on_loop(self, values: int) -> bool:
        """Whether a batch of ``values`` input values is expected to run within
        ``LOOP_RUN_BUDGET_S``: the last run's time, scaled by values (not rows, so that a
        longer sequence counts too)."""
        seconds, last_values = self._last_run
        return (
            self._loop_runs
            and seconds * max(1.0, values / last_values) <= LOOP_RUN_BUDGET_S
            and time.monotonic() >= self._loop_runs_from
        )

    def _drain_on_loop(self) -> None:
        """One batch on the event loop, then the next in a later turn (so that the loop
        reads and answers between batches); a batch expected to run longer goes to a
        thread, which goes on draining."""
        batch = self._take_next()
        if not batch:
            return
        if self._runs_on_loop(sum(item.values for item in batch)):
            outcome = self._run_taken(batch)  # raises nothing
            if self._last_run[0] > LOOP_RUN_OVERRUN * LOOP_RUN_BUDGET_S:
                self._loop_runs_from = time.monotonic() + LOOP_RUN_COOLDOWN_S
            self._deliver(batch, outcome, time.monotonic())  # raises nothing
        else:
            try:
                self.executor.submit(self._drain, batch)
                return
            except RuntimeError:  # the executor is shut down: the server is stopping
                log.exception("model '%s': no thread to run a batch on", self.model.name)
                with self._lock:
                    self._in_flight -= 1
                self._fail_unanswered(batch)
        self._loop.call_soon(self._drain_on_loop)

    def _drain(self, batch: list[Pending] | None = None) -> None:
        """An executor thread's work: run batches (``batch`` first) while requests are
        queued; once runs are short again, the draining goes back to the event loop."""
        while True:
            if batch is None:
                batch = self._take_next()
                if not batch:
                    return
            outcome = self._run_taken(batch)
            self._loop.call_soon_threadsafe(self._deliver, batch, outcome, time.monotonic())
            if self._runs_on_loop(sum(item.values for item in batch)):
                self._loop.call_soon_threadsafe(self._drain_on_loop)
                return
            batch = None

    def _take_next(self) -> list[Pending]:
        """The next batch, counted in flight; empty, and the drainer retired, when nothing
        is queued."""
        with self._lock:
            batch = self._take_batch()
            if batch:
                self._in_flight += 1
            else:
                self._workers -= 1
            return batch

    def _run_taken(self, batch: list[Pending]) -> RunResult:
        """Run a batch taken from the queue (on the loop or a thread); no error escapes."""
        started = time.monotonic()
        for item in batch:
            item.started = started
        try:
            results, timing = self._run_batch(batch)
        except Exception as exc:  # noqa: BLE001 - no waiting client may be left hanging
            failure = InferenceFailed(f"model '{self.model.name}' failed to run: {exc}")
            return [failure] * len(batch), (0, 0, 0)
        # the whole run: merging and splitting the batch as well as onnxruntime's part
        self._last_run = (sum(timing) / 1e9, max(1, sum(item.values for item in batch)))
        return results, timing

    def _take_batch(self) -> list[Pending]:
        """The next batch (holding the lock): the oldest request and every queued one
        that merges with it, after waiting up to ``max_queue_delay_us`` for more."""
        self._expire()
        if not self._queue:
            return []
        limit = self.config.max_batch_size if self.model.merges_requests else 0
        delay = self.config.max_queue_delay_us / 1e6
        if limit > 0 and delay > 0:
            oldest = self._queue[0]
            while (
                not self._closed
                and self._rows_matching(oldest.key) < limit
                and (now := time.monotonic()) < oldest.enqueued + delay
            ):
                # Wake for new requests, at the end of the delay, or when a queued request
                # runs out of time, so that it gets its 504 without waiting out the delay.
                until = min(oldest.enqueued + delay, min(i.deadline for i in self._queue))
                self._more.wait(timeout=max(until - now, 0))
                self._expire()
                if not self._queue:
                    return []
                oldest = self._queue[0]
        first = self._queue.popleft()
        batch, rows = [first], first.rows
        if limit > 0:
            kept: collections.deque[Pending] = collections.deque()
            # once the batch is full nothing more is looked at: with requests of
            # max_batch_size rows each, the queue is not walked for every batch
            while self._queue and rows < limit:
                item = self._queue.popleft()
                if item.key == first.key and rows + item.rows <= limit:
                    batch.append(item)
                    rows += item.rows
                else:
                    kept.append(item)
            self._queue.extendleft(reversed(kept))
        return batch

    def _rows_matching(self, key: tuple) -> int:
        return sum(item.rows for item in self._queue if item.key == key)

    def _expire(self) -> None:
        """Drop requests whose caller gave up (CANCELED) or whose time is up (REJECTED);
        their outcome is delivered on the event loop."""
        now = time.monotonic()
        if not any(item.deadline <= now or item.future.done() for item in self._queue):
            return
        kept: list[Pending] = []
        for item in self._queue:
            if item.future.done() or item.deadline <= now:
                self._loop.call_soon_threadsafe(self._drop, item, now)
            else:
                kept.append(item)
        self._queue.clear()
        self._queue.extend(kept)

    # ---- the event loop -------------------------------------------------------------
    def _drop(self, item: Pending, now: float) -> None:
        if item.future.done():
            self._count_failure("CANCELED", now - item.enqueued)
            return
        self._count_failure("REJECTED", now - item.enqueued)
        waited = (now - item.enqueued) * 1000
        item.future.set_exception(
            QueueTimeout(
                f"request for model '{self.model.name}' timed out after waiting "
                f"{waited:.0f} ms in the queue"
            )
        )

    def _deliver(self, batch: list[Pending], outcome: RunResult, finished: float) -> None:
        """Count a batch's outcome and answer its requests; whatever fails here, none of
        them is left waiting."""
        with self._lock:
            self._in_flight -= 1
        try:
            self._deliver_outcome(batch, outcome, finished)
        except Exception:  # noqa: BLE001 - no waiting client may be left hanging
            log.exception("model '%s': delivering a batch failed", self.model.name)
            self._fail_unanswered(batch)

    def _fail_unanswered(self, batch: list[Pending]) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(
                    InferenceFailed(f"model '{self.model.name}' failed to run")
                )

    def _deliver_outcome(self, batch: list[Pending], outcome: RunResult, finished: float) -> None:
        results, timing = outcome
        rows = sum(item.rows for item in batch)
        self.stats.record_execution(rows, timing)
        self.observer(
            "executed",
            {"rows": rows, "requests": len(batch), "compute_s": sum(timing) / 1e9},
        )
        for item, result in zip(batch, results, strict=True):
            if item.future.done():
                self._count_failure("CANCELED", finished - item.enqueued)
            elif isinstance(result, Exception):
                self._count_failure("BACKEND", finished - item.enqueued)
                item.future.set_exception(result)
            else:
                self._count_success(item, finished, timing)
                item.future.set_result(result)

    def _run_batch(self, batch: list[Pending]) -> tuple[list[Any], tuple[int, int, int]]:
        """Runs on an executor thread: one merged run, split back by rows. Returns the
        results and the (input, infer, output) durations in ns; it touches no state."""
        start = time.perf_counter_ns()
        if len(batch) == 1:
            prepared = time.perf_counter_ns()
            results: list[Any] = [self._run_one(batch[0])]
            infer_done = time.perf_counter_ns()
        else:
            feeds = {
                name: np.concatenate([item.inputs[name] for item in batch])
                for name in batch[0].inputs
            }
            prepared = time.perf_counter_ns()
            try:
                merged = self.model.run(feeds)
            except InferenceFailed:
                results = [self._run_one(item) for item in batch]
                infer_done = time.perf_counter_ns()
            else:
                infer_done = time.perf_counter_ns()
                results = []
                offset = 0
                for item in batch:
                    results.append({k: v[offset : offset + item.rows] for k, v in merged.items()})
                    offset += item.rows
        done = time.perf_counter_ns()
        return results, (prepared - start, infer_done - prepared, done - infer_done)

    def _run_one(self, item: Pending) -> Any:
        try:
            return self.model.run(item.inputs)
        except InferenceFailed as exc:
            return exc

    def _count_success(self, item: Pending, finished: float, timing: tuple[int, int, int]) -> None:
        stats = self.stats
        stats.success += 1
        stats.inference_count += item.rows
        stats.queue_ns += int((item.started - item.enqueued) * 1e9)
        stats.request_ns += int((finished - item.enqueued) * 1e9)
        stats.compute_input_ns += timing[0]
        stats.compute_infer_ns += timing[1]
        stats.compute_output_ns += timing[2]
        stats.last_inference_ms = int(time.time() * 1000)
        self.observer(
            "success",
            {
                "rows": item.rows,
                "queue_s": item.started - item.enqueued,
                "request_s": finished - item.enqueued,
            },
        )

    def _count_failure(self, reason: str, waited_s: float = 0.0) -> None:
        self.stats.record_failure(reason, int(waited_s * 1e9))
        self.observer("failure", {"reason": reason, "request_s": waited_s})
