"""The SIGTERM drain of a real ``layerserve serve`` process under keep-alive load: every
request a client manages to send gets its response; the only failures allowed are
connections the stopped server refuses, before anything is sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import numpy as np
from live_server import free_port, wait_ready, write_model

from layerserve import examples

CLIENTS = 8
DRAIN_SECONDS = 1.0


def request_body(seed: int) -> dict:
    x = np.random.default_rng(seed).random((1, 784), dtype=np.float32)
    return {
        "inputs": [
            {
                "name": "hidden_1_input",
                "shape": [1, 784],
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }


def client_loop(url: str, body: dict, stop: threading.Event, outcomes: Counter) -> None:
    """Send requests back to back until the server refuses to connect."""
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            try:
                response = client.post(url + "/v2/models/mlp/infer", json=body)
            except httpx.ConnectError:
                outcomes["refused"] += 1  # nothing was sent: the listener is closed
                return
            except httpx.TransportError as exc:  # sent, then reset or closed unanswered
                outcomes[f"lost: {type(exc).__name__}: {exc}"] += 1
                return
            outcomes[(response.status_code, response.headers.get("connection"))] += 1


def test_a_drain_under_keep_alive_load_loses_no_request(tmp_path):
    root = tmp_path / "repository"
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 64})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LAYERSERVE_MODEL_REPOSITORY": str(root),
        "LAYERSERVE_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "LAYERSERVE_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-c", "from layerserve.cli import app; app()", "serve"]
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(url, proc)
        stop = threading.Event()
        outcomes: Counter = Counter()
        threads = [
            threading.Thread(target=client_loop, args=(url, request_body(i), stop, outcomes))
            for i in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # keep-alive connections in use
        proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=DRAIN_SECONDS + 20)
        stop.set()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    lost = {k: v for k, v in outcomes.items() if isinstance(k, str) and k.startswith("lost")}
    assert not lost, outcomes
    assert outcomes["refused"] == CLIENTS  # every client ran until the listener closed
    assert outcomes[(200, None)] > 0  # served on keep-alive before the signal
    assert outcomes[(200, "close")] >= CLIENTS  # answered during the drain, told to leave
    assert all(k[0] == 200 for k in outcomes if isinstance(k, tuple)), outcomes
