"""Load benchmark of the inference service beside in-process onnxruntime.

Run by hand: ``.venv/bin/python benchmarks/service_load.py [--duration S] [--markdown]``.

It exports the demo repository into a temporary directory and starts ``layerserve serve``
on it once per worker count (``--workers``, default 1 and 2: a subprocess on a free loopback
port, one after the other, each measured once all its workers listen), or measures a
running server given with ``--url``. A load generator in a separate process
(``layerserve.loadgen``: asyncio, uvloop when installed, raw keep-alive HTTP/1.1
connections with pre-encoded requests, so that it costs little CPU; ``--generators`` more
of them where one core cannot drive many workers) keeps ``concurrency`` requests in flight
for a fixed time, for each protocol (V2 JSON, V2 binary tensor data extension), batch size
and concurrency. Every response's status is checked, and one response per protocol and
batch size is compared with onnxruntime's own output.

Printed per row: requests/s, samples/s (rows), p50 and p99 latency of every request in the
measuring window; the CPU used by the server (the process started and every process under
it: the supervisor, its workers and their children, read from /proc), by the load generator
and by anything else on the machine (in cores, so 2.0 is all of a 2-core machine; server and
other CPU only for a server this script started: other load makes the numbers worse); and
beside them in-process onnxruntime's samples/s (``session.run`` in a loop, default session
options, same batch size, measured once per batch size, beside the first server while it
is idle).
Under the table: each worker's resident memory after its runs, and the verdicts.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from server_processes import (
    Memory,
    get_json,
    machine_busy_seconds,
    memory_of,
    process_table,
    started_server,
    tree_cpu_seconds,
    wait_ready,
    worker_pids,
)

from layerserve.loadgen import (
    V2_TO_NUMPY,
    Run,
    build_request,
    decode_response,
    generator_process,
    http_request,
)
from layerserve.service.demo import ensure_demo_repository

FORMATS = ("json", "binary")
DEFAULT_WORKERS = [1, 2]


# ---- in-process onnxruntime ----------------------------------------------------------
def in_process_samples_per_s(model_path: Path, x: np.ndarray, seconds: float) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: x}
    for _ in range(20):
        session.run(None, feeds)
    runs, start = 0, time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline:
        for _ in range(10):
            session.run(None, feeds)
        runs += 10
    return runs * x.shape[0] / (now - start)


def in_process_outputs(model_path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x}), strict=True))


# ---- the load generators -------------------------------------------------------------
class Generators:
    """``count`` load generator processes; each level's connections are shared out among
    them, so that the load is not bound by one generator's core on a many-core machine."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes, self.processes = [], []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=generator_process, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def __enter__(self) -> Generators:
        return self

    def __exit__(self, *exc: object) -> None:
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            with contextlib.suppress(OSError):
                pipe.send(None)
            process.join(timeout=10)

    def run(
        self, host: str, port: int, payload: bytes, concurrency: int, warmup: float, duration: float
    ) -> dict[str, Any]:
        """One level: latencies (ms) of all generators, errors and client CPU summed."""
        count = len(self.pipes)
        shares = [concurrency // count + (i < concurrency % count) for i in range(count)]
        busy = [(pipe, share) for pipe, share in zip(self.pipes, shares, strict=True) if share]
        for pipe, share in busy:
            pipe.send((host, port, payload, share, warmup, duration))
        results = [pipe.recv() for pipe, _ in busy]
        for result in results:
            if isinstance(result, Exception):
                raise result
        return {
            "latencies": np.concatenate([r["latencies"] for r in results]),
            "errors": sum(r["errors"] for r in results),
            "client_cpu": sum(r["client_cpu"] for r in results),
        }


# ---- main --------------------------------------------------------------------------
@dataclass
class Row:
    """One measured level of one server: ``workers`` None for a server given by URL."""

    workers: int | None
    run: Run
    worker_cpu: list[float] = field(default_factory=list)  # cores, each worker's own tree


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="measure this running server instead of starting one")
    parser.add_argument(
        "--model-file",
        type=Path,
        help="the model's ONNX file, for the in-process column and the output check "
        "(default: the demo repository's; required with --url)",
    )
    parser.add_argument("--model", default="mlp")
    parser.add_argument(
        "--workers",
        nargs="+",
        type=int,
        help="worker counts to start the server with, one server after the other "
        f"(default: {' '.join(map(str, DEFAULT_WORKERS))}); not with --url",
    )
    parser.add_argument(
        "--generators", type=int, default=1, help="load generator processes (default 1)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per row")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the started servers, e.g. LAYERSERVE_INSTANCES=1 (repeatable; "
        "--workers wins over LAYERSERVE_WORKERS)",
    )
    parser.add_argument(
        "--no-in-process", action="store_true", help="skip the in-process onnxruntime column"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    if args.url and args.workers:
        parser.error("--workers starts servers; a server given with --url runs as it is")
    if args.url and args.model_file is None:
        parser.error("--model-file is required with --url")
    if args.generators < 1 or any(w < 1 for w in args.workers or []):
        parser.error("--generators and --workers take counts of 1 or more")
    console = Console(width=160, stderr=True)
    overrides = dict(item.split("=", 1) for item in args.server_env)

    with Generators(args.generators) as generators:
        if args.url:
            base = args.url.rstrip("/")
            wait_ready(base, None, 30)
            inputs, reference = prepare(args, base, args.model_file, console)
            rows = measure(args, base, None, None, args.model_file, inputs, generators, console)
            memory = []
        else:
            rows, reference, memory = measure_servers(args, overrides, generators, console)
    print_results(args, rows, reference, memory)


def measure_servers(
    args: argparse.Namespace, overrides: dict[str, str], generators: Generators, console: Console
) -> tuple[list[Row], dict[int, float], list[Memory]]:
    """Each worker count's server in turn, on one demo repository; the inputs and
    in-process onnxruntime once, beside the first server while it is idle."""
    rows: list[Row] = []
    memory: list[Memory] = []
    prepared: tuple[dict[int, np.ndarray], dict[int, float]] | None = None
    with tempfile.TemporaryDirectory(prefix="layerserve-bench-") as tmp:
        repository = Path(tmp) / "models"
        ensure_demo_repository(repository)
        model_file = args.model_file or repository / args.model / "1" / "model.onnx"
        for workers in args.workers or DEFAULT_WORKERS:
            log = Path(tempfile.gettempdir()) / f"layerserve-bench-server-{workers}w.log"
            with started_server(repository, workers, overrides, log) as (base, process):
                console.print(
                    f"server {base}, {workers} worker(s) (log: {log}), "
                    f"settings: {overrides or 'defaults'}"
                )
                if prepared is None:
                    prepared = prepare(args, base, model_file, console)
                inputs = prepared[0]
                rows += measure(
                    args, base, process, workers, model_file, inputs, generators, console
                )
                memory.append(memory_of(process, workers))
    return rows, prepared[1] if prepared else {}, memory


def print_results(
    args: argparse.Namespace, rows: list[Row], reference: dict[int, float], memory: list[Memory]
) -> None:
    table = Table(
        "workers",
        "protocol",
        "batch",
        "concurrency",
        "requests/s",
        "samples/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "server CPU",
        "client CPU",
        "other CPU",
        "in-process ORT samples/s",
        title=f"layerserve, model '{args.model}', {os.cpu_count()} cores, "
        f"{args.duration:g} s per row",
    )
    order = {protocol: i for i, protocol in enumerate(FORMATS)}
    # the same load beside itself for each worker count
    for row in sorted(
        rows,
        key=lambda r: (order[r.run.protocol], r.run.batch, r.run.concurrency, r.workers or 0),
    ):
        run = row.run
        table.add_row(
            "-" if row.workers is None else str(row.workers),
            "V2 " + run.protocol,
            str(run.batch),
            str(run.concurrency),
            f"{run.rps:,.0f}",
            f"{run.rps * run.batch:,.0f}",
            f"{run.percentile(50):.2f}",
            f"{run.percentile(99):.2f}",
            str(run.errors),
            "-" if run.server_cpu is None else f"{run.server_cpu:.2f}",
            f"{run.client_cpu:.2f}",
            "-" if run.server_cpu is None else f"{run.other_cpu:.2f}",
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
    for line in verdicts(rows, reference):
        out.print(line, markup=False, highlight=False)


def prepare(
    args: argparse.Namespace, base: str, model_file: Path, console: Console
) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """An input per batch size, shaped by the served model's metadata, and in-process
    onnxruntime's samples/s for each (unless ``--no-in-process``)."""
    input_spec = get_json(f"{base}/v2/models/{args.model}")["inputs"][0]
    dtype = np.dtype(V2_TO_NUMPY[input_spec["datatype"]]).newbyteorder("=")
    rng = np.random.default_rng(0)
    inputs: dict[int, np.ndarray] = {}
    reference: dict[int, float] = {}
    for batch in args.batches:
        shape = [batch, *[d if d > 0 else 1 for d in input_spec["shape"][1:]]]
        inputs[batch] = rng.random(shape).astype(dtype)
        if args.no_in_process:
            continue
        reference[batch] = in_process_samples_per_s(model_file, inputs[batch], args.duration)
        console.print(f"in-process onnxruntime, batch {batch}: {reference[batch]:,.0f} samples/s")
    return inputs, reference


def measure(
    args: argparse.Namespace,
    base: str,
    process: subprocess.Popen | None,
    workers: int | None,
    model_file: Path,
    inputs: dict[int, np.ndarray],
    generators: Generators,
    console: Console,
) -> list[Row]:
    parsed = urllib.parse.urlsplit(base)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    metadata = get_json(f"{base}/v2/models/{args.model}")
    input_name = metadata["inputs"][0]["name"]
    output_names = [o["name"] for o in metadata["outputs"]]
    path = f"/v2/models/{args.model}/infer"
    pids = worker_pids(process.pid) if process is not None else []
    rows = []
    for protocol in args.formats:
        for batch in args.batches:
            body, headers = build_request(protocol, {input_name: inputs[batch]}, output_names)
            check_outputs(base + path, body, headers, model_file, inputs[batch])
            payload = http_request(host, port, path, body, headers)
            for concurrency in args.concurrency:
                before = process_table()
                busy_before, began = machine_busy_seconds(), time.perf_counter()
                result = generators.run(
                    host, port, payload, concurrency, args.warmup, args.duration
                )
                elapsed = time.perf_counter() - began
                after = process_table()
                machine_cpu = (machine_busy_seconds() - busy_before) / elapsed
                server_cpu = None
                if process is not None:
                    server_cpu = tree_cpu_seconds(process.pid, before, after) / elapsed
                run = Run(
                    protocol,
                    batch,
                    concurrency,
                    int(result["latencies"].size),
                    int(result["errors"]),
                    args.duration,
                    result["latencies"],
                    server_cpu,
                    result["client_cpu"],
                    machine_cpu,
                )
                cpu = [tree_cpu_seconds(pid, before, after) / elapsed for pid in pids]
                row = Row(workers, run, cpu if len(pids) > 1 else [])
                rows.append(row)
                split = " + ".join(f"{c:.2f}" for c in row.worker_cpu)
                console.print(
                    f"{workers or '-'} worker(s) {protocol:>6} batch {batch:>3} "
                    f"concurrency {concurrency:>3}: {run.rps:9,.0f} requests/s, "
                    f"p50 {run.percentile(50):7.2f} ms, p99 {run.percentile(99):7.2f} ms, "
                    f"errors {run.errors}, CPU: machine {run.machine_cpu:.2f}"
                    + ("" if server_cpu is None else f", server {server_cpu:.2f}")
                    + (f" (workers {split})" if split else ""),
                    highlight=False,
                    soft_wrap=True,
                )
    return rows


def check_outputs(
    url: str, body: bytes, headers: dict[str, str], model_file: Path, x: np.ndarray
) -> None:
    """One request through urllib: the server's outputs must equal onnxruntime's."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        got = decode_response(response.read(), response.headers)
    expected = in_process_outputs(model_file, x)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def _label(workers: int | None) -> str:
    return "" if workers is None else f", {workers} worker{'s' if workers > 1 else ''}"


def verdicts(rows: list[Row], reference: dict[int, float]) -> list[str]:
    lines = []
    for row in rows:
        run = row.run
        if (run.protocol, run.batch, run.concurrency) == ("json", 1, 64):
            ok = run.rps >= 2000 and run.percentile(99) < 50
            lines.append(
                f"target batch-1 JSON at concurrency 64 >= 2,000 requests/s with p99 < 50 ms"
                f"{_label(row.workers)}: {'met' if ok else 'MISSED'} ({run.rps:,.0f} "
                f"requests/s, p99 {run.percentile(99):.1f} ms)"
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
    return lines + worker_verdicts(rows, reference)


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
        ok = ratio >= 1.6 and two.percentile(99) <= one.percentile(99)
        lines.append(
            f"batch-1 JSON c64: 2 workers {two.rps:,.0f} req/s = {ratio:.2f} x 1 worker "
            f"(target 1.6x), p99 {two.percentile(99):.1f} ms vs {one.percentile(99):.1f} ms "
            f"(target: no worse): {'met' if ok else 'MISSED'}"
        )
    return lines


if __name__ == "__main__":
    main()
