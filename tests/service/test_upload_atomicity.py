"""A version appears whole or not at all: concurrent publishers in separate processes
get distinct versions, and a server killed mid-upload (or at the publishing rename)
serves after a restart exactly the versions that were published, with ``.staging``
emptied."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import free_port, running_server
from model_uploads import (
    hand_onnx,
    hand_reference,
    infer,
    listing,
    slow_onnx,
    staging_entries,
    upload,
)

from layerserve.service import storage
from layerserve.service.settings import Settings

X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]], dtype=np.float32)


# ---- storage, without a server ----------------------------------------------------------
# Stages one directory per id, waits for the "go" file, then publishes them all.
PUBLISHER = """
import sys, time
from pathlib import Path
from layerserve.service import storage

repository, go = Path(sys.argv[1]), Path(sys.argv[2])
staged = []
for ident in sys.argv[3:]:
    directory = storage.new_staging_dir(repository)
    (directory / "id").write_text(ident)
    staged.append(directory)
while not go.exists():
    time.sleep(0.001)
for directory in staged:
    storage.publish_version(repository, "m", directory)
"""


def test_publishers_in_separate_processes_get_distinct_versions(tmp_path):
    processes, per_process = 4, 5
    total = processes * per_process
    go = tmp_path / "go"
    repository = tmp_path / "repository"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(repository), str(go)]
            + [str(i) for i in range(p * per_process, (p + 1) * per_process)]
        )
        for p in range(processes)
    ]
    deadline = time.monotonic() + 30
    while len(staging_entries(repository)) < total:  # all staged: now race
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.touch()
    assert [child.wait(30) for child in children] == [0] * processes
    versions = sorted((repository / "m").iterdir(), key=lambda p: int(p.name))
    assert [v.name for v in versions] == [str(n) for n in range(1, total + 1)]
    published = sorted(int((v / "id").read_text()) for v in versions)
    assert published == list(range(total))  # each one exactly once
    assert staging_entries(repository) == []


def test_a_rename_that_loses_the_race_is_retried_with_the_next_number(tmp_path, monkeypatch):
    """Another process publishes version 1 between this one's listing and its rename:
    the rename fails (the target exists, not empty) and the next number is taken."""
    other, mine = storage.new_staging_dir(tmp_path), storage.new_staging_dir(tmp_path)
    (other / "id").write_text("other")
    (mine / "id").write_text("mine")
    listing_before_the_other = storage.numeric_entries(tmp_path / "m")
    assert storage.publish_version(tmp_path, "m", other) == "1"
    real, calls = storage.numeric_entries, []

    def stale_first(model_dir):
        calls.append(model_dir)
        return listing_before_the_other if len(calls) == 1 else real(model_dir)

    monkeypatch.setattr(storage, "numeric_entries", stale_first)
    # The other process's record of the highest version was not written yet either.
    monkeypatch.setattr(storage, "highest_published", lambda repository, name: 0)
    assert storage.publish_version(tmp_path, "m", mine) == "2"
    assert len(calls) == 2  # listed again after the failed rename
    assert (tmp_path / "m" / "1" / "id").read_text() == "other"
    assert (tmp_path / "m" / "2" / "id").read_text() == "mine"


def test_publishing_skips_numbers_already_taken_by_any_entry(tmp_path):
    (tmp_path / "m" / "7").mkdir(parents=True)  # not a served version, but taken
    staged = storage.new_staging_dir(tmp_path)
    (staged / "model.onnx").write_bytes(b"x")
    assert storage.publish_version(tmp_path, "m", staged) == "8"


def test_start_up_clean_up_spares_directories_of_live_processes(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host, other = storage.HOST, "0123456789ab"  # another replica's host id
    try:
        staging = tmp_path / storage.STAGING
        names = {
            "dead": f"upload-{dead.pid}-{host}-aaaa",
            "own": f"trash-{os.getpid()}-{host}-bbbb",
            "alive": f"upload-{alive.pid}-{host}-cccc",
            # another replica's: its pid means nothing here; spared while it changes
            "other host, busy": f"upload-{dead.pid}-{other}-dddd",
            "other host, a day old": f"upload-{alive.pid}-{other}-eeee",
            "foreign": "left-by-hand",
        }
        for name in names.values():
            (staging / name).mkdir(parents=True)
            (staging / name / "model.onnx").write_bytes(b"partial")
        day_ago = time.time() - storage.FOREIGN_STALE_SECONDS - 60
        os.utime(staging / names["other host, a day old"], (day_ago, day_ago))
        removed = storage.remove_stale_staging(tmp_path)
        gone = ["dead", "own", "other host, a day old", "foreign"]
        assert sorted(removed) == sorted(names[k] for k in gone)
        assert staging_entries(tmp_path) == sorted([names["alive"], names["other host, busy"]])
    finally:
        alive.kill()
        alive.wait()


def test_write_atomic_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    storage.write_atomic(target, b'{"max_batch_size": 4}')
    assert json.loads(target.read_text()) == {"max_batch_size": 4}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


# ---- a real server process, killed ------------------------------------------------------
# Crash points: the server kills itself with SIGKILL just before, or just after, the
# rename that publishes a version (chosen by LAYERSERVE_TEST_CRASH; none when unset).
SERVE_WITH_CRASH_POINT = """
import os, signal
from layerserve.service import storage

point, publish = os.environ.get("LAYERSERVE_TEST_CRASH"), storage.publish_version

def publish_then_maybe_die(*args, **kwargs):
    if point == "before_publish":
        os.kill(os.getpid(), signal.SIGKILL)
    version = publish(*args, **kwargs)
    if point == "after_publish":
        os.kill(os.getpid(), signal.SIGKILL)
    return version

