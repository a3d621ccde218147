"""The supervisor of a multi-worker server: it starts ``workers`` processes, restarts one
that dies, forwards SIGTERM so that every worker drains, and exits non-zero only when
workers keep crashing.

Each worker is a fresh interpreter (``spawn``) with its own onnxruntime sessions and
batchers. It loads the models first and only then listens, on its own ``SO_REUSEPORT``
socket for the shared port: the kernel spreads new connections over the workers that
listen, so a worker that is starting or restarting receives none. The supervisor holds
the address (bound, not listening) from before the first worker starts until it exits, so
no other server can take the port between restarts. Workers run in their own process
group: a terminal's Ctrl-C reaches the supervisor alone, which turns it into one orderly
drain; a worker whose supervisor is killed is sent SIGTERM by the kernel.

As a container's first process (PID 1, as ``CMD ["layerserve", "serve"]`` runs in a pod),
the supervisor inherits every orphan of the container: a dead worker's helper processes
(its forkserver) exit once it is gone, and the supervisor reaps them, so that worker
restarts leave no zombies behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from layerserve.service.cluster import Cluster, socket_path, write_restarts
from layerserve.service.settings import Settings

log = logging.getLogger("layerserve.service")
CRASH_LIMIT = 5  # this many deaths within CRASH_WINDOW_SECONDS: the supervisor gives up
CRASH_WINDOW_SECONDS = 60.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0
PR_SET_PDEATHSIG = 1
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes
REAP_EVERY_SECONDS = 1.0


class Supervisor:
    def __init__(self, settings: Settings, reservation: socket.socket) -> None:
        self.port = reservation.getsockname()[1]
        # Workers take the resolved port (a port of 0 was chosen by the reservation).
        self.settings = settings.model_copy(update={"port": self.port, "demo": False})
        self.demo = settings.demo
        self.reservation = reservation
        self.count = settings.worker_count()
        self.runtime_dir = runtime_directory(self.count)
        self.context = multiprocessing.get_context("spawn")
        self.processes: dict[int, Any] = {}  # index -> multiprocessing.Process
        self.deaths: deque[float] = deque()
        self.restarts = 0
        self.stopping = False
        # After the signal: the drain, the requests in flight, a margin; then SIGKILL.
        self.stop_grace = settings.drain_seconds + settings.exit_timeout_seconds + 10.0
        self.stop_deadline = 0.0
        self.reaps_orphans = os.getpid() == 1
        self.next_reap = 0.0

    def run(self) -> int:
        """Serve until a signal asks to stop (0) or workers keep crashing (1)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            if self.demo:  # once, here: the workers would race to write it
                from layerserve.service.demo import ensure_demo_repository

                ensure_demo_repository(self.settings.model_repository)
            write_restarts(self.runtime_dir, 0)
            log.info(
                "layerserve supervisor [%d]: %d workers on port %d",
                os.getpid(),
                self.count,
                self.port,
            )
            for index in range(self.count):
                self._start(index)
            return self._watch()
        finally:
            self._stop_all()
            self.reservation.close()
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def _on_signal(self, sig: int, frame: Any) -> None:
        """Forwarded at once (handlers run in the main thread, between two steps of the
        watch loop): the drain starts with the signal."""
        if not self.stopping:
            log.info("signal %s: every worker drains", sig)
            self.stopping = True
            self.stop_deadline = time.monotonic() + self.stop_grace
            self._send(signal.SIGTERM)
        elif sig == signal.SIGINT:  # a second Ctrl-C: stop now
            self.stop_deadline = time.monotonic()

    def _start(self, index: int, joining: bool = False) -> None:
        cluster = Cluster(
            index=index, workers=self.count, runtime_dir=self.runtime_dir, joining=joining
        )
        process = self.context.Process(
            target=run_worker,
            args=(self.settings, cluster, os.getpid()),
            name=f"layerserve-worker-{index}",
            daemon=False,
        )
        process.start()
        self.processes[index] = process
        log.info("worker %d started (pid %d)", index, process.pid)
        if self.stopping:  # a signal came while it started
            self._send(signal.SIGTERM)

    def _watch(self) -> int:
        backoff: dict[int, float] = {}  # index -> when to restart it
        while True:
            if self.reaps_orphans and time.monotonic() >= self.next_reap:
                self.next_reap = time.monotonic() + REAP_EVERY_SECONDS
                self._reap_orphans()
            if self.stopping and not self.processes:
                log.info("every worker has stopped")
                return 0
            if self.stopping and time.monotonic() > self.stop_deadline:
                log.error("workers still running %.0f s after the signal", self.stop_grace)
                return 0  # _stop_all kills what is left
            sentinels = {p.sentinel: i for i, p in self.processes.items()}
            timeout = 0.2 if not backoff else max(0.0, min(backoff.values()) - time.monotonic())
            for ready in multiprocessing.connection.wait(list(sentinels), min(timeout, 0.2)):
                index = sentinels[ready]  # type: ignore[index]
                process = self.processes.pop(index)
                process.join()
                if self.stopping:
                    log.info("worker %d exited with %s", index, process.exitcode)
                    continue
                if self._crashed_too_often(index, process.exitcode):
                    return 1
                backoff[index] = time.monotonic() + min(
                    MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (len(self.deaths) - 1)
                )
            for index, when in list(backoff.items()):
                if self.stopping:
                    backoff.clear()
                elif time.monotonic() >= when:
                    del backoff[index]
                    self.restarts += 1
                    write_restarts(self.runtime_dir, self.restarts)
                    self._start(index, joining=True)

    def _crashed_too_often(self, index: int, exitcode: int | None) -> bool:
        now = time.monotonic()
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > CRASH_WINDOW_SECONDS:
            self.deaths.popleft()
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else exitcode
        if len(self.deaths) >= CRASH_LIMIT:
            log.error(
                "worker %d died (%s): %d worker deaths within %.0f s; stopping the server",
                index,
                how,
                len(self.deaths),
                CRASH_WINDOW_SECONDS,
            )
            return True
        log.error("worker %d died (%s); restarting it", index, how)
        return False

    def _reap_orphans(self) -> None:
        """Reap the children that exited and are not workers (multiprocessing waits for
        those): as PID 1, the container's orphans."""
        workers = {process.pid for process in self.processes.values()}
        for pid in exited_children(os.getpid()):
            if pid not in workers:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)

    def _send(self, sig: int) -> None:
        for process in self.processes.values():
            if process.pid is not None and process.exitcode is None:
                try:
                    os.kill(process.pid, sig)
                except ProcessLookupError:
                    pass

    def _stop_all(self) -> None:
        """After the last worker, or on giving up: SIGTERM, the drain's time, SIGKILL."""
        self._send(signal.SIGTERM)
        deadline = min(time.monotonic() + self.stop_grace, self.stop_deadline or math.inf)
        for process in self.processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("worker pid %d did not stop; killing it", process.pid)
                process.kill()
                process.join()
        self.processes.clear()


