"""The repository on disk is the truth, in one process: with repository_poll_seconds set,
what is published into the repository by hand (a version folder renamed into place, a
new model folder, a config.json edit) is served within the poll interval and the settle
time without any API call, and what is removed stops being served. A version still being
written, or one that cannot load, never takes the served versions down, and a broken one
is tried once until its files change. An unload through the API is a mark on disk, so a
second server on the same repository, or a restart, leaves the model unloaded until a
load removes the mark.

Every server here is real (uvicorn on loopback) and every answer is checked against the
model's own ``predict``; each version has its own weights, so an answer also shows which
version computed it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from live_server import running_server, write_model
from model_uploads import upload
from published import BOUND, POLL, eventually, publish, tiny
from starlette.requests import Request
from starlette.responses import JSONResponse

from layerserve.export import to_onnx
from layerserve.service.model_config import MAX_CONFIG_FILE_BYTES
from layerserve.service.settings import Settings
from layerserve.service.watcher import SETTLE_SECONDS

# A change is served after the settle time and at most two polls; the rest is margin
# for a busy two-core machine.
ATOL = 1e-5
X = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)


def onnx_bytes(version: int) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        to_onnx(tiny(version), path)
        return path.read_bytes()


def publish_model(repo: Path, name: str, versions: dict[str, int], config: dict | None) -> None:
    """A whole model folder, built aside and renamed in."""
    incoming = Path(tempfile.mkdtemp(dir=repo, prefix=".incoming-"))
    for version, seed in versions.items():
        to_onnx(tiny(seed), incoming / version / "model.onnx")
    if config is not None:
        (incoming / "config.json").write_text(json.dumps(config))
    os.rename(incoming, repo / name)


def take_away(path: Path) -> None:
    """Remove a folder from the repository in one step (renamed aside, then deleted)."""
    aside = path.parent / f".removed-{path.name}-{os.getpid()}"
    os.rename(path, aside)
    shutil.rmtree(aside)


def write_config(repo: Path, name: str, config: dict | str) -> None:
    """Replace config.json in one step, as an editor that saves atomically does."""
    text = config if isinstance(config, str) else json.dumps(config)
    temporary = repo / f".config-{name}.tmp"
    temporary.write_text(text)
    os.replace(temporary, repo / name / "config.json")


def versions(http: httpx.Client, name: str) -> list[str] | int:
    """The versions ``name`` serves (its V2 metadata), or the status code."""
    response = http.get(f"/v2/models/{name}")
    return response.json()["versions"] if response.status_code == 200 else response.status_code


def infer(http: httpx.Client, name: str, version: str | None = None) -> httpx.Response:
    route = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    entry = {"name": "dense_input", "shape": list(X.shape), "datatype": "FP32"}
    return http.post(route, json={"inputs": [{**entry, "data": X.reshape(-1).tolist()}]})


def assert_serves(
    http: httpx.Client, name: str, version: str | None, expected: int, seed: int | None = None
) -> None:
    """``name`` answers (the given version, or without one) from version ``expected``,
    with the outputs of ``tiny(seed)`` (seed: the version unless given)."""
    response = infer(http, name, version)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == str(expected)
    values = np.asarray(response.json()["outputs"][0]["data"], np.float32).reshape(3, 3)
    model = tiny(expected if seed is None else seed)
    np.testing.assert_allclose(values, model.predict(X), rtol=0, atol=ATOL)


def load_failures(caplog: pytest.LogCaptureFixture, name: str, version: str) -> int:
    needle = f"model {name} version {version} did not load"
    return sum(needle in r.getMessage() for r in caplog.records)


@contextlib.contextmanager
def watching(url: str, name: str) -> Iterator[list[tuple[int, int, str]]]:
    """Ask readiness and ``name`` (without a version) over and over while the block runs:
    (ready status, inference status, version) of each round. Every 200 answer is
    checked against the predict of the version that says it answered."""
    seen: list[tuple[int, int, str]] = []
    wrong: list[str] = []
    stop = threading.Event()

    def ask() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                ready = http.get("/v2/health/ready").status_code
                response = infer(http, name)
                version = response.json().get("model_version", "")
                if response.status_code == 200:
                    values = np.asarray(response.json()["outputs"][0]["data"], np.float32)
                    if not np.allclose(values.reshape(3, 3), tiny(int(version)).predict(X)):
                        wrong.append(version)
                seen.append((ready, response.status_code, version))
                time.sleep(0.02)

    thread = threading.Thread(target=ask)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()
    assert wrong == [], f"answers that are not their version's: {wrong}"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_model(tmp_path, "m", tiny(1), "1", {"max_batch_size": 64})
    write_model(tmp_path, "other", tiny(7), "1")
    return tmp_path


@pytest.fixture
def url(repo: Path) -> Iterator[str]:
    with running_server(Settings(model_repository=repo, repository_poll_seconds=POLL)) as base:
        yield base


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


# ---- published, removed, appearing and disappearing ---------------------------------
def test_a_version_renamed_into_place_is_served_without_any_call(url, http, repo):
    with watching(url, "m") as seen:
        publish(repo, "m", "2", onnx_bytes(2))
        eventually(lambda: versions(http, "m"), ["1", "2"])
    assert_serves(http, "m", None, expected=2)  # the highest version answers
    assert_serves(http, "m", "1", expected=1)
    # Neither readiness nor the model's answers had a gap while the version arrived.
    assert {(ready, status) for ready, status, _ in seen} == {(200, 200)}
    assert {version for *_, version in seen} <= {"1", "2"}


def test_removed_versions_and_models_go_and_new_models_come(tmp_path):
    repo = tmp_path
    write_model(repo, "m", tiny(1), "1")
    write_model(repo, "m", tiny(2), "2")
    write_model(repo, "other", tiny(7), "1")
    settings = Settings(model_repository=repo, repository_poll_seconds=POLL)
    with running_server(settings) as base, httpx.Client(base_url=base, timeout=30) as http:
        assert versions(http, "m") == ["1", "2"]
        take_away(repo / "m" / "2")
        eventually(lambda: versions(http, "m"), ["1"])
        assert_serves(http, "m", None, expected=1)
        response = infer(http, "m", "2")
        assert response.status_code == 404
        assert "available versions: ['1']" in response.json()["error"]

        take_away(repo / "m")
        eventually(lambda: versions(http, "m"), 404)
        assert "'m' is not found" in infer(http, "m").json()["error"]
        index = http.post("/v2/repository/index").json()
        assert index == [{"name": "other", "version": "1", "state": "READY"}]

        publish_model(repo, "fresh", {"1": 3, "4": 4}, {"max_batch_size": 5})
        eventually(lambda: versions(http, "fresh"), ["1", "4"])
        assert_serves(http, "fresh", None, expected=4)
        assert_serves(http, "fresh", "1", expected=1, seed=3)
        assert http.get("/v2/models/fresh/config").json()["max_batch_size"] == 5
        assert_serves(http, "other", None, expected=1, seed=7)
        assert http.get("/v2/health/ready").status_code == 200


def test_a_config_edit_applies_and_a_broken_edit_keeps_the_model_serving(http, repo, caplog):
    caplog.set_level(logging.INFO, logger="layerserve.service")
    write_config(repo, "m", {"max_batch_size": 2})
    eventually(lambda: http.get("/v2/models/m/config").json()["max_batch_size"], 2)
    refused = infer(http, "m")  # three rows, over the new limit
    assert refused.status_code == 400
    assert "batch-size must be <= 2" in refused.json()["error"]
    write_config(repo, "m", {"max_batch_size": 3})
    eventually(lambda: http.get("/v2/models/m/config").json()["max_batch_size"], 3)
    assert_serves(http, "m", None, expected=1)

    # An edit that does not parse is reported, and the model serves on as it was.
    write_config(repo, "m", '{"max_batch_size": 1, ')
    eventually(lambda: any("model m: invalid" in r.getMessage() for r in caplog.records), True)
    assert_serves(http, "m", None, expected=1)
    assert http.get("/v2/models/m/config").json()["max_batch_size"] == 3
    assert http.get("/v2/health/ready").status_code == 200
    assert {"name": "m", "version": "1", "state": "READY"} in http.post(
        "/v2/repository/index"
    ).json()
    write_config(repo, "m", {"max_batch_size": 8})
    eventually(lambda: http.get("/v2/models/m/config").json()["max_batch_size"], 8)
    assert_serves(http, "m", None, expected=1)


def test_a_removed_version_goes_while_the_config_is_broken(http, repo, caplog):
    """A config.json that does not parse keeps what serves serving, but a version
    folder taken away stops being served all the same."""
    caplog.set_level(logging.INFO, logger="layerserve.service")
    publish(repo, "m", "2", onnx_bytes(2))
    eventually(lambda: versions(http, "m"), ["1", "2"])
    write_config(repo, "m", '{"max_batch_size": 8,')
    eventually(lambda: any("model m: invalid" in r.getMessage() for r in caplog.records), True)
    take_away(repo / "m" / "2")
    eventually(lambda: versions(http, "m"), ["1"])
    assert_serves(http, "m", None, expected=1)
    assert infer(http, "m", "2").status_code == 404


def test_a_config_file_past_its_limit_is_refused_unread_and_the_model_serves_on(http, repo, caplog):
    caplog.set_level(logging.INFO, logger="layerserve.service")
    write_config(repo, "m", " " * MAX_CONFIG_FILE_BYTES + '{"max_batch_size": 2}')
    needle = f"Expected at most {MAX_CONFIG_FILE_BYTES} bytes"
    eventually(lambda: any(needle in r.getMessage() for r in caplog.records), True)
    assert_serves(http, "m", None, expected=1)  # three rows: the old limit of 64 holds
    assert http.get("/v2/models/m/config").json()["max_batch_size"] == 64


def test_a_model_file_rewritten_in_place_with_its_size_and_time_is_reloaded(http, repo):
    """Rewritten in place (one inode) with its size and modification time kept, as `cp
    -p` or a reproducible build leaves it: its change time still tells, and the version
    serves the new file's weights."""
    path = repo / "m" / "1" / "model.onnx"
    before = path.stat()
    content = onnx_bytes(5)
    assert len(content) == before.st_size  # the same graph, other weights
    with path.open("r+b") as file:
        file.write(content)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )

    def serves_the_new_weights() -> bool:
        values = np.asarray(infer(http, "m").json()["outputs"][0]["data"], np.float32)
        return bool(np.allclose(values.reshape(3, 3), tiny(5).predict(X), atol=ATOL))

    eventually(serves_the_new_weights, True)
    assert_serves(http, "m", "1", expected=1, seed=5)


