"""Run inside the image by check-image.sh, as ``python3 -c <this file> COMMAND...`` with the
read-only overlay's environment: fill LAYERSERVE_MODEL_REPOSITORY with the demo models and
make it read-only, start COMMAND (the Deployment's) on a spare port and check that it
serves them (answers equal to onnxruntime's in this process), that its gRPC health
service answers SERVING, and that it refuses every write with 403, stop it with SIGTERM (it
must drain and exit 0), check that it wrote nothing the Deployment's read-only root
filesystem would refuse, then exec COMMAND with the environment unchanged for
container-check to probe its readiness."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from grpc_health.v1 import health_pb2, health_pb2_grpc

from layerserve.service.demo import ensure_demo_repository

MODEL = "mlp"
# What the Deployment mounts writable (besides the repository); the rest of its root
# filesystem is read-only, and /proc, /sys and /dev are not files.
WRITABLE = ("/tmp", "/dev", "/proc", "/sys")
READY_TIMEOUT_S = 120
EXIT_TIMEOUT_S = 60


def say(message: str) -> None:
    sys.stderr.write(f"check-in-image: {message}\n")
    sys.stderr.flush()


def make_read_only(root: Path) -> None:
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            os.chmod(Path(folder) / name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(folder, 0o555)


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


def written_since(marker: Path, skip: tuple[str, ...]) -> list[str]:
    """Files and folders changed after ``marker`` outside ``skip``: with the Deployment's
    readOnlyRootFilesystem each one would have been a failed write."""
    since, changed = marker.stat().st_mtime, []
    for folder, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(folder, d) not in skip]
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            try:
                if os.lstat(path).st_mtime > since:
                    changed.append(path)
            except OSError:
                continue
    return changed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def wait_ready(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} before it was ready")
        if call("GET", f"{base}/v2/health/ready")[0] == 200:
            return
        time.sleep(0.5)
    raise SystemExit(f"the server was not ready within {READY_TIMEOUT_S} s")


def check_inference(base: str, root: Path) -> None:
    """The served answer equals onnxruntime's on the same file (an oracle apart from the
    server's batching, decoding and encoding)."""
    status, body = call("GET", f"{base}/v2/models/{MODEL}")
    assert status == 200, (status, body)
    (spec,) = json.loads(body)["inputs"]
    shape = [3 if d == -1 else d for d in spec["shape"]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    request = {"inputs": [{**spec, "shape": shape, "data": x.ravel().tolist()}]}
    status, body = call("POST", f"{base}/v2/models/{MODEL}/infer", json.dumps(request).encode())
    assert status == 200, (status, body)
    session = ort.InferenceSession(str(root / MODEL / "1" / "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(None, {spec["name"]: x}), strict=True))
    for output in json.loads(body)["outputs"]:
        want = expected[output["name"]]
        got = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    say(f"{MODEL}: {len(expected)} output(s) equal onnxruntime's for a batch of 3")


def check_grpc_health(port: int) -> None:
    """The gRPC health service (what the Deployment's readiness probe asks) answers SERVING
    for the overall service once HTTP says ready."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING, answer
    say(f"gRPC health on port {port}: SERVING")


def check_refusals(base: str) -> None:
    """Writes answer 403 (no admin token is set: loopback clients are admins, so a 403
    says read-only, not unauthorised)."""
    for method, path, body in (
        ("POST", f"/v1/models/{MODEL}", b"{}"),
        ("DELETE", f"/v1/models/{MODEL}", None),
        ("DELETE", f"/v1/models/{MODEL}/versions/1", None),
    ):
        status, answer = call(method, base + path, body)
        assert status == 403, (method, path, status, answer)
    say("upload, delete and version delete answer 403")


def main(command: list[str]) -> None:
    root = Path(os.environ["LAYERSERVE_MODEL_REPOSITORY"])
    ensure_demo_repository(root)
    make_read_only(root)
    assert not os.access(root, os.W_OK), f"{root} is still writable (running as root?)"
    before = snapshot(root)
    marker = Path("/tmp") / f"check-in-image-{os.getpid()}"
    marker.touch()
    base = f"http://127.0.0.1:{free_port()}"
    grpc_port = free_port()
    env = {
        **os.environ,
        "LAYERSERVE_PORT": base.rsplit(":", 1)[1],
        "LAYERSERVE_GRPC_PORT": str(grpc_port),
    }
    say(f"{' '.join(command)} on {base}, models read-only from {root}")
    server = subprocess.Popen(command, env=env)
    try:
        wait_ready(base, server)
        check_inference(base, root)
        check_grpc_health(grpc_port)
        check_refusals(base)
        assert call("GET", f"{base}/metrics")[0] == 200
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=EXIT_TIMEOUT_S)
    assert code == 0, f"the server exited with {code} after SIGTERM"
    assert snapshot(root) == before, "the repository changed"
    outside = written_since(marker, (*WRITABLE, str(root)))
    assert not outside, f"written outside /tmp, /dev/shm and the repository: {outside[:20]}"
    say("nothing written outside /tmp, /dev/shm and the repository")
    say("SIGTERM: drained and exited 0; starting the Deployment's command")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
