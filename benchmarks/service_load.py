"""Load benchmark of the inference service beside in-process onnxruntime.

Run by hand: ``.venv/bin/python benchmarks/service_load.py [--duration S] [--markdown]``.

It starts ``layerserve serve`` itself (a subprocess on a free loopback port, with the demo
repository in a temporary directory), or measures a running server given with ``--url``.
A load generator in a separate process (``layerserve.loadgen``: asyncio, uvloop when
installed, raw keep-alive HTTP/1.1 connections with pre-encoded requests, so that it costs
little CPU) keeps ``concurrency`` requests in flight for a fixed time, for each protocol
(V2 JSON, V2 binary tensor data extension), batch size and concurrency. Every response's
status is checked, and one response per protocol and batch size is compared with
onnxruntime's own output.

Printed per row: requests/s, samples/s (rows), p50 and p99 latency of every request in the
measuring window; the CPU used by the server, by the load generator and by anything else
on the machine (in cores, so 2.0 is all of a 2-core machine; server and other CPU only for a
server this script started: other load makes the numbers worse); and beside them in-process
onnxruntime's samples/s (``session.run`` in a loop, default session options, same batch
size).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from layerserve.loadgen import (
    V2_TO_NUMPY,
    Run,
    build_request,
    decode_response,
    generator_process,
    http_request,
)

FORMATS = ("json", "binary")


# ---- the server --------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return orjson.loads(response.read())


def _wait_ready(base: str, process: subprocess.Popen | None, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode} before it was ready")
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            _get(base + "/v2/health/ready", 1.0)
            return
        time.sleep(0.2)
    raise SystemExit(f"{base} was not ready within {timeout:.0f} s")


@contextlib.contextmanager
def started_server(
    env_overrides: dict[str, str], log: Path
) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """``layerserve serve`` on a free loopback port with the demo repository."""
    with tempfile.TemporaryDirectory(prefix="layerserve-bench-") as tmp:
        repository = Path(tmp) / "models"
        port = _free_port()
        env = {
            **os.environ,
            "LAYERSERVE_LOG_LEVEL": "warning",
            **env_overrides,
        }
        command = [
            sys.executable,
            "-m",
            "layerserve.cli",
            "serve",
            "--model-repository",
            str(repository),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--demo",
        ]
        with open(log, "wb") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, process)
            yield base, process, repository
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _machine_busy_seconds() -> float:
    """CPU seconds all cores spent outside idle and iowait since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        "(default: the started server's repository; required with --url)",
    )
    parser.add_argument("--model", default="mlp")
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
        help="environment for the started server, e.g. LAYERSERVE_INSTANCES=1 (repeatable)",
    )
    parser.add_argument(
        "--no-in-process", action="store_true", help="skip the in-process onnxruntime column"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    console = Console(width=160, stderr=True)
    overrides = dict(item.split("=", 1) for item in args.server_env)

    with contextlib.ExitStack() as stack:
        process: subprocess.Popen | None = None
        if args.url:
            base = args.url.rstrip("/")
            if args.model_file is None:
                parser.error("--model-file is required with --url")
            model_file = args.model_file
            _wait_ready(base, None, 30)
        else:
            log = Path(tempfile.gettempdir()) / "layerserve-bench-server.log"
            base, process, repository = stack.enter_context(started_server(overrides, log))
            model_file = args.model_file or repository / args.model / "1" / "model.onnx"
            console.print(f"server {base} (log: {log}), settings: {overrides or 'defaults'}")
        runs, reference = measure(args, base, process, model_file, console)

    table = Table(
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
    for run in runs:
        table.add_row(
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
        rows = zip(*[list(c.cells) for c in table.columns], strict=True)
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
        out.print("\n".join(lines), markup=False, highlight=False)
    else:
        out.print(table)
    for line in verdicts(runs, reference):
        out.print(line, markup=False, highlight=False)


def measure(
    args: argparse.Namespace,
    base: str,
    process: subprocess.Popen | None,
    model_file: Path,
    console: Console,
) -> tuple[list[Run], dict[int, float]]:
    parsed = urllib.parse.urlsplit(base)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    metadata = _get(f"{base}/v2/models/{args.model}")
    input_spec = metadata["inputs"][0]
    output_names = [o["name"] for o in metadata["outputs"]]
    dtype = np.dtype(V2_TO_NUMPY[input_spec["datatype"]]).newbyteorder("=")
    path = f"/v2/models/{args.model}/infer"
    rng = np.random.default_rng(0)

    reference: dict[int, float] = {}
    inputs: dict[int, np.ndarray] = {}
    for batch in args.batches:
        shape = [batch, *[d if d > 0 else 1 for d in input_spec["shape"][1:]]]
        inputs[batch] = rng.random(shape).astype(dtype)
        if args.no_in_process:
            continue
        reference[batch] = in_process_samples_per_s(model_file, inputs[batch], args.duration)
        console.print(f"in-process onnxruntime, batch {batch}: {reference[batch]:,.0f} samples/s")

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    generator = context.Process(target=generator_process, args=(child,), daemon=True)
    generator.start()
    runs = []
    try:
        for protocol in args.formats:
            for batch in args.batches:
                body, headers = build_request(
                    protocol, {input_spec["name"]: inputs[batch]}, output_names
                )
                check_outputs(base + path, body, headers, model_file, inputs[batch])
                payload = http_request(host, port, path, body, headers)
                for concurrency in args.concurrency:
                    cpu_before = _cpu_seconds(process.pid) if process else 0.0
                    busy_before, began = _machine_busy_seconds(), time.perf_counter()
                    parent.send((host, port, payload, concurrency, args.warmup, args.duration))
                    result = parent.recv()
                    if isinstance(result, Exception):
                        raise result
                    elapsed = time.perf_counter() - began
                    machine_cpu = (_machine_busy_seconds() - busy_before) / elapsed
                    server_cpu = None
                    if process is not None:
                        server_cpu = (_cpu_seconds(process.pid) - cpu_before) / elapsed
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
                    runs.append(run)
                    console.print(
                        f"{protocol:>6} batch {batch:>3} concurrency {concurrency:>3}: "
                        f"{run.rps:9,.0f} requests/s, p50 {run.percentile(50):7.2f} ms, "
                        f"p99 {run.percentile(99):7.2f} ms, errors {run.errors}, "
                        f"CPU: machine {run.machine_cpu:.2f}",
                        highlight=False,
                    )
    finally:
        parent.send(None)
        generator.join(timeout=10)
    return runs, reference


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


def verdicts(runs: list[Run], reference: dict[int, float]) -> list[str]:
    lines = []
    for run in runs:
        if (run.protocol, run.batch, run.concurrency) == ("json", 1, 64):
            ok = run.rps >= 2000 and run.percentile(99) < 50
            lines.append(
                f"target batch-1 JSON at concurrency 64 >= 2,000 requests/s with p99 < 50 ms: "
                f"{'met' if ok else 'MISSED'} ({run.rps:,.0f} requests/s, "
                f"p99 {run.percentile(99):.1f} ms)"
            )
    binary64 = [r for r in runs if r.protocol == "binary" and r.batch == 64]
    if binary64 and 64 in reference:
        best = max(binary64, key=lambda r: r.rps)
        share = best.rps * 64 / reference[64]
        lines.append(
            f"target batch-64 binary >= half of in-process onnxruntime's samples/s: "
            f"{'met' if share >= 0.5 else 'MISSED'} (best: {best.rps * 64:,.0f} samples/s at "
            f"concurrency {best.concurrency} = {share:.0%} of {reference[64]:,.0f})"
        )
    return lines


if __name__ == "__main__":
    main()
