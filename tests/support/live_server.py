"""A real uvicorn server on loopback, in a background thread, for end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from layerserve import examples
from layerserve.export import to_onnx
from layerserve.service.server import build_server
from layerserve.service.settings import Settings


def wait_ready(url: str, process: subprocess.Popen | None = None, timeout: float = 60) -> None:
    """Until ``url`` answers ready (and ``process``, a server started by the test, runs)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} was not ready within {timeout:.0f} s")
        time.sleep(0.05)


def pending(metrics_text: str, model: str) -> int:
    """Requests of ``model`` version 1 queued and not yet running, from ``/metrics``."""
    match = re.search(
        rf'^nv_inference_pending_request_count\{{model="{model}",version="1"\}} (\d+)$',
        metrics_text,
        re.M,
    )
    assert match, metrics_text
    return int(match.group(1))


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range: a port the kernel picks from
    that range may be given, before the server binds it, to a client's connection in
    another test process (the cause of "address already in use" under pytest-xdist);
    ports below the range are only ever taken by a bind."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    below = [random.randrange(10_000, low) for _ in range(200)] if low > 11_000 else []
    for port in [*below, 0]:  # 0: the kernel's choice, should none of those be free
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                if port == 0:
                    raise
                continue
            return sock.getsockname()[1]
    raise AssertionError("unreachable: binding port 0 returns or raises")


def write_model(
    root: Path, name: str, model, version: str = "1", config: dict | None = None
) -> Path:
    target = root / name / version / "model.onnx"
    to_onnx(model, target)
    if config is not None:
        (root / name / "config.json").write_text(json.dumps(config))
    return target


def demo_repository(root: Path) -> Path:
    """mlp (versions 1 and 2), conv_flatten, masking_lstm, and a two-input model."""
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 64})
    write_model(root, "mlp", examples.mlp(), "2")
    write_model(root, "conv_flatten", examples.conv_flatten())
    write_model(root, "masking_lstm", examples.masking_lstm())
    write_model(root, "hadamard", examples.hadamard_model())
    return root


@contextlib.contextmanager
def running_server(
    settings: Settings, wait_ready: bool = True, customize: Callable[[Any], None] | None = None
) -> Iterator[str]:
    """Start uvicorn with ``settings`` (its port replaced by a free one); yield the URL.
    ``customize`` receives the FastAPI app before it starts (to add test routes)."""
    settings = settings.model_copy(update={"host": "127.0.0.1", "port": free_port()})
    server = build_server(settings)
    if customize is not None:
        customize(server.app)
    server.config.install_signal_handlers = False  # not the main thread
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + 60
    path = "/v2/health/ready" if wait_ready else "/v2/health/live"
    while True:
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not become ready")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