def exited_children(parent: int) -> list[int]:
    """The children of ``parent`` that exited and wait to be reaped (zombies), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                # pid (comm) state ppid ...: comm may hold spaces and parentheses
                state, ppid = stat.read().rpartition(b")")[2].split(maxsplit=2)[:2]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if state == b"Z" and int(ppid) == parent:
            found.append(int(entry))
    return found


def runtime_directory(workers: int) -> Path:
    """A private directory for the workers' sockets, in TMPDIR, or in /tmp where TMPDIR
    is too long for a Unix socket's path (108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="layerserve-workers-"))
    if len(bytes(socket_path(path, workers))) < MAX_SOCKET_PATH:
        return path
    path.rmdir()
    return Path(tempfile.mkdtemp(prefix="layerserve-workers-", dir="/tmp"))


def run_worker(settings: Settings, cluster: Cluster, supervisor_pid: int) -> None:
    """A worker process's entry point."""
    os.setpgid(0, 0)  # out of the terminal's process group: Ctrl-C is the supervisor's
    _die_with_parent(supervisor_pid)
    from layerserve.service.server import serve_worker

    serve_worker(settings, cluster)


def _die_with_parent(supervisor_pid: int) -> None:
    """Ask the kernel for SIGTERM when the supervisor dies (Linux), so that a killed
    supervisor leaves no workers serving on their own."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor_pid:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
