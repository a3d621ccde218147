"""layerserve measured by Triton's own load generator, ``perf_analyzer`` (tritonclient's C++
clients), over V2 HTTP (JSON and the binary extension) and V2 gRPC (``ModelInfer`` and
``ModelStreamInfer``).

``benchmarks/service_load.py`` drives HTTP/1.1 and HTTP/2 with small asyncio clients of
its own, written to cost the shared machine little and alike per request. Here every
protocol is driven by the same native client, as platform teams that run Triton measure
their servers, and each row says what that client took.

Each row is one ``perf_analyzer`` run (a warm-up window, then windows of
``--window-ms`` until three agree); the rows of a server alternate protocols and batch
sizes, ``--repeats`` times, and the table gives each one's median. The inputs are the
values ``service_load.py`` sends (uniform in [0, 1)), given as perf_analyzer input data
(JSON rows at batch 1 only: at batch 64 perf_analyzer's JSON writer takes a whole core):
its own random inputs are random bit patterns, NaN and infinities among them, which
layerserve reads (as Triton does) but by a slower path than finite JSON numbers.

Needs ``perf_analyzer``, shipped in the tritonclient wheel (``.venv/bin/perf_analyzer``,
with the test dependencies), and two libraries it links: ``libb64.so.0d`` (Debian:
``apt-get install libb64-0d``) and ``libcudart.so.12`` (``pip install
nvidia-cuda-runtime-cu12``, found here from that package; the CPU runs never use it).

    .venv/bin/python benchmarks/triton_perf_analyzer.py --markdown
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from rich.console import Console
from server_processes import (
    free_port,
    get_json,
    machine_cpu_seconds,
    process_table,
    started_server,
    tree_cpu_seconds,
)

from layerserve.service.demo import ensure_demo_repository

# perf_analyzer's arguments for each protocol. HTTP runs one thread a request in flight
# (its asynchronous HTTP mode stops on libcurl errors); gRPC its asynchronous clients, one
# a thread (``measure_one``).
PROTOCOLS = {
    "json": ["-i", "http", "--sync", "--input-tensor-format", "json"]
    + ["--output-tensor-format", "json"],
    "binary": ["-i", "http", "--sync", "--input-tensor-format", "binary"]
    + ["--output-tensor-format", "binary"],
    "grpc": ["-i", "grpc", "--async"],
    "grpc-stream": ["-i", "grpc", "--async", "--streaming"],
}
LABELS = {
    "json": "V2 HTTP JSON",
    "binary": "V2 HTTP binary",
    "grpc": "V2 gRPC ModelInfer",
    "grpc-stream": "V2 gRPC ModelStreamInfer",
}
PROGRESS = Console(stderr=True, markup=False, highlight=False)
SETUP_HINT = (
    "perf_analyzer comes with tritonclient (pip install -e '.[test]'); it links "
    "libb64.so.0d (apt-get install libb64-0d) and libcudart.so.12 "
    "(pip install nvidia-cuda-runtime-cu12)"
)


@dataclass
class Row:
    workers: int
    protocol: str
    batch: int
    concurrency: int
    samples_per_s: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    steal_cpu: list[float] = field(default_factory=list)

    @property
    def samples(self) -> float:
        return statistics.median(self.samples_per_s)


def perf_analyzer_command(path: str | None) -> tuple[list[str], dict[str, str]]:
    """The binary and the environment it runs in; exits saying what is missing."""
    binary = path or shutil.which("perf_analyzer", path=str(Path(sys.executable).parent))
    binary = binary or shutil.which("perf_analyzer")
    if binary is None:
        raise SystemExit(f"perf_analyzer not found. {SETUP_HINT}")
    env = dict(os.environ)
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    if spec is not None and spec.submodule_search_locations:
        lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(lib), env.get("LD_LIBRARY_PATH")])
        )
    probe = subprocess.run([binary, "--version"], env=env, capture_output=True, text=True)
    if "error while loading shared libraries" in probe.stderr:
        raise SystemExit(f"{binary}: {probe.stderr.strip()}. {SETUP_HINT}")
    return [binary], env


def input_data(base: str, model: str, directory: Path) -> Path:
    """perf_analyzer's input data file: one batch-1 input of uniform values in [0, 1)."""
    metadata = get_json(f"{base}/v2/models/{model}")
    data = {}
    rng = np.random.default_rng(0)
    for spec in metadata["inputs"]:
        shape = [d if d > 0 else 1 for d in spec["shape"][1:]]
        data[spec["name"]] = {
            "content": rng.random(shape).astype(np.float32).ravel().tolist(),
            "shape": shape,
        }
    path = directory / "input-data.json"
    path.write_bytes(orjson.dumps({"data": [data]}))
    return path


