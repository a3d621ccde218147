"""A ``layerserve serve`` that a benchmark starts, and its processes read from /proc: its
workers, which of them listen, the CPU time of the whole process tree and each process's
resident memory.

With ``--workers`` N > 1 the process started is a supervisor, and the work is done by its
children (multiprocessing's spawn) and theirs (conversions, large-body decoding): the CPU
of the process started alone would miss nearly all of it. Linux only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp
KIB = 1024
ProcessTable = dict[int, tuple[int, float]]  # pid -> (parent pid, CPU seconds)


# ---- the server -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 2.0) -> Any:
    """A JSON answer, parsed."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return orjson.loads(response.read())


def wait_ready(base: str, process: subprocess.Popen | None, timeout: float = 180) -> None:
    """Until ``base`` answers ready (and ``process``, where this script started it, runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode} before it was ready")
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            get_json(base + "/v2/health/ready", 1.0)
            return
        time.sleep(0.2)
    raise SystemExit(f"{base} was not ready within {timeout:.0f} s")


def wait_listening(
    process: subprocess.Popen, port: int, workers: int, timeout: float = 180
) -> None:
    """Until every worker listens on ``port``. One worker's readiness is not enough: a
    worker loads its models before it listens, and the kernel gives the connections
    opened before then to the workers already listening, for the whole row."""
    deadline = time.monotonic() + timeout
    while len(listening(port, worker_pids(process.pid))) < workers:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise SystemExit(f"not every one of {workers} workers listened within {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def started_server(
    repository: Path, workers: int, env_overrides: dict[str, str], log: Path
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``layerserve serve --workers N`` on a free loopback port, once every worker listens
    (on the gRPC port too: a free one unless ``env_overrides`` names LAYERSERVE_GRPC_PORT;
    the default 8081 may be taken on a shared machine)."""
    port = free_port()
    env = {
        **os.environ,
        "LAYERSERVE_LOG_LEVEL": "warning",
        "LAYERSERVE_GRPC_PORT": str(free_port()),
        **env_overrides,
    }
    grpc_port = int(env["LAYERSERVE_GRPC_PORT"])
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
        "--workers",
        str(workers),
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        wait_listening(process, port, workers)
        if grpc_port:
            wait_listening(process, grpc_port, workers)
        yield base, process
    finally:
        process.terminate()  # the supervisor forwards it: every worker drains
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- the processes, from /proc -------------------------------------------------------
def machine_cpu_seconds() -> tuple[float, float]:
    """CPU seconds since boot of all cores: spent busy (outside idle, iowait and steal),
    and stolen (``steal``: the time a virtual machine's host ran something else while
    this machine had work, as a host's CPU quota does once the machine uses up its share
    of a period)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    busy = sum(fields[:7]) - fields[3] - fields[4]
    return busy / tick, fields[7] / tick


def process_table() -> ProcessTable:
    """Every process: pid -> (parent pid, CPU seconds). The CPU seconds are user + system
    time of all its threads plus those of its children that ended and were waited for, so
    that a tree's sum keeps the CPU of a process that ends between two readings."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we read
            continue
        cpu = sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
        table[int(entry.name)] = (int(fields[1]), cpu)
    return table


def descendants(root: int, table: ProcessTable) -> list[int]:
    """``root`` and every process under it."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (parent, _) in table.items():
        children[parent].append(pid)
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            found.append(pid)
            stack.extend(children[pid])
    return found


def tree_cpu_seconds(root: int, before: ProcessTable, after: ProcessTable) -> float:
    """CPU seconds used by ``root`` and every process under it between two readings."""
    return sum(after[pid][1] for pid in descendants(root, after)) - sum(
        before[pid][1] for pid in descendants(root, before)
    )


def worker_pids(root: int) -> list[int]:
    """A server's workers: the processes its supervisor started with multiprocessing's
    spawn, or the server itself where it is one process (``--workers 1``)."""
    workers = []
    for pid, (parent, _) in process_table().items():
        if parent == root:
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    workers.append(pid)
    return sorted(workers) or [root]


def listening(port: int, pids: list[int]) -> list[int]:
    """Those of ``pids`` holding a socket that listens on ``port``."""
    sockets = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == LISTEN_STATE and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    sockets.add(f"socket:[{fields[9]}]")
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in sockets:
                        found.append(pid)
                        break
    return found


def rss_mib(pid: int) -> float:
    """Resident memory of one process (VmRSS), MiB; 0 once it has ended."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / KIB
    return 0.0


@dataclass
class Memory:
    """A server's resident memory after its runs, MiB."""

    workers: int
    per_worker: list[float]
    supervisor: float | None  # None: one process, no supervisor
    tree: float  # every process of the server (pages shared between them counted each time)

    def line(self) -> str:
        each = ", ".join(f"{m:,.0f}" for m in self.per_worker)
        text = f"{self.workers} worker{'s' if self.workers > 1 else ''}: {each} per worker"
        if self.supervisor is not None:
            text += f", supervisor {self.supervisor:,.0f}"
        return text + f", all processes {self.tree:,.0f}"


def memory_of(process: subprocess.Popen, workers: int) -> Memory:
    pids = worker_pids(process.pid)
    tree = sum(rss_mib(pid) for pid in descendants(process.pid, process_table()))
    supervisor = rss_mib(process.pid) if pids != [process.pid] else None
    return Memory(workers, [rss_mib(pid) for pid in pids], supervisor, tree)