# ---- copies in progress and broken versions -----------------------------------------
def test_a_version_being_written_waits_until_it_is_complete(http, repo, caplog):
    caplog.set_level(logging.INFO, logger="layerserve.service")
    content = onnx_bytes(2)
    half = len(content) // 2
    with pytest.raises(Exception, match="(?i)protobuf|parse|load"):  # loading it would fail
        ort.InferenceSession(content[:half], providers=["CPUExecutionProvider"])
    folder = repo / "m" / "2"
    folder.mkdir()
    with open(folder / "model.onnx", "wb") as handle:
        handle.write(content[:half])
        handle.flush()
        # Still being written for longer than the settle time (its ctime keeps moving).
        end = time.monotonic() + SETTLE_SECONDS + 3 * POLL
        while time.monotonic() < end:
            os.utime(folder / "model.onnx")
            assert versions(http, "m") == ["1"]
            time.sleep(POLL / 2)
        handle.write(content[half:])
    assert load_failures(caplog, "m", "2") == 0  # never tried while it changed
    eventually(lambda: versions(http, "m"), ["1", "2"])
    assert_serves(http, "m", None, expected=2)
    assert load_failures(caplog, "m", "2") == 0


def test_a_broken_version_keeps_the_others_serving_and_is_tried_once(url, http, repo, caplog):
    caplog.set_level(logging.INFO, logger="layerserve.service")
    with watching(url, "m") as seen:
        published = publish(repo, "m", "2", b"not an ONNX model\n" * 64)
        eventually(lambda: load_failures(caplog, "m", "2"), 1)
        time.sleep(5 * POLL)  # polls go by: the same files are not tried again
    assert load_failures(caplog, "m", "2") == 1
    assert {(ready, status, version) for ready, status, version in seen} == {(200, 200, "1")}
    assert versions(http, "m") == ["1"]
    assert http.post("/v2/repository/index").json()[0] == {
        "name": "m",
        "version": "1",
        "state": "READY",
    }
    # Its files change (the fixed model replaces the broken one): it is tried, and serves.
    fixed = repo / ".fixed-model.onnx"
    fixed.write_bytes(onnx_bytes(2))
    os.replace(fixed, published / "model.onnx")
    eventually(lambda: versions(http, "m"), ["1", "2"])
    assert_serves(http, "m", None, expected=2)
    assert load_failures(caplog, "m", "2") == 1


