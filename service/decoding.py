"""Decoding request bodies, and encoding large answers, without stalling the event loop.

A JSON body is parsed by orjson and turned into arrays by NumPy, both holding Python's
GIL the whole time: 60 MB of JSON numbers take about 0.35 s, during which no other
request, not even a liveness probe, is answered, and a thread would not help. Bodies
whose JSON part is larger than ``OFF_LOOP_BYTES`` are therefore decoded in a worker
process (one, started at the first such body, kept for the next); the event loop only
copies bytes to it and arrays back. Smaller bodies (a few milliseconds of parsing) are
decoded in place. A large body whose size is declared is written to a file as it arrives
and the worker reads it there: the event loop never holds it whole (copying 60 MB holds
the GIL for tens of milliseconds). The worker gets the model's description without its onnxruntime
session, runs the very same decoding function, and sends back its result or its error,
which is raised again here with the same type and message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from layerserve.service import errors
from layerserve.service.runtime import LoadedModel

OFF_LOOP_BYTES = 1 << 20
# Numbers an answer writes as text (JSON, protobuf's typed fields) past which it is
# written in the worker: about 30 us a thousand, so this many take some 8 ms.
OFF_LOOP_VALUES = 1 << 18
NO_ROOM = "the server has no room to take this request's body now; retry later"
SHARED_MEMORY = "/dev/shm"
T = TypeVar("T")


class BodyDecoder:
    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    async def decode(
        self, function: Callable[..., T], body: bytes, *args: Any, json_bytes: int | None = None
    ) -> T:
        """``function(body, *args)``, in place or in the worker process when the body's
        JSON part (``json_bytes``, default the whole body) is large."""
        if (len(body) if json_bytes is None else json_bytes) <= OFF_LOOP_BYTES:
            return function(body, *args)
        return await self._in_worker(_decode, function, body, args)

    async def encode(self, function: Callable[..., T], *args: Any, text_values: int) -> T:
        """``function(*args)``, an answer's encoding: in place, or in the worker process
        when it writes more than ``OFF_LOOP_VALUES`` numbers as text (a 48 MB JSON
        answer took 0.1 s of the event loop)."""
        if text_values <= OFF_LOOP_VALUES:
            return function(*args)
        return await self._in_worker(_encode, function, None, args)

    async def _in_worker(
        self, run: Callable[..., tuple], function: Callable[..., T], source: Any, args: tuple
    ) -> T:
        portable = [_without_session(a) if isinstance(a, LoadedModel) else a for a in args]
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(self._worker(), run, function, source, portable)
        except BrokenProcessPool as exc:
            self._pool = None  # a new worker for the next body
            raise errors.InvalidInput(
                "the request body could not be decoded: the decoding process stopped"
            ) from exc
        if outcome[0] == "ok":
            return outcome[1]
        _, kind, message, problems = outcome
        error_type = getattr(errors, kind, errors.InvalidInput)
        if problems is not None:
            raise error_type(message, problems)
        raise error_type(message)

    async def decode_file(self, function: Callable[..., T], path: Path, *args: Any) -> T:
        """``function(<the bytes of path>, *args)`` in the worker process: the body was
        spooled to ``path`` as it arrived, so the event loop never holds it whole."""
        return await self._in_worker(_decode_file, function, path, args)

    def workers(self) -> list[int]:
        """The process ids of the decoding workers (none before the first large body)."""
        pool = self._pool
        processes = getattr(pool, "_processes", None) or {}
        return sorted(pid for pid, process in processes.items() if process.is_alive())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _worker(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")  # never fork a threaded server
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=context, initializer=_yield_the_cpu
                )
            return self._pool


def _yield_the_cpu() -> None:
    """The worker runs at a lower priority: on a busy machine the server's own threads
    (the event loop answering probes, onnxruntime) get the cores first."""
    os.nice(10)


def _without_session(model: LoadedModel) -> LoadedModel:
    """The model's description for the worker: everything but the onnxruntime session
    (which cannot cross processes and which decoding never touches)."""
    cached = model.__dict__.get("_portable")
    if cached is None:
        cached = dataclasses.replace(model, session=None)
        model.__dict__["_portable"] = cached
    return cached


class Spool:
    """A request body written to a file as it arrives (in memory-backed ``/dev/shm`` where
    there is one), for :meth:`BodyDecoder.decode_file`; removed on exit."""

    def __init__(self) -> None:
        directory = SHARED_MEMORY if os.access(SHARED_MEMORY, os.W_OK) else None
        self._open(directory)
        self.size = 0

    def _open(self, directory: str | None) -> None:
        fd, name = tempfile.mkstemp(prefix="layerserve-body-", dir=directory)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb", buffering=0)

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk`` whole (a nearly full filesystem may take part of a write)."""
        rest = memoryview(chunk)
        try:
            while rest:
                rest = rest[self._file.write(rest) :]
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            await asyncio.to_thread(self._spill, bytes(rest))
        self.size += len(chunk)

    def _spill(self, rest: bytes) -> None:
        """``/dev/shm`` is full (a container's is small): go on in the temporary
        directory with what it holds and ``rest``; when that is full too, the request is
        refused with 507. Runs on a thread: it copies what was received so far."""
        full, old = self.path, self._file
        if full.parent == Path(tempfile.gettempdir()):
            raise errors.InsufficientStorage(NO_ROOM)
        try:
            self._open(None)
            with open(full, "rb") as written:
                shutil.copyfileobj(written, self._file)
            view = memoryview(rest)
            while view:
                view = view[self._file.write(view) :]
        except OSError as exc:
            raise errors.InsufficientStorage(NO_ROOM) from exc
        finally:
            old.close()
            full.unlink(missing_ok=True)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def _decode_file(function: Callable[..., Any], path: Path, args: list[Any]) -> tuple:
    return _decode(function, path.read_bytes(), args)


def _decode(function: Callable[..., Any], body: bytes, args: list[Any]) -> tuple:
    return _outcome(function, body, *args)


def _encode(function: Callable[..., Any], _source: None, args: list[Any]) -> tuple:
    return _outcome(function, *args)


def _outcome(function: Callable[..., Any], *args: Any) -> tuple:
    """Runs in the worker: the result, or the error's type name, message and problems."""
    try:
        return ("ok", function(*args))
    except errors.ServiceError as exc:
        return ("error", type(exc).__name__, str(exc), getattr(exc, "problems", None))