storage.publish_version = publish_then_maybe_die
from layerserve.cli import app
app()
"""


@contextlib.contextmanager
def serving(repository: Path, crash: str | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    env = {**os.environ, "LAYERSERVE_LOG_LEVEL": "warning"}
    if crash:
        env["LAYERSERVE_TEST_CRASH"] = crash
    command = [sys.executable, "-c", SERVE_WITH_CRASH_POINT] if crash else [
        sys.executable, "-m", "layerserve.cli"
    ]  # fmt: skip
    # One process: the crash point patches this interpreter, and the kill ends the server.
    serve = ["serve", "--model-repository", str(repository), "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(
        [*command, *serve],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            assert process.poll() is None, "the server exited during start-up"
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.05)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def _served_versions(url: str, name: str) -> list[str]:
    return httpx.get(f"{url}/v2/models/{name}").json()["versions"]


def _seed(repository: Path) -> Path:
    """Version 1 of model "m", published by hand (as an operator would)."""
    (repository / "m" / "1").mkdir(parents=True)
    return hand_onnx(repository / "m" / "1" / "model.onnx")


def test_kill_in_the_middle_of_an_upload_then_restart(tmp_path):
    repository = tmp_path / "repository"
    _seed(repository)
    path, _ = slow_onnx(tmp_path / "slow.onnx")  # 4 MiB: several flushes to disk
    data = path.read_bytes()
    half_sent, release = threading.Event(), threading.Event()

    def slow_body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.onnx"\r\n\r\n'
        yield data[: len(data) // 2]
        half_sent.set()
        release.wait(30)
        yield data[len(data) // 2 :] + b"\r\n--b--\r\n"

    def post(url):
        headers = {"content-type": "multipart/form-data; boundary=b"}
        with contextlib.suppress(httpx.TransportError):
            return httpx.post(f"{url}/v1/models/m", content=slow_body(), headers=headers)

    with serving(repository) as (url, process), ThreadPoolExecutor(1) as pool:
        assert upload(url, "m", hand_onnx(tmp_path / "hand.onnx")).status_code == 201
        pending = pool.submit(post, url)
        assert half_sent.wait(30)
        part = None
        deadline = time.monotonic() + 30
        while part is None or part.stat().st_size == 0:  # the server is writing the body
            parts = list((repository / storage.STAGING).glob("upload-*/file.part"))
            part = parts[0] if parts else None
            assert time.monotonic() < deadline, "the upload never reached the disk"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        release.set()
        assert pending.result() is None  # the connection died with the server
    assert staging_entries(repository)  # the half-written upload is still there

    with serving(repository) as (url, _):
        assert _served_versions(url, "m") == ["1", "2"]
        assert staging_entries(repository) == []
        assert sorted(p.name for p in (repository / "m").iterdir()) == ["1", "2"]
        response, outputs = infer(url, "m", {"x": X}, "1")
        np.testing.assert_allclose(outputs["y"], hand_reference(X), rtol=1e-6)


def test_crash_at_the_publishing_rename_then_restart(tmp_path):
    repository = tmp_path / "repository"
    _seed(repository)
    model = hand_onnx(tmp_path / "hand.onnx")

    # Killed just before the rename: the staged version is complete but not published.
    with serving(repository, crash="before_publish") as (url, process):
        with pytest.raises(httpx.TransportError):
            upload(url, "m", model)
        assert process.wait(10) == -signal.SIGKILL
    (leftover,) = staging_entries(repository)
    staged = repository / storage.STAGING / leftover / "version"
    assert sorted(p.name for p in staged.iterdir()) == ["model.onnx", "upload.json"]

    # Killed just after it: version 2 is published, though never answered.
    with serving(repository, crash="after_publish") as (url, process):
        assert _served_versions(url, "m") == ["1"]
        index = httpx.post(f"{url}/v2/repository/index").json()
        assert {entry["name"] for entry in index} == {"m"}  # nothing from .staging
        assert staging_entries(repository) == []
        with pytest.raises(httpx.TransportError):
            upload(url, "m", model)
        assert process.wait(10) == -signal.SIGKILL
    published = repository / "m" / "2"
    assert sorted(p.name for p in published.iterdir()) == ["model.onnx", "upload.json"]

    with serving(repository) as (url, _):
        assert _served_versions(url, "m") == ["1", "2"]
        assert staging_entries(repository) == []
        assert (published / "model.onnx").read_bytes() == model.read_bytes()
        for version in ("1", "2"):
            response, outputs = infer(url, "m", {"x": X}, version)
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(outputs["y"], hand_reference(X), rtol=1e-6)


def test_a_client_that_leaves_mid_upload_leaves_nothing_behind(tmp_path):
    repository = tmp_path / "repository"
    _seed(repository)
    path, _ = slow_onnx(tmp_path / "slow.onnx")
    data = path.read_bytes()
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="s.onnx"\r\n\r\n'
    tail = b"\r\n--b--\r\n"
    with running_server(Settings(model_repository=repository)) as url:
        before = listing(repository / "m")
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                b"POST /v1/models/m HTTP/1.1\r\nHost: test\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n"
                + f"Content-Length: {len(head) + len(data) + len(tail)}\r\n\r\n".encode()
                + head
                + data[: len(data) // 2]
            )
            _wait_for(lambda: list(repository.glob(".staging/upload-*/file.part")))
        _wait_for(lambda: staging_entries(repository) == [])  # the server noticed, cleaned up
        assert listing(repository / "m") == before
        _, outputs = infer(url, "m", {"x": X})
        np.testing.assert_allclose(outputs["y"], hand_reference(X), rtol=1e-6)
        assert upload(url, "m", path).json()["version"] == "2"


def _wait_for(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
