"""Lifecycle: liveness while every worker is busy, and the graceful SIGTERM drain of a real
``layerserve serve`` process (not ready at once, in-flight requests finish, exit 0).

The slow model is in ``tests/support/slow_model.py``."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from live_server import free_port, pending, running_server, write_model
from slow_model import FEATURES, OUTPUTS, slow_reference, write_slow_model

from layerserve import examples
from layerserve.service.settings import Settings


def inputs(count: int, rows: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((rows, FEATURES), dtype=np.float32) for _ in range(count)]


# ---- liveness while busy -------------------------------------------------------------------
@pytest.fixture(scope="module")
def busy_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("busy")
    # two instances of one thread each: four requests keep both busy and two queued
    write_slow_model(root, "slow", {"max_batch_size": 0, "instances": 2, "intra_op_threads": 1})
    with running_server(Settings(model_repository=root)) as url:
        yield url


def infer_binary(url: str, x: np.ndarray) -> np.ndarray:
    client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    output = triton.InferRequestedOutput("y", binary_data=True)
    return client.infer("slow", [tensor], outputs=[output]).as_numpy("y")


def test_live_answers_within_half_a_second_while_every_worker_is_busy(busy_server):
    xs = inputs(4, rows=2048, seed=1)
    probes: list[tuple[float, int, dict]] = []
    queued: list[int] = []
    with ThreadPoolExecutor(len(xs)) as pool, httpx.Client(timeout=5) as probe:
        started = time.perf_counter()
        futures = [pool.submit(infer_binary, busy_server, x) for x in xs]
        while not all(f.done() for f in futures):
            queued.append(pending(probe.get(busy_server + "/metrics").text, "slow"))
            sent = time.perf_counter()
            answer = probe.get(busy_server + "/v2/health/live")
            probes.append((time.perf_counter() - sent, answer.status_code, answer.json()))
            time.sleep(0.02)
        busy_for = time.perf_counter() - started
        results = [f.result() for f in futures]

    assert max(queued) == 2, queued  # both instances running, two requests waiting
    assert len(probes) >= 5, (busy_for, len(probes))
    assert all(status == 200 and body == {"live": True} for _, status, body in probes)
    assert max(latency for latency, _, _ in probes) < 0.5, sorted(p[0] for p in probes)[-3:]
    for x, y in zip(xs, results, strict=True):
        np.testing.assert_allclose(y, slow_reference(x), rtol=1e-4, atol=1e-5)


# ---- graceful shutdown of a real process -------------------------------------------------
def v2_json(x: np.ndarray, name: str) -> dict:
    return {
        "inputs": [
            {"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }


def post_slow(url: str, body: bytes, request_id: str) -> httpx.Response:
    """``body``: encoded beforehand, so that many requests go out at once."""
    return httpx.post(
        url + "/v2/models/slow/infer",
        content=body,
        headers={"X-Request-ID": request_id, "Content-Type": "application/json"},
        timeout=60,
    )


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
            if value:
                return value
        except httpx.TransportError:
            pass
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}) while waiting: {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {what}")
        time.sleep(0.02)


def test_sigterm_drains_not_ready_finishes_in_flight_requests_and_exits_0(tmp_path):
    root = tmp_path / "repository"
    write_slow_model(root, "slow", {"max_batch_size": 0, "instances": 1, "intra_op_threads": 1})
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 64})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    drain = 0.8
    env = {
        **os.environ,
        "LAYERSERVE_MODEL_REPOSITORY": str(root),
        "LAYERSERVE_DRAIN_SECONDS": str(drain),
        "LAYERSERVE_EXIT_TIMEOUT_SECONDS": "20",
        # One process, so that the queue is one queue (tests/service/test_workers.py
        # drains several workers).
        "LAYERSERVE_WORKERS": "1",
        "LAYERSERVE_ACCESS_LOG": "true",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-c", "from layerserve.cli import app; app()", "serve"]
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200,
            60,
            "the server to become ready",
            proc,
        )
        # One instance, so the work queues: enough of it to last well past the drain. The
        # first request starts the session's threads; the fastest of three warm ones times a
        # request. Twice the work needed is sent, so that a machine that timed a request
        # slowly still has enough queued once every request has arrived.
        timing = orjson.dumps(v2_json(inputs(1, 4096, seed=9)[0], "x"))
        timings = []
        for attempt in range(4):
            timed = time.perf_counter()
            assert post_slow(url, timing, "timing").status_code == 200
            if attempt:
                timings.append(time.perf_counter() - timed)
        needed = max(2, math.ceil((drain + 1.0) / min(timings)) + 1)
        xs = inputs(2 * needed, rows=4096, seed=2)
        bodies = [orjson.dumps(v2_json(x, "x")) for x in xs]

        def arrived(futures: list) -> bool:
            """Every request queued, running or answered, and enough of them queued."""
            answered = sum(f.done() for f in futures)
            queued = pending(probe.get(url + "/metrics").text, "slow")
            return queued >= needed and queued + 1 + answered == len(xs)

        with ThreadPoolExecutor(len(xs)) as pool, httpx.Client(timeout=5) as probe:
            futures = [
                pool.submit(post_slow, url, body, f"in-flight-{i}") for i, body in enumerate(bodies)
            ]
            wait_until(lambda: arrived(futures), 30, "every request at the server", proc)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)

            # not ready at once; live stays 200; the drain still serves new requests
            not_ready = wait_until(
                lambda: (r := probe.get(url + "/v2/health/ready")).status_code == 503 and r,
                0.5,
                "ready to turn 503 after SIGTERM",
            )
            assert "draining" in not_ready.json()["error"]
            assert not_ready.headers["Retry-After"] == "1"
            assert probe.get(url + "/v2/health/live").json() == {"live": True}
            x = np.random.default_rng(3).random((2, 784), dtype=np.float32)
            during = probe.post(url + "/v2/models/mlp/infer", json=v2_json(x, "hidden_1_input"))
            assert during.status_code == 200, during.text
            assert during.headers["connection"] == "close"  # clients leave during the drain
            got = np.array(during.json()["outputs"][0]["data"], np.float32).reshape(2, 10)
            np.testing.assert_allclose(got, examples.mlp().predict(x), rtol=1e-5, atol=1e-6)
            assert time.monotonic() - signalled < drain  # all of that within the drain
            assert probe.get(url + "/v2/health/ready").status_code == 503

            # after the drain the server stops accepting connections, in-flight work goes on
            time.sleep(max(0.0, signalled + drain + 0.4 - time.monotonic()))
            with pytest.raises(httpx.TransportError):
                httpx.get(url + "/v2/health/live", timeout=1)
            assert not all(f.done() for f in futures)

            responses = [f.result() for f in futures]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    for i, (x, response) in enumerate(zip(xs, responses, strict=True)):
        assert response.status_code == 200, response.text
        assert response.headers["X-Request-ID"] == f"in-flight-{i}"
        got = np.array(response.json()["outputs"][0]["data"], np.float32).reshape(len(x), OUTPUTS)
        np.testing.assert_allclose(got, slow_reference(x), rtol=1e-4, atol=1e-5)
    log_text = log_path.read_text()
    for i in range(len(xs)):
        assert re.search(
            rf"request_id=in-flight-{i} method=POST path=/v2/models/slow/infer status=200 "
            r"duration_ms=\d+\.\d\d",
            log_text,
        ), log_text