def measure_one(
    command: list[str],
    env: dict[str, str],
    args: argparse.Namespace,
    targets: dict[str, str],
    protocol: str,
    batch: int,
    data: Path,
    server_pid: int,
    report: Path,
) -> tuple[float, float, float, float, float]:
    """One perf_analyzer run: samples/s, p99 ms, server CPU, client CPU and the CPU the
    machine's host took from it (steal), in cores."""
    transport = "grpc" if protocol.startswith("grpc") else "http"
    argv = [
        *command,
        "-m",
        args.model,
        "-u",
        targets[transport],
        *PROTOCOLS[protocol],
        "-b",
        str(batch),
        "--concurrency-range",
        str(args.concurrency),
        "--input-data",
        str(data),
        "-p",
        str(args.window_ms),
        "-s",
        str(args.stability),
        "-f",
        str(report),
    ]
    if transport == "grpc":
        # Its asynchronous gRPC clients, one a thread, each keep several requests in
        # flight; each gets a connection of its own (perf_analyzer's clients share one
        # six at a time by default), so that worker processes, which share the port by
        # connection, get an even share.
        argv += ["--max-threads", str(args.grpc_threads)]
        env = {**env, "TRITON_CLIENT_GRPC_CHANNEL_MAX_SHARE_COUNT": "1"}
    before, began = process_table(), time.perf_counter()
    stolen_before = machine_cpu_seconds()[1]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = tree_cpu_seconds(server_pid, before, process_table()) / elapsed
    steal_cpu = (machine_cpu_seconds()[1] - stolen_before) / elapsed
    client_cpu = (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / elapsed
    if done.returncode != 0 or not report.exists():
        raise SystemExit(
            f"perf_analyzer failed ({' '.join(argv)}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    with report.open() as handle:
        (line,) = list(csv.DictReader(handle))
    report.unlink()
    return (
        float(line["Inferences/Second"]),
        float(line["p99 latency"]) / 1e3,
        server_cpu,
        client_cpu,
        steal_cpu,
    )


def measure_server(
    args: argparse.Namespace,
    command: list[str],
    env: dict[str, str],
    workers: int,
    repository: Path,
    directory: Path,
) -> list[Row]:
    grpc_port = free_port()
    log = directory / f"server-{workers}w.log"
    settings = {"LAYERSERVE_GRPC_PORT": str(grpc_port)}
    rows: dict[tuple[str, int], Row] = {}
    with started_server(repository, workers, settings, log) as (base, process):
        targets = {"http": base.removeprefix("http://"), "grpc": f"127.0.0.1:{grpc_port}"}
        data = input_data(base, args.model, directory)
        for repeat in range(args.repeats):
            for batch in args.batches:
                for protocol in args.protocols:
                    if protocol == "json" and batch > 1:
                        continue  # perf_analyzer's JSON writer, not the server, sets the pace
                    row = rows.setdefault(
                        (protocol, batch), Row(workers, protocol, batch, args.concurrency)
                    )
                    samples, p99, server, client, steal = measure_one(
                        command,
                        env,
                        args,
                        targets,
                        protocol,
                        batch,
                        data,
                        process.pid,
                        directory / "report.csv",
                    )
                    row.samples_per_s.append(samples)
                    row.p99_ms.append(p99)
                    row.server_cpu.append(server)
                    row.client_cpu.append(client)
                    row.steal_cpu.append(steal)
                    PROGRESS.print(
                        f"{workers} worker(s), {protocol}, batch {batch}, repeat {repeat + 1}: "
                        f"{samples:,.0f} samples/s, p99 {p99:.1f} ms, server CPU {server:.2f}, "
                        f"perf_analyzer CPU {client:.2f}, steal {steal:.2f}"
                    )
    return list(rows.values())


def print_table(args: argparse.Namespace, rows: list[Row]) -> None:
    header = [
        "workers",
        "protocol",
        "batch",
        "concurrency",
        "requests/s",
        "samples/s (min-max)",
        "p99 ms",
        "server CPU",
        "perf_analyzer CPU",
        "steal CPU",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = {protocol: i for i, protocol in enumerate(PROTOCOLS)}
    for row in sorted(rows, key=lambda r: (r.batch, order[r.protocol], r.workers)):
        cells = [
            str(row.workers),
            LABELS[row.protocol],
            str(row.batch),
            str(row.concurrency),
            f"{row.samples / row.batch:,.0f}",
            f"{row.samples:,.0f} ({min(row.samples_per_s):,.0f}-{max(row.samples_per_s):,.0f})",
            f"{statistics.median(row.p99_ms):.1f}",
            f"{statistics.median(row.server_cpu):.2f}",
            f"{statistics.median(row.client_cpu):.2f}",
            f"{statistics.median(row.steal_cpu):.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if not args.markdown:
        lines = [line.replace("|---", "----") for line in lines]
    title = (
        f"layerserve, model '{args.model}', {os.cpu_count()} cores, perf_analyzer at "
        f"concurrency {args.concurrency}, median of {args.repeats}"
    )
    out = Console(width=200)
    for line in [title, *lines, *verdicts(rows)]:
        out.print(line, markup=False, highlight=False)


def verdicts(rows: list[Row]) -> list[str]:
    """gRPC against HTTP, each worker count: batch-64 raw contents against the binary
    extension, batch 1 against JSON; met when the median samples/s is at least the
    other's. Beside it, the median and range of the ratios of the runs of each repeat."""
    found = {(r.workers, r.protocol, r.batch): r for r in rows}
    lines = []
    for workers in sorted({r.workers for r in rows}):
        for batch, http in ((64, "binary"), (1, "json")):
            reference = found.get((workers, http, batch))
            for protocol in ("grpc", "grpc-stream"):
                row = found.get((workers, protocol, batch))
                if reference is None or row is None:
                    continue
                met = row.samples >= reference.samples
                # each repeat's two runs were made one after the other: their ratio is
                # the least touched by the machine's drift over the whole run
                paired = sorted(
                    a / b for a, b in zip(row.samples_per_s, reference.samples_per_s, strict=True)
                )
                lines.append(
                    f"target batch-{batch} {LABELS[protocol]} >= {LABELS[http]}, {workers} "
                    f"worker(s): {'met' if met else 'MISSED'} ({row.samples:,.0f} vs "
                    f"{reference.samples:,.0f} samples/s, {row.samples / reference.samples:.0%}; "
                    f"paired by repeat {statistics.median(paired):.0%}, "
                    f"{paired[0]:.0%}-{paired[-1]:.0%})"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--grpc-threads",
        type=int,
        default=16,
        help="perf_analyzer's client threads for gRPC, one connection each (its --max-threads)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window-ms", type=int, default=2000, help="perf_analyzer's -p")
    parser.add_argument(
        "--stability", type=int, default=100, help="perf_analyzer's -s (percent; default 100)"
    )
    parser.add_argument("--perf-analyzer", help="the perf_analyzer binary (default: found)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    if min(args.workers) < 1 or args.repeats < 1 or args.concurrency < 1:
        parser.error("--workers, --repeats and --concurrency take counts of 1 or more")
    command, env = perf_analyzer_command(args.perf_analyzer)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="layerserve-perf-analyzer-") as tmp:
        directory = Path(tmp)
        repository = directory / "models"
        ensure_demo_repository(repository)
        for workers in args.workers:
            rows += measure_server(args, command, env, workers, repository, directory)
    print_table(args, rows)


if __name__ == "__main__":
    main()
