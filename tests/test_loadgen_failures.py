"""The load generator counts only successful responses as throughput: against a real HTTP
server on loopback that answers every other request with 503, half the measured responses
are latencies (200) and the other half are failures, counted apart. A slow first wave,
answered inside the measuring window, counts as throughput but not as latencies."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Iterator

import numpy as np

from layerserve.loadgen import http_request, run_level


@contextlib.contextmanager
def alternating_server(first_delay: float = 0.0) -> Iterator[tuple[int, Counter]]:
    """A keep-alive HTTP/1.1 server answering 200, 503, 200, ... per connection, the
    first answer of each after ``first_delay`` seconds; yields its port and the count of
    each status it sent."""
    sent: Counter = Counter()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, asyncio.AbstractServer] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if count == 0:
                    await asyncio.sleep(first_delay)
                status = 200 if count % 2 == 0 else 503
                count += 1
                body = b'{"outputs":[]}' if status == 200 else b'{"error":"busy"}'
                reason = b"OK" if status == 200 else b"Service Unavailable"
                sent[status] += 1
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n%s"
                    % (status, reason, len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def start() -> None:
        holder["server"] = await asyncio.start_server(handle, "127.0.0.1", 0)
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    started.wait(10)
    try:
        yield holder["server"].sockets[0].getsockname()[1], sent
    finally:
        loop.call_soon_threadsafe(holder["server"].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def test_failures_are_counted_apart_from_the_latencies():
    with alternating_server() as (port, sent):
        payload = http_request("127.0.0.1", port, "/v2/models/m/infer", b"{}", {})
        result = run_level("127.0.0.1", port, payload, 1, 0.05, 0.3)
    assert result["statuses"] == dict(sent) and set(sent) == {200, 503}
    assert result["errors"] == sent[503]  # warm-up included
    successes, failed = int(result["latencies"].size), int(result["failed"])
    assert successes > 10
    # One connection alternates: the window holds as many of each, give or take one.
    assert abs(successes - failed) <= 1
    assert successes <= sent[200] and failed <= sent[503]
    assert np.all(result["latencies"] > 0)


def test_the_first_wave_counts_as_throughput_but_not_as_latency():
    """Four connections whose first answers come 0.3 s late, inside the window that opens
    at 0.1 s: they are four more successes than latencies, and no latency is theirs."""
    with alternating_server(first_delay=0.3) as (port, sent):
        payload = http_request("127.0.0.1", port, "/v2/models/m/infer", b"{}", {})
        result = run_level("127.0.0.1", port, payload, 4, 0.1, 0.6)
    assert result["succeeded"] == result["latencies"].size + 4
    assert result["latencies"].size > 20 and result["latencies"].max() < 200
