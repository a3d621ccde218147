"""A load generator for the inference service that costs little CPU: raw keep-alive
HTTP/1.1 connections on asyncio (uvloop when installed), each sending one pre-encoded
request again as soon as the previous response is complete, so that ``concurrency``
requests are always in flight. Used by ``layerserve bench`` and
``benchmarks/service_load.py``.

Every response's status is counted. Throughput counts the successful (200) responses
completed in the measuring window (after the warm-up), and so do the latencies, but for
each connection's first request: that first wave, sent all at once into an idle server,
may take longer than the warm-up to drain, and would put its cold start in the window's
tail. A failed response is never counted as throughput, nor its latency in the
percentiles: a server that refuses fast would look fast.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson

PROTOCOLS = ("json", "binary", "tfserving")
V2_TO_NUMPY = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
NUMPY_TO_V2 = {np.dtype(v).newbyteorder("="): k for k, v in V2_TO_NUMPY.items()}
TEXT_TYPES = ("BYTES", "STRING")
ERROR_SNIPPET_BYTES = 500
TICK_SECONDS = 0.25


@dataclass
class Run:
    """One measured load level: ``requests`` succeeded (200) in the measuring window,
    ``failed`` did not; ``errors`` counts the failures of the warm-up too."""

    protocol: str
    batch: int
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray
    server_cpu: float | None = None
    client_cpu: float = 0.0
    machine_cpu: float | None = None  # busy, without steal
    steal_cpu: float | None = None  # taken by a virtual machine's host (/proc/stat steal)
    sent: int = 0
    received: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failed: int = 0

    @property
    def other_cpu(self) -> float | None:
        """Cores busy with anything but this server and the load generator."""
        if self.machine_cpu is None:
            return None
        return max(0.0, self.machine_cpu - (self.server_cpu or 0.0) - self.client_cpu)

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return self.requests / self.seconds

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile of the kept latencies (ms); None when no request
        succeeded in the window (a 0 would read as an instant answer)."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms.size else None


def milliseconds(value: float | None, digits: int = 2) -> str:
    """A latency for a table: "-" where there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


# ---- requests ----------------------------------------------------------------------
def inference_path(protocol: str, model: str, version: str | None, prefix: str = "") -> str:
    """Where ``protocol``'s inference requests for a model (version) go."""
    name = quote(model, safe="")
    versioned = f"{name}/versions/{quote(version, safe='')}" if version else name
    if protocol == "tfserving":
        return f"{prefix}/v1/models/{versioned}:predict"
    return f"{prefix}/v2/models/{versioned}/infer"


def v2_datatype(array: np.ndarray) -> str:
    if array.dtype.kind in "OUS":
        return "BYTES"
    try:
        return NUMPY_TO_V2[array.dtype.newbyteorder("=")]
    except KeyError:
        raise ValueError(f"no V2 datatype for NumPy dtype {array.dtype}") from None