def test_a_folder_that_cannot_be_read_neither_stops_polling_nor_drops_a_model(http, repo):
    """A folder the server may not read (a neighbour's, or a network volume's passing
    error) is not a deleted model: polling goes on for the others, and a served model
    whose folder cannot be read serves on."""
    if os.geteuid() == 0:
        pytest.skip("root reads folders whatever their mode: needs a user other than root")
    (repo / "private").mkdir(mode=0)
    try:
        publish(repo, "m", "2", onnx_bytes(2))
        eventually(lambda: versions(http, "m"), ["1", "2"])
    finally:
        (repo / "private").chmod(0o755)
    (repo / "m").chmod(0)
    try:
        time.sleep(SETTLE_SECONDS + 3 * POLL)
        assert versions(http, "m") == ["1", "2"]
    finally:
        (repo / "m").chmod(0o755)
    assert_serves(http, "m", None, expected=2)


# ---- polling off ---------------------------------------------------------------------
def test_without_polling_nothing_changes_until_an_explicit_load(repo):
    settings = Settings(model_repository=repo, repository_poll_seconds=0)
    with running_server(settings) as base, httpx.Client(base_url=base, timeout=30) as http:
        publish(repo, "m", "2", onnx_bytes(2))
        publish_model(repo, "fresh", {"1": 3}, None)
        write_config(repo, "m", {"max_batch_size": 5})
        take_away(repo / "other" / "1")
        time.sleep(SETTLE_SECONDS + 3 * POLL)  # longer than a poll and the settle time
        assert versions(http, "m") == ["1"]
        assert http.get("/v2/models/m/config").json()["max_batch_size"] == 64
        assert versions(http, "fresh") == 404
        assert_serves(http, "other", None, expected=1, seed=7)  # still served from memory
        assert http.post("/v2/repository/models/m/load").status_code == 200
        assert versions(http, "m") == ["1", "2"]
        assert http.get("/v2/models/m/config").json()["max_batch_size"] == 5
        assert_serves(http, "m", None, expected=2)
        assert http.post("/v2/repository/models/fresh/load").status_code == 200
        assert_serves(http, "fresh", None, expected=1, seed=3)


