"""A read-only server serves the repository as it is on disk: upload, delete and unload
answer 403 with one message that names the repository and says models come from that
directory, and change nothing there; inference, metadata, load and export work, and
polling still picks up versions published from outside (the mode of models mounted by
KServe's storage initializer). It is set by ``read_only`` or found by the server itself
when the repository cannot be written: a read-only bind mount (needs root), or file
modes (needs a user other than root, whom modes do not stop)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from live_server import running_server, write_model
from model_uploads import listing
from published import POLL, eventually, tiny
from pydantic import ValidationError

from layerserve.export import to_onnx
from layerserve.models import Sequential
from layerserve.saving import save_model
from layerserve.service import storage
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

ATOL = 1e-5
X = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
STALE = ".staging/upload-1-0123456789abcdef"  # left by a process that is gone


def infer(http: httpx.Client, name: str, version: str | None = None) -> httpx.Response:
    route = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    entry = {"name": "dense_input", "shape": list(X.shape), "datatype": "FP32"}
    return http.post(route, json={"inputs": [{**entry, "data": X.reshape(-1).tolist()}]})


def assert_serves(http: httpx.Client, name: str, expected: str) -> None:
    response = infer(http, name)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == expected
    values = np.asarray(response.json()["outputs"][0]["data"], np.float32).reshape(2, 3)
    np.testing.assert_allclose(values, tiny(int(expected)).predict(X), rtol=0, atol=ATOL)


def versions(http: httpx.Client, name: str) -> list[str] | int:
    response = http.get(f"/v2/models/{name}")
    return response.json()["versions"] if response.status_code == 200 else response.status_code


def publish(repo: Path, name: str, version: str, model: Sequential) -> None:
    """A version folder built aside (on the same filesystem) and renamed into place."""
    incoming = Path(tempfile.mkdtemp(dir=repo, prefix=".incoming-"))
    to_onnx(model, incoming / "model.onnx")
    (repo / name).mkdir(exist_ok=True)
    os.rename(incoming, repo / name / version)


def fill(repo: Path) -> Path:
    write_model(repo, "m", tiny(1), "1", {"max_batch_size": 16})
    (repo / STALE).mkdir(parents=True)
    return repo


# The write endpoints: (method, path, what the request sends).
WRITES = {
    "upload": ("POST", "/v1/models/m", "file"),
    "upload_new_model": ("POST", "/v1/models/new", "file"),
    "delete_model": ("DELETE", "/v1/models/m", None),
    "delete_version": ("DELETE", "/v1/models/m/versions/1", None),
    "unload": ("POST", "/v2/repository/models/m/unload", None),
}


def write_request(http: httpx.Client, case: str, onnx_path: Path) -> httpx.Response:
    method, path, body = WRITES[case]
    if body == "file":
        files = {"file": ("tiny.onnx", onnx_path.read_bytes(), "application/octet-stream")}
        return http.request(method, path, files=files)
    return http.request(method, path)


def assert_refused(response: httpx.Response, repo: Path, why: str) -> None:
    assert response.status_code == 403, response.text
    assert list(response.json()) == ["error"]
    error = response.json()["error"]
    assert "read-only" in error and f"'{repo}'" in error and why in error, error
    assert "models come from that directory" in error, error


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("files") / "tiny.onnx"
    to_onnx(tiny(5), path)
    return path


# ---- read_only=True ------------------------------------------------------------------
@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return fill(tmp_path_factory.mktemp("read_only"))


@pytest.fixture(scope="module")
def url(repo) -> Iterator[str]:
    settings = Settings(model_repository=repo, read_only=True, repository_poll_seconds=POLL)
    with running_server(settings) as base:
        yield base


@pytest.fixture
def http(url) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("case", list(WRITES))
def test_writes_are_refused_saying_where_models_come_from(http, repo, onnx_path, case):
    before = listing(repo)
    assert_refused(write_request(http, case, onnx_path), repo, "--read-only is set")
    assert listing(repo) == before
    assert_serves(http, "m", "1")


def test_reads_load_and_export_work(http, repo, tmp_path):
    before = listing(repo)
    assert_serves(http, "m", "1")
    assert http.get("/v2/models/m").json()["versions"] == ["1"]
    assert http.get("/v2/models/m/config").json()["max_batch_size"] == 16
    assert http.post("/v2/repository/index").json() == [
        {"name": "m", "version": "1", "state": "READY"}
    ]
    assert http.get("/v1/models/m/onnx").content == (repo / "m" / "1" / "model.onnx").read_bytes()
    assert http.post("/v2/repository/models/m/load").json() == {"name": "m", "load": True}
    assert_serves(http, "m", "1")
    save_model(tiny(4), tmp_path / "tiny.zip")
    exported = http.post(
        "/v1/export", files={"file": ("tiny.zip", (tmp_path / "tiny.zip").read_bytes())}
    )
    assert exported.status_code == 200, exported.text
    session = ort.InferenceSession(exported.content, providers=["CPUExecutionProvider"])
    (values,) = session.run(None, {session.get_inputs()[0].name: X})
    np.testing.assert_allclose(values, tiny(4).predict(X), rtol=0, atol=ATOL)
    assert listing(repo) == before  # the stale staging folder included: nothing removed
    assert http.get("/v2/health/ready").status_code == 200


def test_versions_published_from_outside_are_served(http, repo):
    publish(repo, "m", "2", tiny(2))
    eventually(lambda: versions(http, "m"), ["1", "2"])
    assert_serves(http, "m", "2")


def test_demo_models_and_read_only_do_not_go_together(tmp_path):
    with pytest.raises(ValidationError, match="demo.*read_only"):
        Settings(model_repository=tmp_path, demo=True, read_only=True)


def test_a_load_does_not_claim_success_for_a_model_another_server_unloaded(tmp_path):
    """The mark of an unload made by a server that can write the repository holds here
    too; a load here cannot remove it, so it must not answer as if it had loaded."""
    fill(tmp_path)
    settings = Settings(model_repository=tmp_path, read_only=True, repository_poll_seconds=POLL)
    with running_server(settings) as base, httpx.Client(base_url=base, timeout=30) as http:
        (tmp_path / ".unloaded").mkdir()
        (tmp_path / ".unloaded" / "m").write_bytes(b"")
        eventually(lambda: infer(http, "m").status_code, 503)
        assert "it is unloaded" in infer(http, "m").json()["error"]
        response = http.post("/v2/repository/models/m/load")
        if response.status_code == 200:
            assert_serves(http, "m", "1")
        else:
            assert response.status_code in (403, 409), response.text
            assert str(tmp_path / ".unloaded" / "m") in response.json()["error"]
        (tmp_path / ".unloaded" / "m").unlink()
        eventually(lambda: infer(http, "m").status_code, 200)


# ---- a repository that cannot be written --------------------------------------------
@contextlib.contextmanager
def bind_mount_read_only(source: Path, target: Path) -> Iterator[None]:
    """``source`` seen read-only at ``target`` (skips without the privilege)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to make a read-only bind mount")
    target.mkdir()
    made = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"needs CAP_SYS_ADMIN to bind-mount: {made.stderr.decode().strip()}")
    try:
        subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(target)], check=True, capture_output=True
        )
        yield
    finally:
        subprocess.run(["umount", str(target)], check=True, capture_output=True)