def http_request(host: str, port: int, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """A whole HTTP/1.1 POST, encoded once and sent as it is for every request."""
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
    protocol: str, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one inference request: V2 with JSON data (``json``), V2
    with the binary tensor data extension both ways (``binary``), or TensorFlow Serving's
    columnar ``:predict`` (``tfserving``)."""
    if protocol == "tfserving":
        columns = {name: _json_values(x).reshape(x.shape).tolist() for name, x in inputs.items()}
        return orjson.dumps({"inputs": columns}), {"Content-Type": "application/json"}
    if protocol not in ("json", "binary"):
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, x in inputs.items():
        tensor: dict[str, Any] = {"name": name, "shape": list(x.shape), "datatype": v2_datatype(x)}
        if protocol == "json":
            tensor["data"] = _json_values(x).tolist()
        else:
            raw = _binary(x)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        tensors.append(tensor)
    if protocol == "json":
        return orjson.dumps({"inputs": tensors}), {"Content-Type": "application/json"}
    header = orjson.dumps(
        {
            "inputs": tensors,
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in output_names],
        }
    )
    return header + b"".join(chunks), {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


def _json_values(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1)
    if x.dtype.kind in "OS":  # text travels as JSON strings
        text = [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
        return np.array(text, dtype=object)
    return flat


def _binary(x: np.ndarray) -> bytes:
    if x.dtype.kind in "OUS":
        parts = []
        for item in x.reshape(-1):
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<")).tobytes()


def decode_response(body: bytes, headers: Any) -> dict[str, np.ndarray]:
    """A V2 inference response's outputs, JSON or binary (``headers`` needs ``.get``)."""
    length = headers.get("Inference-Header-Content-Length")
    header = orjson.loads(body[: int(length)] if length else body)
    offset = int(length) if length else 0
    outputs = {}
    for entry in header["outputs"]:
        datatype = entry["datatype"]
        if "data" in entry:
            dtype = object if datatype in TEXT_TYPES else np.dtype(V2_TO_NUMPY[datatype])
            array = np.asarray(entry["data"], dtype=dtype)
        else:
            size = entry["parameters"]["binary_data_size"]
            chunk = body[offset : offset + size]
            offset += size
            if datatype in TEXT_TYPES:
                array = np.array(_split_bytes(chunk), dtype=object)
            else:
                array = np.frombuffer(chunk, dtype=np.dtype(V2_TO_NUMPY[datatype]))
        outputs[entry["name"]] = array.reshape(entry["shape"])
    return outputs


def _split_bytes(data: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        items.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return items


# ---- the connections -----------------------------------------------------------------
class _Connection(asyncio.Protocol):
    """One keep-alive connection: send, read the whole response, record, send again."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.buffer = bytearray()
        self.need = -1
        self.status = 0
        self.body_start = 0
        self.sent = 0.0
        self.first = True  # the connection's first request is in flight
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self) -> None:
        self.sent = time.perf_counter()
        self.state["sent"] += 1
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
                self.body_start = end + 4
                self.need = end + 4 + length
            if len(self.buffer) < self.need:
                return
            if self.status != 200 and self.state["first_error"] is None:
                body = bytes(self.buffer[self.body_start : self.need])
                self.state["first_error"] = (self.status, body[:ERROR_SNIPPET_BYTES])
            del self.buffer[: self.need]
            self.need = -1
            self._completed()

    def _completed(self) -> None:
        now = record_answer(self.state, self.status, self.status == 200, self.sent, self.first)
        self.first = False
        if now < self.state["stop"]:
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


async def drive(
    host: str,
    port: int,
    payload: bytes,
    concurrency: int,
    warmup: float,
    duration: float,
    tick: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Keep ``concurrency`` requests in flight for ``warmup + duration`` seconds.

    Returns ``succeeded`` (the 200 responses completed in the measuring window),
    ``latencies`` (ms, of those but each connection's first),
    ``failed`` (the other responses completed in that window), ``errors`` (non-200
    responses, warm-up included), ``client_cpu`` (cores), ``sent``
    and ``received`` (every request and response), ``statuses`` (count per HTTP status)
    and ``first_error`` (``(status, body start)`` of the first non-200 response, or None).
    ``tick(seconds)`` is called with the time passed, a few times a second.
    """
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {
        "payload": payload,
        **new_level_state(),
        "start": float("inf"),
        "stop": float("inf"),
    }
    connections = []
    try:
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
        await _sleep_until(state["start"], begin, tick)
        cpu_start = time.process_time()
        await _sleep_until(state["stop"], begin, tick)
        cpu_used = time.process_time() - cpu_start
        await asyncio.wait_for(asyncio.gather(*(c.done for c in connections)), timeout=60)
    finally:
        for connection in connections:
            connection.transport.close()
    return level_result(state, cpu_used, duration)


async def _sleep_until(deadline: float, begin: float, tick: Callable[[float], None] | None) -> None:
    if tick is None:
        await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
        return
    while (now := time.perf_counter()) < deadline:
        await asyncio.sleep(min(TICK_SECONDS, deadline - now))
        tick(min(time.perf_counter(), deadline) - begin)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when it is installed (cheaper per request), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_level(
    host: str,
    port: int,
    payload: bytes,
    concurrency: int,
    warmup: float,
    duration: float,
    tick: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """``drive`` on an event loop of its own, in this thread."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(drive(host, port, payload, concurrency, warmup, duration, tick))


def generator_process(conn: Any) -> None:
    """A load generator process's main loop: one ``drive`` command at a time over a
    pipe, answered with its result or its exception; ``None`` ends it."""
    while True:
        command = conn.recv()
        if command is None:
            return
        try:
            conn.send(run_level(*command))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            conn.send(exc)


def record_answer(state: dict[str, Any], status: Any, ok: bool, sent: float, first: bool) -> float:
    """Count one answer (HTTP or gRPC) in a level's state: by its status; as throughput and
    a latency only when ``ok`` and completed in the measuring window, and a latency only
    when not its connection's ``first`` (see above). Returns when it was counted."""
    now = time.perf_counter()
    state["statuses"][status] += 1
    if state["start"] <= now <= state["stop"]:  # completed in the measured window
        if ok:
            state["succeeded"] += 1
            if not first:
                state["latencies"].append(now - sent)
        else:
            state["errors"] += 1
    elif not ok:
        state["errors_outside"] += 1
    return now


def level_result(state: dict[str, Any], cpu_used: float, duration: float) -> dict[str, Any]:
    """What one load level measured (HTTP or gRPC): latencies in ms, counts, client CPU."""
    return {
        "latencies": np.asarray(state["latencies"], dtype=np.float64) * 1e3,
        "succeeded": state["succeeded"],
        "failed": state["errors"],
        "errors": state["errors"] + state["errors_outside"],
        "client_cpu": cpu_used / duration,
        "sent": state["sent"],
        "received": sum(state["statuses"].values()),
        "statuses": dict(state["statuses"]),
        "first_error": state["first_error"],
    }


def new_level_state() -> dict[str, Any]:
    """The counters of one load level (HTTP or gRPC), read by :func:`level_result`."""
    return {
        "latencies": [],  # of those successes, but for each connection's first request
        "succeeded": 0,  # successful responses completed in the window (throughput)
        "errors": 0,
        "errors_outside": 0,
        "sent": 0,
        "statuses": Counter(),
        "first_error": None,
    }
