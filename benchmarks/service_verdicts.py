"""The rows ``service_load.py`` measures and the verdicts printed under its table: the
service's targets (batch-1 JSON at concurrency 64, batch-64 binary against in-process
onnxruntime), what a second worker pays on two cores, and gRPC against HTTP in the same
run (batch-64 raw contents against the binary extension, batch-1 at 64 streams against
JSON at 64 connections)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from layerserve.loadgen import Run, milliseconds


@dataclass
class Row:
    """One measured level of one server: ``workers`` None for a server given by URL."""

    workers: int | None
    run: Run
    worker_cpu: list[float] = field(default_factory=list)  # cores, each worker's own tree
    repeat: int = 0  # which of ``--repeats`` measured it


def _label(workers: int | None) -> str:
    return "" if workers is None else f", {workers} worker{'s' if workers > 1 else ''}"


def _no_worse(run: Run, baseline: Run) -> bool:
    """``run``'s p99 is at most ``baseline``'s (not when either kept no latency)."""
    p99, limit = run.percentile(99), baseline.percentile(99)
    return p99 is not None and limit is not None and p99 <= limit


def verdicts(rows: list[Row], reference: dict[int, float]) -> list[str]:
    lines = []
    for row in rows:
        run = row.run
        if (run.protocol, run.batch, run.concurrency) == ("json", 1, 64):
            p99 = run.percentile(99)
            ok = run.rps >= 2000 and p99 is not None and p99 < 50
            lines.append(
                f"target batch-1 JSON at concurrency 64 >= 2,000 requests/s with p99 < 50 ms"
                f"{_label(row.workers)}: {'met' if ok else 'MISSED'} ({run.rps:,.0f} "
                f"requests/s, p99 {milliseconds(p99, 1)} ms)"
            )
    binary64 = [r for r in rows if r.run.protocol == "binary" and r.run.batch == 64]
    if binary64 and 64 in reference:
        best = max(binary64, key=lambda r: r.run.rps)
        share = best.run.rps * 64 / reference[64]
        lines.append(
            f"target batch-64 binary >= half of in-process onnxruntime's samples/s: "
            f"{'met' if share >= 0.5 else 'MISSED'} (best: {best.run.rps * 64:,.0f} samples/s "
            f"at concurrency {best.run.concurrency}{_label(best.workers)} = {share:.0%} of "
            f"{reference[64]:,.0f})"
        )
    return lines + worker_verdicts(rows, reference) + grpc_verdicts(rows)


def worker_verdicts(rows: list[Row], reference: dict[int, float]) -> list[str]:
    """The two figures that say whether a second worker pays on two cores: batch-64 binary
    against in-process onnxruntime, and batch-1 JSON against one worker of the same run."""
    lines = []
    binary = [
        r.run for r in rows if r.workers == 2 and (r.run.protocol, r.run.batch) == ("binary", 64)
    ]
    if binary and 64 in reference:
        best = max(binary, key=lambda run: run.rps)
        share = best.rps * 64 / reference[64]
        lines.append(
            f"batch-64 binary, 2 workers: {best.rps * 64:,.0f} samples/s = {share:.0%} of "
            f"in-process onnxruntime ({reference[64]:,.0f}; target 60%, best at concurrency "
            f"{best.concurrency}): {'met' if share >= 0.6 else 'MISSED'}"
        )
    json64 = {
        r.workers: r.run
        for r in rows
        if (r.run.protocol, r.run.batch, r.run.concurrency) == ("json", 1, 64)
    }
    if 1 in json64 and 2 in json64 and json64[1].rps > 0:
        one, two = json64[1], json64[2]
        ratio = two.rps / one.rps
        ok = ratio >= 1.6 and _no_worse(two, one)
        lines.append(
            f"batch-1 JSON c64: 2 workers {two.rps:,.0f} req/s = {ratio:.2f} x 1 worker "
            f"(target 1.6x), p99 {milliseconds(two.percentile(99), 1)} ms vs "
            f"{milliseconds(one.percentile(99), 1)} ms "
            f"(target: no worse): {'met' if ok else 'MISSED'}"
        )
    return lines


def paired_verdicts(rows: list[Row], references: dict[int, list[float]]) -> list[str]:
    """The two worker figures per repeat, with ``--repeats`` 2 or more: within a repeat the
    1- and 2-worker runs of a level were made one after the other, and in-process
    onnxruntime was measured right before and after the repeat, so each repeat's ratio is
    the least touched by the machine's drift over the whole run (a slow spell that falls on
    one worker count's median run moves the ratio of medians, not the pairs)."""
    runs: dict[tuple, dict[int, Run]] = {}
    for row in rows:
        runs.setdefault((row.workers, row.run.protocol, row.run.batch, row.run.concurrency), {})[
            row.repeat
        ] = row.run
    lines = []
    binary = runs.get((2, "binary", 64, 64), {})
    bracket = references.get(64, [])
    shares = [
        run.rps * 64 / ((bracket[repeat] + bracket[repeat + 1]) / 2)
        for repeat, run in binary.items()
        if repeat + 1 < len(bracket)
    ]
    if len(shares) > 1:
        lines.append(
            "batch-64 binary c64, 2 workers, paired by repeat (against in-process "
            f"onnxruntime measured before and after it): {_spread(shares, '.0%')}"
        )
    one, two = runs.get((1, "json", 1, 64), {}), runs.get((2, "json", 1, 64), {})
    pairs = [(one[r], two[r]) for r in sorted(one.keys() & two.keys()) if one[r].rps > 0]
    if len(pairs) > 1:
        ratios = [b.rps / a.rps for a, b in pairs]
        no_worse = sum(_no_worse(b, a) for a, b in pairs)
        lines.append(
            f"batch-1 JSON c64, 2 workers against 1, paired by repeat: "
            f"{_spread(ratios, '.2f', 'x')}; p99 no worse in {no_worse} of {len(pairs)}"
        )
    # gRPC against HTTP binary at batch 64: within a repeat a server's rows of one level
    # were measured one after the other
    for workers in sorted({w for w, *_ in runs}, key=lambda w: w or 0):
        binary = runs.get((workers, "binary", 64, 64), {})
        for protocol, name in (("grpc", "gRPC raw"), ("grpc-stream", "gRPC stream")):
            grpc = runs.get((workers, protocol, 64, 64), {})
            repeats = sorted(r for r in grpc.keys() & binary.keys() if binary[r].rps > 0)
            if len(repeats) > 1:
                ratios = [grpc[r].rps / binary[r].rps for r in repeats]
                lines.append(
                    f"batch-64 {name} c64 against HTTP binary{_label(workers)}, paired by "
                    f"repeat: {_spread(ratios, '.0%')}"
                )
    return lines


