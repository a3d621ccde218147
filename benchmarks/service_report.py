"""The table and verdicts ``service_load.py`` prints: with ``--repeats``, each level's
median run."""

from __future__ import annotations

import argparse
import os
import statistics
from collections import defaultdict

from rich.console import Console
from rich.table import Table
from server_processes import Memory
from service_verdicts import Row, paired_verdicts, verdicts

from layerserve.loadgen import milliseconds

FORMATS = ("json", "binary", "grpc", "grpc-stream")
LABELS = {
    "json": "V2 json",
    "binary": "V2 binary",
    "grpc": "V2 gRPC raw",
    "grpc-stream": "V2 gRPC stream",
}


def level_key(row: Row) -> tuple:
    return (row.workers, row.run.protocol, row.run.batch, row.run.concurrency)


def levels(rows: list[Row]) -> dict[tuple, list[Row]]:
    """The runs of each server and level, slowest first."""
    found: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        found[level_key(row)].append(row)
    return {key: sorted(runs, key=lambda row: row.run.rps) for key, runs in found.items()}


def median_rows(rows: list[Row]) -> list[Row]:
    """One row per server and level: the run with the median requests/s (the upper middle
    of an even count). A whole run, not a blend: its latencies and CPU columns belong to
    the requests/s shown beside them."""
    return [runs[len(runs) // 2] for runs in levels(rows).values()]


def print_results(
    args: argparse.Namespace,
    rows: list[Row],
    references: dict[int, list[float]],
    memory: list[Memory],
) -> None:
    """``references``: in-process onnxruntime's samples/s per batch size, measured before
    the first repeat and after each."""
    reference = {batch: statistics.median(values) for batch, values in references.items()}
    table = Table(
        "workers",
        "protocol",
        "batch",
        "concurrency",
        "requests/s",
        *(["requests/s (min-max)"] if args.repeats > 1 else []),
        "samples/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "server CPU",
        "client CPU",
        "other CPU",
        "steal CPU",
        "in-process ORT samples/s",
        title=f"layerserve, model '{args.model}', {os.cpu_count()} cores, "
        f"{args.duration:g} s per row"
        + (f", the median of {args.repeats} runs" if args.repeats > 1 else ""),
    )
    runs_of = levels(rows)
    every_run, rows = rows, median_rows(rows)
    order = {protocol: i for i, protocol in enumerate(FORMATS)}
    # the same load beside itself for each worker count
    for row in sorted(
        rows,
        key=lambda r: (order[r.run.protocol], r.run.batch, r.run.concurrency, r.workers or 0),
    ):
        run = row.run
        table.add_row(
            "-" if row.workers is None else str(row.workers),
            LABELS.get(run.protocol, "V2 " + run.protocol),
            str(run.batch),
            str(run.concurrency),
            f"{run.rps:,.0f}",
            *([spread(runs_of[level_key(row)])] if args.repeats > 1 else []),
            f"{run.rps * run.batch:,.0f}",
            milliseconds(run.percentile(50)),
            milliseconds(run.percentile(99)),
            str(run.errors),
            "-" if run.server_cpu is None else f"{run.server_cpu:.2f}",
            f"{run.client_cpu:.2f}",
            "-" if run.server_cpu is None else f"{run.other_cpu:.2f}",
            "-" if run.steal_cpu is None else f"{run.steal_cpu:.2f}",
            f"{reference[run.batch]:,.0f}" if run.batch in reference else "-",
        )
    out = Console(width=200)
    if args.markdown:
        headers = [str(c.header) for c in table.columns]
        cells = zip(*[list(c.cells) for c in table.columns], strict=True)
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in cells]
        out.print("\n".join(lines), markup=False, highlight=False)
    else:
        out.print(table)
    if memory:
        out.print(
            "resident memory after the runs (VmRSS, MiB): " + "; ".join(m.line() for m in memory),
            markup=False,
            highlight=False,
        )
    for line in verdicts(rows, reference) + paired_verdicts(every_run, references):
        out.print(line, markup=False, highlight=False)


def spread(runs: list[Row]) -> str:
    return f"{runs[0].run.rps:,.0f}-{runs[-1].run.rps:,.0f}"
