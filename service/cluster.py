"""The sibling workers of a multi-process server, as one worker sees them.

Each worker listens on a private Unix socket, ``<runtime dir>/worker-<index>.sock``, in a
directory only the supervisor's user can enter. A worker asks its siblings there for what
it cannot know alone: their metrics (so that ``/metrics`` and the statistics extension
answer totals whichever worker a client reaches) and, after a change made through the
API, to converge to the repository at once (so that an upload answered by one worker is
served by every worker when the client gets the answer). One request a connection: the
operation's name, optionally a space and a JSON argument, and a newline; the answer is
one JSON document, then the connection closes. A single-process server has no runtime
directory and no siblings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("layerserve.service")
SNAPSHOT_TIMEOUT_SECONDS = 2.0
CONVERGE_TIMEOUT_SECONDS = 60.0
RESTARTS_FILE = "restarts"  # written by the supervisor: workers restarted so far
MAX_ANSWER_BYTES = 256 * 1024 * 1024

Handler = Callable[[Any], Awaitable[Any]]  # called with the JSON argument, or None


def socket_path(runtime_dir: Path, index: int) -> Path:
    return runtime_dir / f"worker-{index}.sock"


@dataclass
class Cluster:
    """This worker's index, the number of workers, and the channel to the others."""

    index: int = 0
    workers: int = 1
    runtime_dir: Path | None = None
    # A worker restarted into a serving server: the models it finds decide its
    # readiness as they do in the workers that were already running (see repository).
    joining: bool = False
    handlers: dict[str, Handler] = field(default_factory=dict)
    _server: asyncio.AbstractServer | None = None

    @property
    def path(self) -> Path | None:
        return None if self.runtime_dir is None else socket_path(self.runtime_dir, self.index)

    def on(self, operation: str, handler: Handler) -> None:
        """Answer ``operation`` from siblings with ``handler(argument)``'s JSON-able
        result."""
        self.handlers[operation] = handler

    # ---- this worker's side ---------------------------------------------------------
    async def start(self) -> None:
        if self.path is None:
            return
        self.path.unlink(missing_ok=True)  # left by this worker's previous life
        self._server = await asyncio.start_unix_server(self._answer, path=str(self.path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            operation, _, argument = line.decode("utf-8", "replace").strip().partition(" ")
            handler = self.handlers.get(operation)
            if handler is None:
                answer: Any = {"error": f"unknown operation {operation!r}"}
            else:
                try:
                    answer = {"result": await handler(orjson.loads(argument) if argument else None)}
                except Exception as exc:  # reported to the sibling, which logs it
                    log.exception("worker %d: %s for a sibling failed", self.index, operation)
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
            writer.write(orjson.dumps(answer))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    # ---- asking the siblings -------------------------------------------------------------
    def sibling_paths(self) -> list[Path]:
        if self.runtime_dir is None:
            return []
        return [socket_path(self.runtime_dir, i) for i in range(self.workers) if i != self.index]

    async def ask_siblings(self, operation: str, timeout: float, argument: Any = None) -> list[Any]:
        """Every reachable sibling's answer to ``operation`` (with ``argument``, any
        JSON-able value). A sibling that is not listening (starting, restarting) or does
        not answer within ``timeout`` is left out and logged."""
        request = operation.encode("ascii")
        if argument is not None:
            request += b" " + orjson.dumps(argument)
        paths = self.sibling_paths()
        answers = await asyncio.gather(*(self._ask(p, request, timeout) for p in paths))
        return [a for a in answers if a is not None]

    async def _ask(self, path: Path, request: bytes, timeout: float) -> Any:
        operation = request.partition(b" ")[0].decode()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(
                    str(path), limit=MAX_ANSWER_BYTES
                )
                try:
                    writer.write(request + b"\n")
                    await writer.drain()
                    data = await _read_to_end(reader)
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            if not isinstance(exc, FileNotFoundError | ConnectionRefusedError):
                log.warning("worker %s did not answer %s: %s", path.stem, operation, exc)
            return None
        try:
            answer = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("worker %s sent a malformed answer to %s", path.stem, operation)
            return None
        if "error" in answer:
            log.warning("worker %s could not %s: %s", path.stem, operation, answer["error"])
            return None
        return answer["result"]

    async def peer_snapshots(self) -> list[dict[str, Any]]:
        """The siblings' metrics snapshots (``ServiceMetrics.snapshot``)."""
        return await self.ask_siblings("snapshot", SNAPSHOT_TIMEOUT_SECONDS)

    async def converge_siblings(
        self,
        name: str,
        trusted: tuple[str, ...] = (),
        force: bool = False,
        settle_seconds: float | None = None,
    ) -> None:
        """Ask every sibling to converge model ``name`` to the repository now, as this
        worker did (``force``: reload it, as an explicit load does; ``trusted``: versions
        this worker published, which need no settling; ``settle_seconds``: None for the
        siblings' default) and wait for them."""
        change = {"name": name, "trusted": list(trusted), "force": force}
        if settle_seconds is not None:
            change["settle_seconds"] = settle_seconds
        await self.ask_siblings("converge", CONVERGE_TIMEOUT_SECONDS, change)

    def restarts(self) -> int:
        """Workers the supervisor restarted after they died."""
        if self.runtime_dir is None:
            return 0
        try:
            return int((self.runtime_dir / RESTARTS_FILE).read_text())
        except (OSError, ValueError):
            return 0


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    """The whole answer (a sibling closes the connection after it), at most
    MAX_ANSWER_BYTES."""
    chunks, size = [], 0
    while chunk := await reader.read(1 << 20):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise OSError(f"an answer of more than {MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def write_restarts(runtime_dir: Path, count: int) -> None:
    tmp = runtime_dir / f".{RESTARTS_FILE}.tmp"
    tmp.write_text(str(count))
    os.replace(tmp, runtime_dir / RESTARTS_FILE)
