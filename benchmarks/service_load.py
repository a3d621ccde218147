"""Load benchmark of the inference service beside in-process onnxruntime.

Run by hand: ``.venv/bin/python benchmarks/service_load.py [--duration S] [--markdown]``.

It starts ``layerserve serve`` itself (a subprocess on a free loopback port, with the demo
repository in a temporary directory), or measures a running server given with ``--url``.
A load generator in a separate process (asyncio, uvloop when installed, raw keep-alive
HTTP/1.1 connections with pre-encoded requests, so that it costs little CPU) keeps
``concurrency`` requests in flight for a fixed time, for each protocol (V2 JSON, V2 binary
tensor data extension), batch size and concurrency. Every response's status is checked,
and one response per protocol and batch size is compared with onnxruntime's own output.

Printed per row: requests/s, samples/s (rows), p50 and p99 latency of every request in the
measuring window; the CPU used by the server, by the load generator and by anything else
on the machine (in cores, so 2.0 is all of a 2-core machine; server and other CPU only for a
server this script started: other load makes the numbers worse); and beside them in-process
onnxruntime's samples/s (``session.run`` in a loop, default session options, same batch
size).
"""

from __future__ import annotations

import argparse
import asyncio
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

FORMATS = ("json", "binary")
V2_TO_NUMPY = {"FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2"}


@dataclass
class Run:
    protocol: str
    batch: int
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray
    server_cpu: float | None
    client_cpu: float
    machine_cpu: float

    @property
    def other_cpu(self) -> float:
        """Cores busy with anything but this server and the load generator."""
        return max(0.0, self.machine_cpu - (self.server_cpu or 0.0) - self.client_cpu)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms.size else 0.0


# ---- the load generator (runs in its own process) ------------------------------------
class _Connection(asyncio.Protocol):
    """One keep-alive connection: send, read the whole response, record, send again."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.buffer = bytearray()
        self.need = -1
        self.status = 0
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self) -> None:
        self.sent = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.state["payload"])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self._parse()
        except Exception as exc:  # noqa: BLE001 - ends this run with the error
            self._fail(exc)

    def _parse(self) -> None:
        while True:
            if self.need < 0:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).lower()
                self.status = int(head[9:12])
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    raise RuntimeError(f"a response without Content-Length: {head[:300]!r}")
                eol = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : eol if eol >= 0 else len(head)])
                self.need = end + 4 + length
            if len(self.buffer) < self.need:
                return
            del self.buffer[: self.need]
            self.need = -1
            self._completed()

    def _completed(self) -> None:
        now = time.perf_counter()
        state = self.state
        if state["start"] <= now <= state["stop"]:  # completed in the measured window
            state["latencies"].append(now - self.sent)
            if self.status != 200:
                state["errors"] += 1
        elif self.status != 200:
            state["errors_outside"] += 1
        if now < state["stop"]:
            self.send()
        elif not self.done.done():
            self.done.set_result(None)

    def _fail(self, error: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("the server closed the connection"))


async def _drive(
    host: str, port: int, payload: bytes, concurrency: int, warmup: float, duration: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {
        "payload": payload,
        "latencies": [],
        "errors": 0,
        "errors_outside": 0,
        "start": float("inf"),
        "stop": float("inf"),
    }
    connections = []
    for _ in range(concurrency):
        _, protocol = await loop.create_connection(lambda: _Connection(state), host, port)
        protocol.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        connections.append(protocol)
    begin = time.perf_counter()
    state["start"] = begin + warmup
    state["stop"] = begin + warmup + duration
    for connection in connections:
        connection.send()
    await asyncio.sleep(warmup)
    cpu_start = time.process_time()
    await asyncio.sleep(duration)
    cpu_used = time.process_time() - cpu_start
    await asyncio.wait_for(asyncio.gather(*(c.done for c in connections)), timeout=60)
    for connection in connections:
        connection.transport.close()
    return {
        "latencies": np.asarray(state["latencies"], dtype=np.float64) * 1e3,
        "errors": state["errors"] + state["errors_outside"],
        "client_cpu": cpu_used / duration,
    }


def _generator(conn: Any) -> None:
    """The load generator process: one command at a time over a pipe."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    while True:
        command = conn.recv()
        if command is None:
            return
        try:
            conn.send(asyncio.run(_drive(*command)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            conn.send(exc)


# ---- requests ----------------------------------------------------------------------
def _http_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


def build_request(
    protocol: str, x: np.ndarray, input_spec: dict[str, Any], output_names: list[str]
) -> tuple[bytes, dict[str, str]]:
    """The V2 body and headers for one input tensor (JSON data, or binary both ways)."""
    tensor: dict[str, Any] = {
        "name": input_spec["name"],
        "shape": list(x.shape),
        "datatype": input_spec["datatype"],
    }
    if protocol == "json":
        tensor["data"] = x.reshape(-1).tolist()
        body = orjson.dumps({"inputs": [tensor]})
        return body, {"Content-Type": "application/json"}
    raw = np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<")).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = orjson.dumps(
        {
            "inputs": [tensor],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in output_names],
        }
    )
    return header + raw, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


def decode_response(body: bytes, headers: Any) -> dict[str, np.ndarray]:
    length = headers.get("Inference-Header-Content-Length")
    header = orjson.loads(body[: int(length)] if length else body)
    offset = int(length) if length else 0
    outputs = {}
    for entry in header["outputs"]:
        dtype = np.dtype(V2_TO_NUMPY[entry["datatype"]])
        if "data" in entry:
            array = np.asarray(entry["data"], dtype=dtype)
        else:
            size = entry["parameters"]["binary_data_size"]
            array = np.frombuffer(body[offset : offset + size], dtype=dtype)
            offset += size
        outputs[entry["name"]] = array.reshape(entry["shape"])
    return outputs


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
    generator = context.Process(target=_generator, args=(child,), daemon=True)
    generator.start()
    runs = []
    try:
        for protocol in args.formats:
            for batch in args.batches:
                body, headers = build_request(protocol, inputs[batch], input_spec, output_names)
                check_outputs(base + path, body, headers, model_file, inputs[batch])
                payload = _http_request(host, port, path, body, headers)
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
