"""A real ``layerserve serve --workers N`` in a subprocess, and ways to look at its
workers from outside: their process ids (from /proc) and each one's own metrics snapshot,
asked over its private Unix socket as a sibling worker would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from live_server import free_port, wait_ready

from layerserve.service.cluster import Cluster

T = TypeVar("T")


@dataclass
class Served:
    url: str
    process: subprocess.Popen
    runtime_parent: Path  # the supervisor's TMPDIR: its runtime directory is inside
    log: Path
    workers: int

    def runtime_dir(self) -> Path:
        found = sorted(self.runtime_parent.glob("layerserve-workers-*"))
        assert len(found) == 1, found
        return found[0]

    def worker_pids(self) -> list[int]:
        """The live worker processes (children started by multiprocessing's spawn)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid and b"spawn_main" in command:
                pids.append(int(entry.name))
        return sorted(pids)

    def snapshots(self) -> list[dict[str, Any]]:
        """Each listening worker's own metrics snapshot."""
        outsider = Cluster(index=-1, workers=self.workers, runtime_dir=self.runtime_dir())
        return asyncio.run(outsider.ask_siblings("snapshot", timeout=5))


@contextlib.contextmanager
def serving(
    repository: Path, tmp_path: Path, workers: int = 2, *options: str, **env: str
) -> Iterator[Served]:
    port = free_port()
    # short: the workers' Unix sockets live there (108 bytes a path)
    runtime_parent = Path(tempfile.mkdtemp(prefix="ls-", dir="/tmp"))
    log = tmp_path / f"server-{port}.log"
    environment = {
        **os.environ,
        "TMPDIR": str(runtime_parent),
        "PYTHONUNBUFFERED": "1",
        "LAYERSERVE_REPOSITORY_POLL_SECONDS": "0.2",
        # stopped at once: the tests of the drain give theirs
        "LAYERSERVE_DRAIN_SECONDS": "0",
        **env,
    }
    command = [sys.executable, "-m", "layerserve.cli", "serve", "--model-repository"]
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*command, str(repository), "--port", str(port), "--workers", str(workers), *options],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", process, runtime_parent, log, workers)
    try:
        wait_ready(served.url, process, timeout=90)
        eventually(lambda: len(served.snapshots()) == workers, "every worker listening")
        yield served
    finally:
        stop(process)
        shutil.rmtree(runtime_parent, ignore_errors=True)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, 30 s to drain and exit, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def eventually(check: Callable[[], T], what: str, timeout: float = 30) -> T:
    """``check()``'s first true value, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if value := check():
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def fresh(url: str) -> httpx.Client:
    """A client whose every request opens a new connection, so that requests spread over
    the workers as new clients' would."""
    return httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
