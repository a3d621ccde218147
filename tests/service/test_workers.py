"""Worker processes (``layerserve serve --workers 2``), each a real process on the shared
port: requests spread over them, ``/metrics`` and the statistics extension total over all
of them whichever answers, a change made through one is served by all when its answer
arrives, a version published from outside is served without a restart, a dead worker is
restarted (counted) and comes back serving the repository's generation, SIGTERM drains
them all, and workers that keep crashing stop the server with a non-zero status."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from live_server import free_port, wait_ready, write_model
from metrics_text import parse, value
from model_uploads import upload
from workers import eventually, fresh, serving, stop

from layerserve import examples
from layerserve.export import to_onnx
from layerserve.service.launch import PortUnavailable, bind, hold_address

MLP_INPUT = "hidden_1_input"
CONNECTIONS = 24  # new connections per check: both workers get some (the kernel hashes)


def mlp_body(x: np.ndarray) -> dict:
    return {
        "inputs": [
            {
                "name": MLP_INPUT,
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }


def assert_mlp_answers(http, x: np.ndarray, name: str = "mlp", version: str | None = None):
    route = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    response = http.post(route, json=mlp_body(x))
    assert response.status_code == 200, response.text
    got = np.array(response.json()["outputs"][0]["data"], np.float32).reshape(len(x), 10)
    np.testing.assert_allclose(got, examples.mlp().predict(x), rtol=1e-5, atol=1e-6)
    return response.json()["model_version"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repository")
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 64})
    return root


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    with serving(repo, tmp_path_factory.mktemp("server"), 2) as served:
        yield served


def test_requests_spread_over_the_workers_and_metrics_total_them(server):
    rng = np.random.default_rng(0)
    before = sum(_successes(s) for s in server.snapshots())
    with fresh(server.url) as http:
        for _ in range(CONNECTIONS):
            assert_mlp_answers(http, rng.random((2, 784), dtype=np.float32))
        per_worker = [_successes(s) for s in server.snapshots()]
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker), per_worker
        assert sum(per_worker) - before == CONNECTIONS
        for _ in range(6):  # whichever worker answers: the totals of both
            samples = parse(http.get("/metrics").text)
            total = value(samples, "nv_inference_request_success", model="mlp", version="1")
            assert total == sum(per_worker)
            assert value(samples, "nv_inference_count", model="mlp", version="1") == 2 * total
            assert value(samples, "layerserve_workers") == 2
            stats = http.get("/v2/models/mlp/stats").json()["model_stats"][0]
            assert stats["inference_stats"]["success"]["count"] == total
            assert stats["inference_count"] == 2 * total


def test_one_benchmark_runs_at_a_time_in_the_whole_server(server):
    """Benchmarks sent at once on new connections reach both workers: one is measured and
    the others are refused, so that two never halve each other's figures."""
    body = {"batch_sizes": [1], "duration_s": 1.0}

    def send(_: int) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/models/mlp:benchmark", json=body, timeout=60)

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        answers = list(pool.map(send, range(CONNECTIONS)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * (CONNECTIONS - 1)
    refused = [a.json()["error"] for a in answers if a.status_code == 409]
    assert all("a benchmark is already running" in error for error in refused)


def _successes(snapshot: dict) -> int:
    return sum(m["stats"]["success"] for m in snapshot["models"] if m["name"] == "mlp")


def test_an_upload_is_served_by_every_worker_when_it_is_answered(server, tmp_path):
    path = tmp_path / "model.onnx"
    to_onnx(examples.mlp(), path)
    response = upload(server.url, "uploaded", path)
    assert response.status_code == 201, response.text
    x = np.random.default_rng(1).random((1, 784), dtype=np.float32)
    with fresh(server.url) as http:  # no waiting: the answer came after every worker loaded it
        for _ in range(CONNECTIONS):
            assert assert_mlp_answers(http, x, "uploaded") == "1"
        assert http.post("/v2/repository/models/uploaded/unload").status_code == 200
        for _ in range(CONNECTIONS):
            assert http.get("/v2/models/uploaded/ready").status_code in (400, 404, 503)
        assert http.post("/v2/repository/models/uploaded/load").status_code == 200
        for _ in range(CONNECTIONS):
            assert http.get("/v2/models/uploaded/ready").status_code == 200
        assert http.delete("/v1/models/uploaded").status_code == 200
        for _ in range(CONNECTIONS):
            assert http.get("/v2/models/uploaded").status_code == 404


def test_a_version_renamed_into_the_repository_is_served_without_a_restart(server, repo):
    staged = repo / ".staging" / "by-hand"
    staged.mkdir(parents=True)
    to_onnx(examples.mlp(), staged / "model.onnx")
    os.rename(staged, repo / "mlp" / "7")  # the publishing protocol: write elsewhere, rename
    x = np.random.default_rng(2).random((1, 784), dtype=np.float32)
    with fresh(server.url) as http:
        eventually(
            lambda: all(
                http.get("/v2/models/mlp/versions/7/ready").status_code == 200
                for _ in range(CONNECTIONS)
            ),
            "version 7 on every worker",
            timeout=10,
        )
        for _ in range(CONNECTIONS):
            assert assert_mlp_answers(http, x) == "7"  # the highest version, everywhere
        shutil.rmtree(repo / "mlp" / "7")
        eventually(
            lambda: all(
                http.get("/v2/models/mlp/versions/7/ready").status_code == 404
                for _ in range(CONNECTIONS)
            ),
            "version 7 gone from every worker",
            timeout=10,
        )


def test_a_killed_worker_is_restarted_and_serves_the_repository_generation(tmp_path):
    repo = tmp_path / "repository"
    write_model(
        repo, "mlp", examples.mlp(), "1", {"version_policy": {"latest": {"num_versions": 1}}}
    )
    with serving(repo, tmp_path, 2) as served:
        path = tmp_path / "model.onnx"
        to_onnx(examples.mlp(), path)
        assert upload(served.url, "mlp", path).status_code == 201  # version 2 retires 1
        first = served.worker_pids()
        os.kill(first[0], signal.SIGKILL)
        # once it is gone (connections the kernel had queued on its socket went with it),
        # the other worker goes on serving meanwhile
        eventually(lambda: first[0] not in served.worker_pids(), "the killed worker gone")
        x = np.random.default_rng(3).random((1, 784), dtype=np.float32)
        with fresh(served.url) as http:
            for _ in range(8):
                assert assert_mlp_answers(http, x) == "2"
        # kill its successor while it loads, then let the next one come up
        successor = eventually(
            lambda: [p for p in served.worker_pids() if p not in first], "a restarted worker"
        )
        os.kill(successor[0], signal.SIGKILL)
        eventually(lambda: len(served.snapshots()) == 2, "both workers listening again")
        with fresh(served.url) as http:
            for _ in range(CONNECTIONS):
                assert assert_mlp_answers(http, x) == "2"
                assert http.get("/v2/models/mlp").json()["versions"] == ["2"]
            restarts = value(parse(http.get("/metrics").text), "layerserve_worker_restarts")
            assert restarts == 2
        assert "died (signal 9); restarting it" in served.log.read_text()


def test_sigterm_drains_every_worker_and_the_server_exits_0(repo, tmp_path):
    with serving(repo, tmp_path, 2, LAYERSERVE_DRAIN_SECONDS="0.5") as served:
        pids = served.worker_pids()
        served.process.send_signal(signal.SIGTERM)
        with fresh(served.url) as http:  # draining: not ready at once, whichever answers
            for _ in range(4):
                assert http.get("/v2/health/ready").status_code == 503
        assert served.process.wait(30) == 0
        for pid in pids:
            assert not _alive(pid), f"worker {pid} outlived the server"
        assert not list(
            served.runtime_parent.glob("layerserve-workers-*")
        )  # its runtime dir is gone


def _alive(pid: int) -> str:
    """The process's state line if it exists (a zombie included), else ''."""
    try:
        status = open(f"/proc/{pid}/status").read()
        return status + open(f"/proc/{pid}/cmdline").read()
    except OSError:
        return ""


def test_workers_that_keep_crashing_stop_the_server_with_status_1(repo, tmp_path):
    with serving(repo, tmp_path, 2) as served:
        deadline = time.monotonic() + 60
        while served.process.poll() is None and time.monotonic() < deadline:
            for pid in served.worker_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        assert served.process.wait(5) == 1
        assert "worker deaths within" in served.log.read_text()


def _serve(port: int, repo, tmp_path, workers: int) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "layerserve.cli", "serve", "--model-repository"]
    arguments = [str(repo), "--port", str(port), "--workers", str(workers)]
    return subprocess.run(
        [*command, *arguments], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


@pytest.mark.parametrize(
    "holder",
    ["a plain listener", "another multi-worker server", "one whose workers still load"],
)
def test_a_busy_port_fails_at_once_with_several_workers(repo, tmp_path, holder):
    if holder == "one whose workers still load":
        # what a multi-worker server holds before its workers listen: the port reserved
        # (bound with SO_REUSEPORT, not listening), which a plain bind alone does not see
        reservation = bind("127.0.0.1", 0, reuse_port=True, listen=False)
        port = reservation.getsockname()[1]
        with reservation, hold_address(reservation):
            result = _serve(port, repo, tmp_path, 2)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"on 127.0.0.1:{port}: another layerserve server" in result.stderr
        return
    if holder == "a plain listener":
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            result = _serve(taken.getsockname()[1], repo, tmp_path, 2)
    else:
        with serving(repo, tmp_path, 2) as served:
            result = _serve(int(served.url.rsplit(":", 1)[1]), repo, tmp_path, 2)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot listen on 127.0.0.1" in result.stdout + result.stderr


def test_concurrent_deletes_through_two_workers_answer_200_or_404(repo, tmp_path):
    root = tmp_path / "own"
    for version in ("1", "2", "3"):
        write_model(root, "m", examples.mlp(), version)
    with serving(root, tmp_path, 2) as served:

        def delete(route: str) -> int:
            with fresh(served.url) as http:
                return http.delete(route).status_code

        with ThreadPoolExecutor(8) as pool:
            versions = list(pool.map(delete, ["/v1/models/m/versions/2"] * 8))
            models = list(pool.map(delete, ["/v1/models/m"] * 8))
        assert versions.count(200) >= 1 and set(versions) <= {200, 404}, versions
        assert models.count(200) >= 1 and set(models) <= {200, 404}, models
        assert not (root / "m").exists()
        with fresh(served.url) as http:
            for _ in range(CONNECTIONS):
                assert http.get("/v2/models/m").status_code == 404


def test_concurrent_unloads_and_loads_through_two_workers_answer_at_once(tmp_path):
    """An unload asks the other worker to converge once it has released the model's
    locks, as every change does: asked while it held them, a worker changing the same
    model waited for them, and both answered only when their 60 s wait ran out."""
    root = tmp_path / "own"
    write_model(root, "m", examples.mlp(), "1")
    with serving(root, tmp_path, 2) as served:

        def post(route: str) -> tuple[int, float]:
            with fresh(served.url) as http:
                started = time.monotonic()
                status = http.post(route).status_code
                return status, time.monotonic() - started

        with ThreadPoolExecutor(8) as pool:
            for routes in (
                ["/v2/repository/models/m/unload"] * 8,
                ["/v2/repository/models/m/load", "/v2/repository/models/m/unload"] * 4,
            ):
                answers = list(pool.map(post, routes))
                assert {status for status, _ in answers} == {200}, answers
                assert max(seconds for _, seconds in answers) < 20, answers


def _children(parent: int) -> dict[int, bytes]:
    """pid -> command line of ``parent``'s children, from /proc (zombies included)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat", "rb").read()
                command = open(f"/proc/{entry}/cmdline", "rb").read()
            except OSError:
                continue
            if int(stat.rpartition(b")")[2].split()[1]) == parent:
                found[int(entry)] = command
    return found


def _own_pid_namespace() -> list[str]:
    """``unshare`` with a PID namespace of its own and its /proc, where the system allows
    it (root, or unprivileged user namespaces): the supervisor runs as PID 1 there, as in a
    container."""
    prefix = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to run the server as PID 1")
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"needs a PID namespace (unshare --pid): {probe.stderr.decode().strip()}")
    return prefix


def test_as_pid_1_the_supervisor_reaps_a_dead_workers_orphans(repo, tmp_path):
    """In a container the supervisor is PID 1 and inherits every orphan: a worker killed
    leaves its forkserver behind, which exits and must be reaped, or every restart would
    leave a zombie in the pod."""
    port = free_port()
    with (tmp_path / "server.log").open("w") as log:
        process = subprocess.Popen(
            [*_own_pid_namespace(), sys.executable, "-m", "layerserve.cli", "serve"]
            + ["--model-repository", str(repo), "--port", str(port), "--workers", "2"],
            env={**os.environ, "TMPDIR": "/tmp"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, timeout=90)
        (supervisor,) = _children(process.pid)  # PID 1 of the namespace
        worker = eventually(
            lambda: [p for p, c in _children(supervisor).items() if b"spawn_main" in c],
            "a worker",
        )[0]
        forkserver = eventually(
            lambda: [p for p, c in _children(worker).items() if b"forkserver" in c],
            "the worker's forkserver",
            timeout=60,
        )[0]
        os.kill(worker, signal.SIGKILL)
        eventually(lambda: not _alive(forkserver), "the orphaned forkserver reaped", timeout=15)
        assert not _alive(worker)  # multiprocessing reaped the worker itself
        eventually(
            lambda: len([c for c in _children(supervisor).values() if b"spawn_main" in c]) == 2,
            "the worker restarted",
        )
    finally:
        for supervisor in _children(process.pid):  # unshare passes no signal on
            os.kill(supervisor, signal.SIGTERM)
        stop(process)


def test_an_upload_after_an_unload_serves_every_version_on_disk_in_every_worker(tmp_path):
    """An upload lifts an unload: the model serves again what its repository folder holds
    (version 1, unloaded a moment before, and the new 2), in every worker, also with the
    repository not polled and also in a worker started afterwards. Version 1 changed
    within the settle time, so a first convergence leaves it; a second look takes it."""
    repo = tmp_path / "repository"
    repo.mkdir()
    path = tmp_path / "model.onnx"
    to_onnx(examples.mlp(), path)
    with serving(repo, tmp_path, 2, LAYERSERVE_REPOSITORY_POLL_SECONDS="0") as served:
        assert upload(served.url, "mlp", path).status_code == 201
        with fresh(served.url) as http:
            assert http.post("/v2/repository/models/mlp/unload").status_code == 200
        assert upload(served.url, "mlp", path).json()["version"] == "2"

        def every_worker_serves_both() -> bool:
            with fresh(served.url) as http:
                seen = {tuple(http.get("/v2/models/mlp").json()["versions"]) for _ in range(16)}
            return seen == {("1", "2")}

        eventually(every_worker_serves_both, "every worker serving versions 1 and 2", 10)
        os.kill(served.worker_pids()[0], signal.SIGKILL)
        eventually(lambda: len(served.snapshots()) == 2, "both workers listening again")
        assert every_worker_serves_both()


def test_the_address_lock_is_the_addresss_own():
    """Servers on one port of two addresses (127.0.0.1 and 127.0.0.2) both start; one
    address is held once."""
    first = bind("127.0.0.1", 0, reuse_port=True, listen=False)
    port = first.getsockname()[1]
    second = bind("127.0.0.2", port, reuse_port=True, listen=False)
    with first, second, hold_address(first), hold_address(second):
        with pytest.raises(PortUnavailable, match=f"127.0.0.1:{port}: another layerserve"):
            hold_address(first)