@contextlib.contextmanager
def without_write_permission(folder: Path) -> Iterator[None]:
    """``folder`` and its model folders without write permission (skips as root)."""
    if os.geteuid() == 0:
        pytest.skip("root ignores file modes: needs a user other than root")
    folders = [folder, *(p for p in folder.iterdir() if p.is_dir())]
    for path in folders:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
    try:
        yield
    finally:
        for path in folders:
            path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o200)


@contextlib.contextmanager
def writable_again(folder: Path, how: str) -> Iterator[None]:
    """Let the publisher write (the bind mount's source always can)."""
    if how == "bind_mount":
        yield
        return
    folder.chmod(0o755)
    (folder / "m").chmod(0o755)
    try:
        yield
    finally:
        (folder / "m").chmod(0o555)
        folder.chmod(0o555)


@pytest.fixture(params=["bind_mount", "file_mode"])
def unwritable(request, tmp_path) -> Iterator[tuple[Path, Path, str]]:
    """(the repository as the server sees it, where a publisher writes it, how)."""
    source = fill(tmp_path / "source")
    if request.param == "bind_mount":
        served = tmp_path / "served"
        with bind_mount_read_only(source, served):
            yield served, source, request.param
    else:
        with without_write_permission(source):
            yield source, source, request.param


def test_writable_tells_apart_what_can_be_written(tmp_path, unwritable):
    served, _, _ = unwritable
    assert storage.writable(tmp_path)
    assert storage.writable(tmp_path / "not_yet")  # created on first use
    assert not storage.writable(served)
    assert not storage.writable(served / "not_yet")


def test_a_repository_that_cannot_be_written_is_served_read_only(unwritable, onnx_path):
    served, source, how = unwritable
    before = listing(served)
    settings = Settings(model_repository=served, repository_poll_seconds=POLL)
    with running_server(settings) as base, httpx.Client(base_url=base, timeout=60) as http:
        assert_serves(http, "m", "1")
        for case in WRITES:
            response = write_request(http, case, onnx_path)
            assert_refused(response, served, "it cannot be written")
        assert listing(served) == before  # the stale staging folder is left alone too
        assert http.post("/v2/repository/models/m/load").status_code == 200
        with writable_again(source, how):
            publish(source, "m", "2", tiny(2))
        eventually(lambda: versions(http, "m"), ["1", "2"])
        assert_serves(http, "m", "2")
