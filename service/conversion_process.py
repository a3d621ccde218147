"""Conversion of untrusted uploads in a child process with memory and time limits.

Parsing an uploaded file (zip, HDF5, Keras JSON, protobuf), exporting it and running
the parity check can exhaust memory or crash a C parser; done in the server, either
would take the server down. Each conversion therefore runs :func:`convert_file` in a
child forked from a warm forkserver (the server itself is never forked: it runs
uvicorn's and onnxruntime's threads). The child limits its own address space with
``RLIMIT_AS``, the parent kills it after the wall-clock limit, and a child that dies
refuses the upload with a 4xx while the server serves on.

The child writes the ONNX graph to a file in a directory the parent chose (it can be
GiBs, too big for a pipe message) and answers a small JSON document through a pipe:
never a pickle, since a child whose parser was subverted by the file must not be able
to run code in the server.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import multiprocessing
import os
import resource
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from layerserve.service.conversion import SUFFIXES, ConversionLimits, SourceFormat, convert_file
from layerserve.service.errors import InvalidInput, ModelRejected, ParityFailed, PayloadTooLarge

# Imported once by the forkserver, so that each child starts with them loaded: a fork
# of a warm process instead of ~1 s of imports per upload. Each child also runs the
# server's entry script again (multiprocessing's way: "__main__", its default preload,
# is skipped by Python 3.11's forkserver), so the modules of `layerserve serve`'s
# script are preloaded too: the script then runs in ~1 ms instead of ~45 ms.
PRELOAD = [
    "__main__",
    "layerserve.cli",
    "layerserve.service.conversion_process",
    "layerserve.saving",
    "layerserve.models.rebuild",
    "layerserve.export",
    "layerserve.export.parity",
    "onnxruntime",
    "h5py",
    "numpy.random",
    "encodings.cp437",  # zip entry names
    "layerserve.service.conversion_warmup",  # last: converts once with all of the above
]
# The forkserver then runs one thread besides its own: OpenBLAS's, which numpy starts
# and which OpenBLAS's fork handlers make safe to fork; onnxruntime's are gone with the
# warm-up's sessions.
log = logging.getLogger("layerserve.service")

OUTPUT_FILE = "converted.onnx"
MAX_ANSWER_BYTES = 1 << 20
# After the answer, the child only exits; one that lingers is killed after this long.
EXIT_GRACE_SECONDS = 5.0
# Errors a child may report, by name: anything else becomes ModelRejected.
_REPORTED: dict[str, type[Exception]] = {
    cls.__name__: cls for cls in (ModelRejected, ParityFailed, InvalidInput)
}
_MEMORY = "MemoryError"
# glibc's mallopt option, and the arenas a child may have: RLIMIT_AS counts address
# space, and glibc reserves 64 MiB of it per arena, up to one per thread (onnxruntime
# runs one per core), which would count against the limit without holding any data.
_M_ARENA_MAX = -8
_ARENAS = 2
_PR_SET_PDEATHSIG = 1  # prctl: a signal for this process when its parent dies
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


class ConversionOutOfMemory(PayloadTooLarge):
    """The conversion needed more memory than ``conversion_memory_bytes`` (413)."""


class ConversionTimedOut(ModelRejected):
    """The conversion ran past ``conversion_timeout_seconds`` and was killed."""


class ConversionCrashed(ModelRejected):
    """The child converting the file died without an answer (a signal, a crash)."""


@dataclass(frozen=True)
class ProcessLimits:
    memory_bytes: int  # the child's address space (RLIMIT_AS)
    timeout_seconds: float  # wall clock, from the child's start to its answer


@dataclass(frozen=True)
class ConvertedFile:
    """What a child converted: the graph is in ``onnx_path`` (the upload itself for an
    ``.onnx`` upload, which is served as it came)."""

    source_format: SourceFormat
    parity: dict[str, Any] | None
    original_suffix: str
    onnx_path: Path
    peak_bytes: int | None = None  # the child's largest address space (VmPeak)


def start_forkserver() -> None:
    """Start the forkserver and its imports now rather than in the first upload."""
    from multiprocessing import forkserver

    forkserver.ensure_running()


def convert_in_child(
    path: Path,
    filename: str | None,
    limits: ConversionLimits,
    process: ProcessLimits,
    output_dir: Path,
    *,
    opset: int | None = None,
) -> ConvertedFile:
    """:func:`convert_file` in a child process; blocks until it answers or is killed.
    Raises what the child raised (same type and message), ConversionOutOfMemory,
    ConversionTimedOut or ConversionCrashed."""
    label = repr(filename) if filename else "the upload"
    output = Path(output_dir) / OUTPUT_FILE
    job = {
        "path": str(path),
        "filename": filename,
        "limits": vars(limits),
        "memory_bytes": process.memory_bytes,
        "timeout_seconds": process.timeout_seconds,
        "opset": opset,
        "output": str(output),
    }
    started = time.perf_counter()
    reader, writer = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(target=_child_main, args=(writer, job), name="layerserve-convert")
    try:
        child.start()
        writer.close()  # the child holds the only writer: its death reads as EOF here
        answer = _receive(reader, child, process, label)
    finally:
        reader.close()
        _reap(child)
    if "error" in answer:
        raise _error(answer, process, label)
    converted = _converted(answer, Path(path), output, label)
    log.info(
        "converted %s (%s) in %.2f s; the converter's peak address space: %s of %d bytes",
        label,
        converted.source_format,
        time.perf_counter() - started,
        converted.peak_bytes,
        process.memory_bytes,
    )
    return converted


def _receive(reader: Connection, child: Any, process: ProcessLimits, label: str) -> dict[str, Any]:
    if not reader.poll(process.timeout_seconds):
        child.kill()
        raise ConversionTimedOut(
            f"Expected converting {label} to take at most {process.timeout_seconds:g} s "
            "(setting conversion_timeout_seconds, LAYERSERVE_CONVERSION_TIMEOUT_SECONDS). "
            "Received: a conversion still running then, so it was stopped; nothing was "
            "stored. Raise the setting for a model this slow to convert, or export it to ONNX "
            "elsewhere (`layerserve export MODEL_FILE -o model.onnx`) and upload model.onnx."
        )
    try:
        data = reader.recv_bytes(MAX_ANSWER_BYTES)
        answer = json.loads(data)
    except (EOFError, OSError, ValueError):
        child.join(EXIT_GRACE_SECONDS)
        raise _died(child.exitcode, process, label) from None
    if not isinstance(answer, dict):
        raise ConversionCrashed(f"The converter of {label} answered {answer!r}.")
    return answer


def _reap(child: Any) -> None:
    if child.pid is None:
        return
    child.join(EXIT_GRACE_SECONDS)
    if child.exitcode is None:
        child.kill()
        child.join()
    child.close()


def _died(exitcode: int | None, process: ProcessLimits, label: str) -> ModelRejected:
    if exitcode is not None and exitcode < 0:
        how = f"was killed by signal {_signal_name(-exitcode)}"
    else:
        how = f"exited with status {exitcode} without an answer"
    if exitcode == -signal.SIGKILL:
        hint = (
            "The system kills a process that runs out of memory this way: lower "
            "conversion_memory_bytes below the memory this server may use, so that an "
            "oversized conversion is refused with 413 instead"
        )
    else:
        hint = (
            "The file is corrupt or malformed in a way that crashes the parsers, or its "
            f"conversion needs more than {process.memory_bytes} bytes of memory "
            "(setting conversion_memory_bytes)"
        )
    return ConversionCrashed(
        f"The upload {label} crashed the converter: the process reading it {how}; "
        f"nothing was stored. {hint}."
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _error(answer: dict[str, Any], process: ProcessLimits, label: str) -> Exception:
    kind, message = str(answer.get("error")), str(answer.get("message", ""))
    if kind == _MEMORY:
        return ConversionOutOfMemory(
            f"Expected converting {label} to fit in {process.memory_bytes} bytes of memory "
            "(setting conversion_memory_bytes, LAYERSERVE_CONVERSION_MEMORY_BYTES). "
            f"Received: a conversion that needed more ({message or 'MemoryError'}); "
            "nothing was stored. Raise the setting if the model really needs it (a "
            "conversion needs about seven times the model's weights plus its sample "
            "inputs), or export it to ONNX elsewhere (`layerserve export MODEL_FILE -o "
            "model.onnx`) and upload model.onnx."
        )
    return _REPORTED.get(kind, ModelRejected)(message)


def _converted(answer: dict[str, Any], upload: Path, output: Path, label: str) -> ConvertedFile:
    source = answer.get("source_format")
    if source not in SUFFIXES:
        raise ConversionCrashed(f"The converter of {label} answered an unknown format.")
    onnx_path = upload if source == "onnx" else output
    if not onnx_path.is_file():
        raise ConversionCrashed(f"The converter of {label} wrote no ONNX graph.")
    peak = answer.get("peak_bytes")
    return ConvertedFile(
        source,
        answer.get("parity"),
        SUFFIXES[source],
        onnx_path,
        peak if isinstance(peak, int) else None,
    )


# ---- in the child ------------------------------------------------------------------
def _child_main(writer: Connection, job: dict[str, Any]) -> None:
    _limit_self(job["memory_bytes"], job["timeout_seconds"])
    # What the load of an .onnx upload would log here (a model whose requests are never
    # merged) the worker that serves it logs again, under the model's own name.
    logging.getLogger("layerserve").setLevel(logging.ERROR)
    try:
        answer = _convert(job)
    except BaseException as exc:  # noqa: BLE001 - every failure is answered, typed
        answer = _describe_failure(exc)
    # The traceback's frames (and the arrays they hold) are gone once the except block
    # ends, so a MemoryError's answer has room to be written.
    writer.send_bytes(json.dumps(answer).encode())
    writer.close()


def _limit_self(memory_bytes: int, timeout_seconds: float) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core dump
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_ARENA_MAX, _ARENAS)
        # The forkserver exits with the server; this child then goes too, and cannot
        # write into a staging directory a restarted server is cleaning up.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux with glibc
        pass
    if os.getppid() != parent:  # the forkserver died before prctl took effect
        os._exit(1)
    # Should the machine run out of memory before the limit, the kernel kills this
    # process rather than the server.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")
    # And whatever happens to the parents, a child ends after its time.
    signal.alarm(math.ceil(timeout_seconds) + int(EXIT_GRACE_SECONDS))


def _convert(job: dict[str, Any]) -> dict[str, Any]:
    converted = convert_file(
        Path(job["path"]), job["filename"], ConversionLimits(**job["limits"]), opset=job["opset"]
    )
    if converted.source_format != "onnx":
        data = converted.onnx_model.SerializeToString()
        del converted.onnx_model
        with open(job["output"], "wb") as handle:
            handle.write(data)
    return {
        "source_format": converted.source_format,
        "parity": converted.parity,
        "peak_bytes": _peak_address_space(),
    }


def _peak_address_space() -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _describe_failure(exc: BaseException) -> dict[str, str]:
    memory = _memory_error(exc)
    if memory is not None:
        return {"error": _MEMORY, "message": _short(memory)}
    for cls in type(exc).__mro__:
        if cls.__name__ in _REPORTED and cls is _REPORTED[cls.__name__]:
            return {"error": cls.__name__, "message": str(exc)}
    return {
        "error": ModelRejected.__name__,
        "message": f"The upload crashed the converter: {type(exc).__name__}: {exc}",
    }


def _memory_error(exc: BaseException) -> MemoryError | None:
    """``exc`` if a MemoryError, or the one it was raised while handling: the readers
    wrap failures in their own types (a corrupt-file message), which must not hide it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, MemoryError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _short(exc: BaseException) -> str:
    return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:500]


__all__ = [
    "ConversionCrashed",
    "ConversionOutOfMemory",
    "ConversionTimedOut",
    "ConvertedFile",
    "ProcessLimits",
    "convert_in_child",
    "start_forkserver",
]
