"""Load benchmark of the inference service beside in-process onnxruntime.

Run by hand: ``.venv/bin/python benchmarks/service_load.py [--duration S] [--markdown]``.

It exports the demo repository into a temporary directory and starts ``layerserve serve``
once per worker count (``--workers``, default 1 and 2: subprocesses on free loopback
ports, each on its own copy of the repository, all started before the first row and
measured once all their workers listen), or measures a running server given with
``--url``. Each level is measured on every server in turn, so that a drift of the machine
reaches every worker count's figure alike; ``--repeats N`` measures every level N times
and the table shows each level's median run with the range of requests/s. A load
generator in a separate process (``layerserve.loadgen``: asyncio, uvloop when installed,
raw keep-alive HTTP/1.1 connections with pre-encoded requests, so that it costs little
CPU; ``--generators`` more of them where one core cannot drive many workers) keeps
``concurrency`` requests in flight for a fixed time, for each protocol (V2 JSON, V2 binary
tensor data extension, and V2 gRPC ``ModelInfer`` with raw contents: pre-serialised
requests on raw HTTP/2 connections (``layerserve.h2_loadgen``, as lean as the HTTP/1.1
generator), answers only framed, ``--grpc-connections`` HTTP/2 connections carrying the
concurrent streams; and the same requests on
``ModelStreamInfer``, one stream per unit of concurrency with one request in flight on
each), batch size and concurrency. Every response's status is checked, and one response per
protocol and batch size is compared with onnxruntime's own output. A server given with
``--url`` gets gRPC rows only with ``--grpc-target HOST:PORT``.

Printed per row: requests/s, samples/s (rows), p50 and p99 latency of every request in the
measuring window; the CPU used by the server (the process started and every process under
it: the supervisor, its workers and their children, read from /proc), by the load generator
and by anything else on the machine (in cores, so 2.0 is all of a 2-core machine; server and
other CPU only for a server this script started: other load makes the numbers worse), and
the time a virtual machine's host took from the machine (``steal`` in /proc/stat: a host
that holds the machine to a CPU quota stops it for the rest of the quota's period, often
100 ms, once it used its share; such stalls show in p99 as well as in this column); and
beside them in-process onnxruntime's samples/s (``session.run`` in a loop, default session
options, same batch size): the median of its measurements beside the idle servers, before
the first row and after each repeat, so that a drift of the machine during the run moves
the reference with the rows.
Under the table: each worker's resident memory after its runs, and the verdicts, among
them gRPC's two targets: batch-64 gRPC raw samples/s at least HTTP binary's (best
concurrency of each), and batch-1 gRPC requests/s at 64 concurrent streams at least HTTP
JSON's at 64 connections, per worker count, from the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import multiprocessing
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from rich.console import Console
from server_processes import (
    Memory,
    free_port,
    get_json,
    machine_cpu_seconds,
    memory_of,
    process_table,
    started_server,
    tree_cpu_seconds,
    wait_ready,
    worker_pids,
)
from service_report import FORMATS, print_results
from service_verdicts import Row

from layerserve.grpc_loadgen import (
    GRPC_MODEL_INFER,
    decode_grpc_response,
    generator_process,
    grpc_infer_request,
)
from layerserve.loadgen import (
    V2_TO_NUMPY,
    Run,
    build_request,
    decode_response,
    http_request,
    milliseconds,
)
from layerserve.service.demo import ensure_demo_repository

GRPC_FORMATS = ("grpc", "grpc-stream")
DEFAULT_GRPC_CONNECTIONS = 16
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


def reference_run(
    model_path: Path, x: np.ndarray, args: argparse.Namespace, console: Console
) -> float:
    """In-process onnxruntime's samples/s for ``x``, measured now and printed."""
    value = in_process_samples_per_s(model_path, x, args.duration)
    console.print(f"in-process onnxruntime, batch {x.shape[0]}: {value:,.0f} samples/s")
    return value


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
        return self._gather(
            concurrency, lambda share: (host, port, payload, share, warmup, duration)
        )

    def run_grpc(
        self,
        target: str,
        request: bytes,
        concurrency: int,
        connections: int,
        warmup: float,
        duration: float,
        streaming: bool = False,
    ) -> dict[str, Any]:
        """One gRPC level; each generator opens its share of ``connections`` (at least one)."""
        count = len(self.pipes)
        per_generator = max(1, -(-connections // count))

        def command(share: int) -> dict[str, Any]:
            return {
                "target": target,
                "request": request,
                "concurrency": share,
                "connections": per_generator,
                "warmup": warmup,
                "duration": duration,
                "streaming": streaming,
            }

        return self._gather(concurrency, command)

    def _gather(self, concurrency: int, command: Any) -> dict[str, Any]:
        count = len(self.pipes)
        shares = [concurrency // count + (i < concurrency % count) for i in range(count)]
        busy = [(pipe, share) for pipe, share in zip(self.pipes, shares, strict=True) if share]
        for pipe, share in busy:
            pipe.send(command(share))
        results = [pipe.recv() for pipe, _ in busy]
        for result in results:
            if isinstance(result, Exception):
                raise result
        return {
            "latencies": np.concatenate([r["latencies"] for r in results]),
            "succeeded": sum(r["succeeded"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "client_cpu": sum(r["client_cpu"] for r in results),
        }


# ---- main --------------------------------------------------------------------------
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
        help="worker counts to start servers with, all running side by side "
        f"(default: {' '.join(map(str, DEFAULT_WORKERS))}); not with --url",
    )
    parser.add_argument(
        "--generators", type=int, default=1, help="load generator processes (default 1)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per row")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of every level, the servers' turns alternating; the table shows each "
        "level's median run and the range (default 1)",
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument(
        "--grpc-target",
        metavar="HOST:PORT",
        help="the gRPC port of the server given with --url (without it, no gRPC rows there)",
    )
    parser.add_argument(
        "--grpc-connections",
        type=int,
        default=DEFAULT_GRPC_CONNECTIONS,
        help="HTTP/2 connections the gRPC streams share, at most one per stream "
        f"(default {DEFAULT_GRPC_CONNECTIONS}: several, as worker processes share the port "
        "by connection)",
    )
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
    if min(args.generators, args.grpc_connections, args.repeats, *(args.workers or [1])) < 1:
        parser.error(
            "--generators, --grpc-connections, --repeats and --workers take counts of 1 or more"
        )
    if args.grpc_target and not args.url:
        parser.error("--grpc-target goes with --url; a started server's gRPC port is known")
    console = Console(width=160, stderr=True)
    overrides = dict(item.split("=", 1) for item in args.server_env)
    counts = args.workers or DEFAULT_WORKERS
    if len(set(counts)) != len(counts):
        parser.error("--workers takes each worker count once (its servers run side by side)")
    if len(counts) > 1 and overrides.get("LAYERSERVE_GRPC_PORT", "0") != "0":
        parser.error("one LAYERSERVE_GRPC_PORT cannot serve several servers running together")

    with Generators(args.generators) as generators:
        if args.url:
            base = args.url.rstrip("/")
            wait_ready(base, None, 30)
            inputs, reference = prepare(args, base, args.model_file, console)
            server = Server(None, base, args.grpc_target, None)
            rows = []
            for repeat in range(args.repeats):
                for row in measure(args, [server], args.model_file, inputs, generators, console):
                    row.repeat = repeat
                    rows.append(row)
            references = {batch: [value] for batch, value in reference.items()}
            memory = []
        else:
            rows, references, memory = measure_servers(args, overrides, generators, console)
    print_results(args, rows, references, memory)


@dataclass
class Server:
    """A server to measure: ``workers`` and ``process`` None for one given by URL;
    ``grpc_target`` HOST:PORT, None for no gRPC rows."""

    workers: int | None
    base: str
    grpc_target: str | None
    process: subprocess.Popen | None

    @functools.cached_property
    def pids(self) -> list[int]:
        return worker_pids(self.process.pid) if self.process is not None else []


def measure_servers(
    args: argparse.Namespace, overrides: dict[str, str], generators: Generators, console: Console
) -> tuple[list[Row], dict[int, list[float]], list[Memory]]:
    """Every worker count's server, started together, each on its own copy of the demo
    repository; each level is measured on one server after the other (so a drift of the
    machine reaches every server's figure alike), ``--repeats`` times; in-process
    onnxruntime beside the idle servers, before the rows and after each repeat (its
    measurements per batch size, in order)."""
    rows: list[Row] = []
    references: dict[int, list[float]] = {}
    counts = args.workers or DEFAULT_WORKERS
    with tempfile.TemporaryDirectory(prefix="layerserve-bench-") as tmp:
        demo = Path(tmp) / "demo"
        ensure_demo_repository(demo)
        model_file = args.model_file or demo / args.model / "1" / "model.onnx"
        with contextlib.ExitStack() as stack:
            servers = []
            for workers in counts:
                repository = Path(tmp) / f"models-{workers}w"
                shutil.copytree(demo, repository)
                log = Path(tempfile.gettempdir()) / f"layerserve-bench-server-{workers}w.log"
                settings = {"LAYERSERVE_GRPC_PORT": str(free_port()), **overrides}
                grpc_port = int(settings["LAYERSERVE_GRPC_PORT"])
                base, process = stack.enter_context(
                    started_server(repository, workers, settings, log)
                )
                grpc_target = f"127.0.0.1:{grpc_port}" if grpc_port else None
                servers.append(Server(workers, base, grpc_target, process))
                console.print(
                    f"server {base}, {workers} worker(s) (log: {log}), "
                    f"settings: {overrides or 'defaults'}"
                )
            inputs, first = prepare(args, servers[0].base, model_file, console)
            for batch, value in first.items():
                references.setdefault(batch, []).append(value)
            for repeat in range(args.repeats):
                for row in measure(args, servers, model_file, inputs, generators, console):
                    row.repeat = repeat
                    rows.append(row)
                for batch, values in references.items():
                    values.append(reference_run(model_file, inputs[batch], args, console))
            memory = [memory_of(s.process, s.workers) for s in servers if s.process and s.workers]
    return rows, references, memory


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
        reference[batch] = reference_run(model_file, inputs[batch], args, console)
    return inputs, reference


def measure(
    args: argparse.Namespace,
    servers: list[Server],
    model_file: Path,
    inputs: dict[int, np.ndarray],
    generators: Generators,
    console: Console,
) -> list[Row]:
    """Every protocol, batch size and concurrency, each level on every server in turn."""
    metadata = get_json(f"{servers[0].base}/v2/models/{args.model}")
    input_name = metadata["inputs"][0]["name"]
    output_names = [o["name"] for o in metadata["outputs"]]
    path = f"/v2/models/{args.model}/infer"
    rows = []
    for protocol in args.formats:
        for batch in args.batches:
            feeds = {input_name: inputs[batch]}
            if protocol in GRPC_FORMATS:
                request = grpc_infer_request(args.model, feeds, output_names)
            else:
                body, headers = build_request(protocol, feeds, output_names)
            loads = {}
            for server in servers:
                if protocol in GRPC_FORMATS and server.grpc_target is None:
                    console.print("no gRPC target (--grpc-target, or gRPC off): no gRPC rows")
                elif protocol in GRPC_FORMATS:
                    check_grpc_outputs(server.grpc_target, request, model_file, inputs[batch])
                    loads[server.base] = request
                else:
                    check_outputs(server.base + path, body, headers, model_file, inputs[batch])
                    parsed = urllib.parse.urlsplit(server.base)
                    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
                    loads[server.base] = (host, port, http_request(host, port, path, body, headers))
            for concurrency in args.concurrency:
                for server in (s for s in servers if s.base in loads):
                    load = loads[server.base]
                    level = (protocol, batch, concurrency)
                    row = measure_level(args, server, level, load, generators)
                    rows.append(row)
                    print_row(console, row)
    return rows


def measure_level(
    args: argparse.Namespace,
    server: Server,
    level: tuple[str, int, int],
    load: Any,
    generators: Generators,
) -> Row:
    """One level (protocol, batch size, concurrency) on one server: ``load`` is the
    pre-serialised gRPC request, or HTTP's (host, port, request bytes)."""
    protocol, batch, concurrency = level
    before = process_table()
    (busy_before, stolen_before), began = machine_cpu_seconds(), time.perf_counter()
    if protocol in GRPC_FORMATS:
        result = generators.run_grpc(
            server.grpc_target,
            load,
            concurrency,
            args.grpc_connections,
            args.warmup,
            args.duration,
            streaming=protocol == "grpc-stream",
        )
    else:
        host, port, payload = load
        result = generators.run(host, port, payload, concurrency, args.warmup, args.duration)
    elapsed = time.perf_counter() - began
    after = process_table()
    busy_after, stolen_after = machine_cpu_seconds()
    machine_cpu = (busy_after - busy_before) / elapsed
    steal_cpu = (stolen_after - stolen_before) / elapsed
    server_cpu = None
    if server.process is not None:
        server_cpu = tree_cpu_seconds(server.process.pid, before, after) / elapsed
    run = Run(
        protocol,
        batch,
        concurrency,
        int(result["succeeded"]),
        int(result["errors"]),
        args.duration,
        result["latencies"],
        server_cpu,
        result["client_cpu"],
        machine_cpu,
        steal_cpu=steal_cpu,
    )
    cpu = [tree_cpu_seconds(pid, before, after) / elapsed for pid in server.pids]
    return Row(server.workers, run, cpu if len(cpu) > 1 else [])


def print_row(console: Console, row: Row) -> None:
    run = row.run
    split = " + ".join(f"{c:.2f}" for c in row.worker_cpu)
    console.print(
        f"{row.workers or '-'} worker(s) {run.protocol:>6} batch {run.batch:>3} "
        f"concurrency {run.concurrency:>3}: {run.rps:9,.0f} requests/s, "
        f"p50 {milliseconds(run.percentile(50)):>7} ms, "
        f"p99 {milliseconds(run.percentile(99)):>7} ms, "
        f"errors {run.errors}, CPU: machine {run.machine_cpu:.2f}, steal {run.steal_cpu:.2f}"
        + ("" if run.server_cpu is None else f", server {run.server_cpu:.2f}")
        + (f" (workers {split})" if split else ""),
        highlight=False,
        soft_wrap=True,
    )


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


def check_grpc_outputs(target: str, request: bytes, model_file: Path, x: np.ndarray) -> None:
    """One ModelInfer call: the server's outputs must equal onnxruntime's."""
    with grpc.insecure_channel(target) as channel:
        infer = channel.unary_unary(GRPC_MODEL_INFER)
        got = decode_grpc_response(infer(request, timeout=30))
    expected = in_process_outputs(model_file, x)
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


if __name__ == "__main__":
    main()
