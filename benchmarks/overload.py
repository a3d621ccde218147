"""Overload and stall benchmark of the inference service.

Run by hand: ``.venv/bin/python benchmarks/overload.py [--duration S] [--markdown]``.

It starts ``layerserve serve`` itself (a subprocess on a free loopback port, with the demo
repository in a temporary directory) and measures two things:

1. **Overload.** The demo MLP with a small queue (``--queue-size``, default 8) under
   batch-1 V2 JSON requests from 8, 64 and 256 keep-alive connections that each send
   their next request as soon as the previous answer arrives: at once even after a 503
   (the worst client there is), or after the 503's ``Retry-After`` (as a client should).
   Printed per level: goodput (200s per second), 503s per second, the
   median and p99 latency of 200s and of 503s, and the mean queue wait of the accepted
   requests (from the model's V2 statistics). The server sheds well when goodput at 256
   connections stays near that at 8, 503s come back in milliseconds, and the queue wait
   stays near what a full queue costs (``queue size x compute time``).
2. **Stall.** While one client sends a large V2 JSON body (``--body-mb``, default 60),
   another asks ``/v2/health/live`` every 10 ms. The body goes to the MLP, whose batch
   limit of 64 rows makes it larger than any valid request (refused from its header),
   then to the same MLP allowed 8192 rows a request (decoded in the worker process, and
   run), and a small request whose JSON answer holds 4 million values (written in the
   worker process). Printed: the answer, its time to the last byte, and the median and
   worst liveness latency during it, beside the same probe on an idle server.

The server is one process unless ``--workers`` asks for more (measured once every worker
listens). With more, the queue size is each worker's, the kernel spreads the connections
over the workers, and the probe and the large body may reach different workers: the stall
figures then say how the server as a whole answers, not how one worker holds up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import server_processes
from rich.console import Console
from rich.table import Table

from layerserve.export import to_onnx
from layerserve.layers import Dense
from layerserve.loadgen import build_request, event_loop_factory, http_request
from layerserve.models import Sequential
from layerserve.service.demo import ensure_demo_repository

MODEL = "mlp"
LARGE_MODEL = "mlp_large"
INPUT = "hidden_1_input"
WIDE_MODEL, WIDE_INPUT, WIDE, WIDE_ROWS = "wide", "wide_input", 4096, 1024


# ---- the server ---------------------------------------------------------------------
def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return orjson.loads(response.read())


@contextlib.contextmanager
def started_server(queue_size: int, workers: int, log: Path) -> Iterator[tuple[str, int]]:
    with tempfile.TemporaryDirectory(prefix="layerserve-overload-") as tmp:
        repository = Path(tmp) / "models"
        ensure_demo_repository(repository)
        # the MLP again, with room for 8192 rows a request: a large body it must decode
        large = repository / LARGE_MODEL
        (large / "1").mkdir(parents=True)
        shutil.copy(repository / MODEL / "1" / "model.onnx", large / "1" / "model.onnx")
        (large / "config.json").write_text('{"max_batch_size": 8192}')
        # a model with a large answer: 4,096 values a row
        wide = Sequential([Dense(WIDE, input_shape=(4,), name="wide")])
        (repository / WIDE_MODEL / "1").mkdir(parents=True)
        to_onnx(wide, repository / WIDE_MODEL / "1" / "model.onnx")
        (repository / WIDE_MODEL / "config.json").write_text('{"max_batch_size": 1024}')
        overrides = {"LAYERSERVE_MAX_QUEUE_SIZE": str(queue_size)}
        with server_processes.started_server(repository, workers, overrides, log) as (base, _):
            yield base, urllib.parse.urlsplit(base).port


# ---- a closed-loop client that keeps each answer's status and latency ------------------
class _Client(asyncio.Protocol):
    def __init__(
        self, payload: bytes, record: list[tuple[int, float]], stop: float, polite: bool
    ) -> None:
        self.payload, self.record, self.stop, self.polite = payload, record, stop, polite
        self.retry_after = 0.0
        self.buffer = bytearray()
        self.sent = 0.0
        self.need = -1
        self.status = 0
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self) -> None:
        self.sent = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.need < 0:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).lower()
                self.status = int(head[9:12])
                at = head.find(b"retry-after:")
                self.retry_after = float(head[at + 12 : head.find(b"\r\n", at)]) if at > 0 else 0
                at = head.find(b"content-length:")
                length = int(head[at + 15 : head.find(b"\r\n", at) % (len(head) + 1)])
                self.need = end + 4 + length
            if len(self.buffer) < self.need:
                return
            del self.buffer[: self.need]
            self.need = -1
            now = time.perf_counter()
            self.record.append((self.status, now - self.sent))
            if now < self.stop:
                if self.polite and self.status == 503 and self.retry_after:
                    asyncio.get_running_loop().call_later(self.retry_after, self.send)
                else:
                    self.send()
            elif not self.done.done():
                self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _closed_loop(
    port: int, payload: bytes, connections: int, seconds: float, polite: bool
) -> list:
    loop = asyncio.get_running_loop()
    record: list[tuple[int, float]] = []
    stop = time.perf_counter() + seconds
    clients = []
    for _ in range(connections):
        _, client = await loop.create_connection(
            lambda: _Client(payload, record, stop, polite), "127.0.0.1", port
        )
        clients.append(client)
    for client in clients:
        client.send()
    await asyncio.wait_for(asyncio.gather(*(c.done for c in clients)), seconds + 60)
    for client in clients:
        client.transport.close()
    return record


def load_level(
    port: int, payload: bytes, connections: int, seconds: float, polite: bool = False
) -> list:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(_closed_loop(port, payload, connections, seconds, polite))


def _queue_totals(base: str) -> tuple[int, int]:
    stats = _get_json(f"{base}/v2/models/{MODEL}/stats")["model_stats"]
    success = sum(s["inference_stats"]["success"]["count"] for s in stats)
    queue_ns = sum(s["inference_stats"]["queue"]["ns"] for s in stats)
    return success, queue_ns


def _percentiles(latencies: np.ndarray) -> list[str]:
    if not latencies.size:
        return ["-", "-"]
    return [f"{np.percentile(latencies, q):.1f}" for q in (50, 99)]


def overload_rows(base: str, port: int, levels: list[int], seconds: float) -> list[list[str]]:
    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    body, headers = build_request("json", {INPUT: x}, [])
    payload = http_request("127.0.0.1", port, f"/v2/models/{MODEL}/infer", body, headers)
    load_level(port, payload, 8, 1.0)  # warm-up
    rows = []
    for connections, polite in [(c, p) for p in (False, True) for c in levels]:
        if polite and connections == min(levels):
            continue  # nothing is refused at the lowest level: the same as above
        before = _queue_totals(base)
        record = load_level(port, payload, connections, seconds, polite)
        after = _queue_totals(base)
        ok = np.array([t for s, t in record if s == 200]) * 1e3
        shed = np.array([t for s, t in record if s == 503]) * 1e3
        other = len(record) - ok.size - shed.size
        accepted = max(1, after[0] - before[0])
        queue_ms = (after[1] - before[1]) / accepted / 1e6
        rows.append(
            [
                str(connections),
                "waits Retry-After" if polite else "resends at once",
                f"{ok.size / seconds:,.0f}",
                f"{shed.size / seconds:,.0f}",
                str(other),
                *_percentiles(ok),
                *_percentiles(shed),
                f"{queue_ms:.2f}",
            ]
        )
    return rows


# ---- a large body and the liveness probe -------------------------------------------------
def _probe(port: int, stop: threading.Event, latencies: list[float]) -> None:
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        while not stop.is_set():
            started = time.perf_counter()
            sock.sendall(request)
            data = b""
            while not data.endswith(b'{"live":true}'):
                data += sock.recv(4096)
            latencies.append((time.perf_counter() - started) * 1e3)
            time.sleep(0.01)


def stall_rows(port: int, body_mb: float) -> list[list[str]]:
    rows = []
    idle: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=_probe, args=(port, stop, idle))
    probe.start()
    time.sleep(1.0)
    stop.set()
    probe.join()
    rows.append(["idle server", "-", "-", f"{np.median(idle):.2f}", f"{max(idle):.2f}"])

    for model in (MODEL, LARGE_MODEL):
        rows_of_body = int(body_mb * 1e6 / (784 * 19))  # about 19 bytes per JSON float
        values = np.random.default_rng(1).random((rows_of_body, 784), dtype=np.float32)
        body, headers = build_request("json", {INPUT: values}, [])
        label = f"{len(body) / 1e6:.0f} MB JSON, {rows_of_body} rows, to {model}"
        rows.append(_large_body_row(port, model, body, headers, label))
    x = np.random.default_rng(2).random((WIDE_ROWS, 4), dtype=np.float32)
    body, headers = build_request("json", {WIDE_INPUT: x}, [])
    label = f"{WIDE_ROWS} rows to {WIDE_MODEL}: a JSON answer of {WIDE_ROWS * WIDE:,} values"
    rows.append(_large_body_row(port, WIDE_MODEL, body, headers, label))
    return rows


def _large_body_row(
    port: int, model: str, body: bytes, headers: dict[str, str], label: str
) -> list[str]:
    """The answer's status and time (to its last byte), and the probe's latencies."""
    request = http_request("127.0.0.1", port, f"/v2/models/{model}/infer", body, headers)
    during: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=_probe, args=(port, stop, during))
    probe.start()
    time.sleep(0.2)
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before the end
            sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        head, _, received = answer.partition(b"\r\n\r\n")
        length = _content_length(head)
        while len(received) < length and (chunk := sock.recv(1 << 20)):
            received += chunk
    took = (time.perf_counter() - started) * 1e3
    time.sleep(0.2)
    stop.set()
    probe.join()
    return [
        label,
        answer[9:12].decode() or "closed",
        f"{took:.0f}",
        f"{np.median(during):.2f}",
        f"{max(during):.2f}",
    ]


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            return int(value)
    return 0


# ---- main ----------------------------------------------------------------------------
def _table(title: str, columns: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        lines = [f"\n{title}\n", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level")
    parser.add_argument("--queue-size", type=int, default=8, help="each worker's")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes of the server (default 1)"
    )
    parser.add_argument("--levels", nargs="+", type=int, default=[8, 64, 256])
    parser.add_argument("--body-mb", type=float, default=60.0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    log = Path(tempfile.gettempdir()) / "layerserve-overload-server.log"
    with started_server(args.queue_size, args.workers, log) as (base, port):
        overload = overload_rows(base, port, args.levels, args.duration)
        stall = stall_rows(port, args.body_mb)
    _table(
        f"Overload: batch-1 V2 JSON, max_queue_size {args.queue_size}, "
        f"{args.workers} worker{'s' if args.workers > 1 else ''}, {args.duration:g} s per level",
        [
            "connections",
            "after a 503 the client",
            "goodput (200/s)",
            "503/s",
            "other",
            "200 p50 ms",
            "200 p99 ms",
            "503 p50 ms",
            "503 p99 ms",
            "queue wait ms (mean)",
        ],
        overload,
        args.markdown,
    )
    _table(
        "Stall: liveness while a large body is received, or a large answer written",
        ["request", "answer", "time ms", "live p50 ms", "live max ms"],
        stall,
        args.markdown,
    )


if __name__ == "__main__":
    main()