# ---- unloading is a mark on disk -----------------------------------------------------
def test_an_unload_holds_for_every_server_on_the_repository_and_a_load_lifts_it(url, http, repo):
    unloaded = "'m' has no available versions: it is unloaded"
    assert http.post("/v2/repository/models/m/unload").status_code == 200
    assert (repo / ".unloaded" / "m").is_file()
    assert unloaded in infer(http, "m").json()["error"]
    settings = Settings(model_repository=repo, repository_poll_seconds=POLL)
    # A second server (a replica, or this one restarted) starts with m unloaded.
    with running_server(settings) as second, httpx.Client(base_url=second, timeout=30) as other:
        response = infer(other, "m")
        assert response.status_code == 503
        assert unloaded in response.json()["error"]
        assert_serves(other, "other", None, expected=1, seed=7)
        assert other.get("/v2/health/ready").status_code == 200
        # A load on the second server lifts the mark; the first one follows by polling.
        assert other.post("/v2/repository/models/m/load").status_code == 200
        assert not (repo / ".unloaded" / "m").exists()
        assert_serves(other, "m", None, expected=1)
        eventually(lambda: infer(http, "m").status_code, 200)
        assert_serves(http, "m", None, expected=1)
        # And an unload there reaches the first server the same way.
        assert other.post("/v2/repository/models/m/unload").status_code == 200
        eventually(lambda: infer(http, "m").status_code, 503)
    assert http.get("/v2/health/ready").status_code == 200


