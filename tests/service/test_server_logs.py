"""What a running ``layerserve serve`` writes to its log: one line per request only with
the access log on; one JSON object per line with ``LAYERSERVE_LOG_FORMAT=json``; and a busy
port is reported before any model loads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from live_server import free_port, wait_ready, write_model

from layerserve import examples

REQUESTS = 20


def serve(repository: Path, port: int, **env: str) -> subprocess.Popen:
    command = [sys.executable, "-c", "from layerserve.cli import app; app()", "serve"]
    return subprocess.Popen(
        [*command, "--model-repository", str(repository), "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1", "LAYERSERVE_DRAIN_SECONDS": "0", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_and_read_log(tmp_path: Path, **env: str) -> tuple[list[str], list[str]]:
    """Serve the MLP, send REQUESTS inferences with known ids, stop; the log lines and
    the ids."""
    repository = tmp_path / "repository"
    write_model(repository, "mlp", examples.mlp(), "1", {"max_batch_size": 8})
    port = free_port()
    process = serve(repository, port, **env)
    url = f"http://127.0.0.1:{port}"
    ids = [f"req-{i}" for i in range(REQUESTS)]
    try:
        wait_ready(url, process)
        body = {
            "inputs": [
                {
                    "name": "hidden_1_input",
                    "shape": [1, 784],
                    "datatype": "FP32",
                    "data": [0.5] * 784,
                }
            ]
        }
        for request_id in ids:
            response = httpx.post(
                url + "/v2/models/mlp/infer", json=body, headers={"X-Request-ID": request_id}
            )
            assert response.status_code == 200
    finally:
        process.terminate()
        _, log = process.communicate(timeout=30)
    return log.splitlines(), ids


def test_without_the_access_log_requests_write_no_line(tmp_path):
    lines, ids = run_and_read_log(tmp_path)
    assert lines  # start-up and shutdown are logged
    assert not [line for line in lines if any(i in line for i in ids)]


def test_the_access_log_writes_one_line_per_request(tmp_path):
    lines, ids = run_and_read_log(tmp_path, LAYERSERVE_ACCESS_LOG="true")
    for request_id in ids:
        (line,) = [line for line in lines if f"request_id={request_id} " in line]
        assert "method=POST path=/v2/models/mlp/infer status=200" in line


def test_json_logs_are_one_object_per_line_with_the_access_fields(tmp_path):
    lines, ids = run_and_read_log(
        tmp_path, LAYERSERVE_ACCESS_LOG="true", LAYERSERVE_LOG_FORMAT="json"
    )
    entries = [json.loads(line) for line in lines]  # every line is JSON
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    requests = {e["request_id"]: e for e in entries if e.get("path") == "/v2/models/mlp/infer"}
    assert sorted(requests) == sorted(ids)
    entry = requests[ids[0]]
    assert (entry["method"], entry["path"], entry["status"]) == (
        "POST",
        "/v2/models/mlp/infer",
        200,
    )
    assert entry["client"] == "127.0.0.1" and entry["duration_ms"] >= 0


def test_a_busy_port_fails_at_once_before_any_model_loads(tmp_path):
    repository = tmp_path / "empty"
    repository.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        process = serve(repository, port, LAYERSERVE_DEMO="true")
        _, log = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in log
    assert "choose --port" in log
    assert list(repository.iterdir()) == []  # the demo models were never exported
    assert time.monotonic() - started < 30