def _spread(values: list[float], spec: str, unit: str = "") -> str:
    """The median of ``values`` and their range."""
    low, middle, high = min(values), statistics.median(values), max(values)
    return f"median {middle:{spec}}{unit} ({low:{spec}}-{high:{spec}}{unit}, {len(values)} repeats)"


def grpc_verdicts(rows: list[Row]) -> list[str]:
    """gRPC against HTTP, per worker count, same run: batch-64 samples/s (raw contents
    against the binary extension, best concurrency of each) and batch-1 requests/s at 64
    concurrent streams against JSON at 64 connections."""
    lines = []
    for workers in sorted({r.workers or 0 for r in rows}):
        mine = [r.run for r in rows if (r.workers or 0) == workers]

        def best(protocol: str, batch: int, runs: list[Run] = mine) -> Run | None:
            found = [r for r in runs if (r.protocol, r.batch) == (protocol, batch)]
            return max(found, key=lambda run: run.rps) if found else None

        def at(protocol: str, batch: int, concurrency: int, runs: list[Run] = mine) -> Run | None:
            key = (protocol, batch, concurrency)
            found = [r for r in runs if (r.protocol, r.batch, r.concurrency) == key]
            return found[0] if found else None

        label = _label(workers or None)
        for protocol, name in (("grpc", "gRPC raw"), ("grpc-stream", "gRPC stream")):
            grpc64, binary64 = best(protocol, 64), best("binary", 64)
            if grpc64 and binary64:
                ok = grpc64.rps >= binary64.rps
                lines.append(
                    f"target batch-64 {name} samples/s >= HTTP binary's{label}: "
                    f"{'met' if ok else 'MISSED'} ({grpc64.rps * 64:,.0f} at concurrency "
                    f"{grpc64.concurrency} vs {binary64.rps * 64:,.0f} at concurrency "
                    f"{binary64.concurrency})"
                )
            grpc1, json1 = at(protocol, 1, 64), at("json", 1, 64)
            if grpc1 and json1:
                ok = grpc1.rps >= json1.rps
                lines.append(
                    f"target batch-1 {name} requests/s at 64 streams >= HTTP JSON's at 64 "
                    f"connections{label}: {'met' if ok else 'MISSED'} ({grpc1.rps:,.0f} vs "
                    f"{json1.rps:,.0f} requests/s; p99 {milliseconds(grpc1.percentile(99), 1)} "
                    f"ms vs {milliseconds(json1.percentile(99), 1)} ms)"
                )
    return lines