def test_models_copied_into_an_empty_repository_leave_the_server_ready(tmp_path, caplog):
    """An empty repository is ready; a model copied in does not make it unready while it
    waits and loads, nor for good when it cannot load."""
    caplog.set_level(logging.INFO, logger="layerserve.service")
    settings = Settings(model_repository=tmp_path, repository_poll_seconds=POLL)
    with (
        running_server(settings) as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        publish(tmp_path, "junk", "1", b"not an ONNX model\n")
        readiness = []
        while not load_failures(caplog, "junk", "1"):
            readiness.append(http.get("/v2/health/ready").status_code)
            assert len(readiness) < BOUND / 0.05, "the broken model was never tried"
            time.sleep(0.05)
        readiness.append(http.get("/v2/health/ready").status_code)
        assert set(readiness) == {200}, readiness


def test_a_restart_with_every_model_unloaded_is_ready(tmp_path):
    """Readiness gates a Kubernetes Service: a replica that stays unready because its
    models are unloaded on request can never be reached to load them again."""
    write_model(tmp_path, "m", tiny(1))
    settings = Settings(model_repository=tmp_path, repository_poll_seconds=POLL)
    with running_server(settings) as first:
        assert httpx.post(f"{first}/v2/repository/models/m/unload").status_code == 200
    with running_server(settings, wait_ready=False) as second:
        assert httpx.get(f"{second}/v2/health/ready").status_code == 200


# ---- convergence after a change made through the API ---------------------------------
def test_an_upload_does_not_load_a_version_still_being_copied(url, repo, tmp_path, caplog):
    """An upload converges its model at once; a version of that model still being
    copied in by hand waits for the settle time all the same."""
    caplog.set_level(logging.INFO, logger="layerserve.service")
    folder = repo / "m" / "5"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(onnx_bytes(5)[:100])  # a copy in progress
    to_onnx(tiny(6), tmp_path / "six.onnx")
    response = upload(url, "m", tmp_path / "six.onnx")
    assert response.status_code == 201, response.text
    assert response.json()["version"] == "6"
    assert load_failures(caplog, "m", "5") == 0


def add_converge_route(app: Any) -> None:
    """POST /test/converge: call the handler a sibling worker reaches after a change
    made through it, as the cluster channel calls it."""

    async def converge(request: Request) -> JSONResponse:
        change = {"name": request.query_params["name"], "trusted": [], "force": False}
        await app.state.cluster.handlers["converge"](change)
        return JSONResponse({})

    app.add_route("/test/converge", converge, methods=["POST"])


def test_a_model_a_sibling_converge_finds_does_not_make_this_worker_unready(repo):
    """As with polling: a model copied into the repository (here one that cannot load)
    must not make a serving worker unready, whichever way the worker finds it."""
    settings = Settings(model_repository=repo, repository_poll_seconds=0)
    with (
        running_server(settings, customize=add_converge_route) as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        publish(repo, "junk", "1", b"not an ONNX model\n")
        assert http.post("/test/converge", params={"name": "junk"}).status_code == 200
        assert http.post("/v2/repository/index").json()[0]["name"] == "junk"
        assert http.get("/v2/health/ready").status_code == 200
