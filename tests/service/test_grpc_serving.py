"""The gRPC server around the service: access control (REST's policy and words), the
standard health service and server reflection, readiness while models cannot load, a
read-only repository, two worker processes sharing the gRPC port, and a busy gRPC port
failing the start at once."""

from __future__ import annotations

import logging
import queue
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_test_models import write_identity
from live_server import free_port, running_server, wait_ready, write_model
from tritonclient.utils import InferenceServerException
from workers import eventually, serving

from layerserve import examples
from layerserve.service.settings import Settings

API, ADMIN = "api-secret", "admin-secret"
X = np.full((2, 784), 0.25, np.float32)


def mlp_inputs(module):
    tensor = module.InferInput("hidden_1_input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    return [tensor]


def assert_mlp(client: tg.InferenceServerClient, **kwargs) -> None:
    got = client.infer("mlp", mlp_inputs(tg), **kwargs).as_numpy("probabilities")
    np.testing.assert_allclose(got, examples.mlp().predict(X), atol=1e-5)


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpc_serving")
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 8})
    return root


# ---- access control -------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(repository):
    port = free_port()
    settings = Settings(
        model_repository=repository,
        grpc_port=port,
        api_token=API,
        admin_token=ADMIN,
        access_log=True,
    )
    with running_server(settings) as url:
        rest = th.InferenceServerClient(url.removeprefix("http://"))
        client = tg.InferenceServerClient(f"127.0.0.1:{port}")
        yield rest, client, f"127.0.0.1:{port}"
        client.close()
        rest.close()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, "StatusCode.UNAUTHENTICATED"),
        ({"authorization": "Basic abc"}, "StatusCode.UNAUTHENTICATED"),
        (bearer("wrong"), "StatusCode.UNAUTHENTICATED"),  # not identified: RFC 6750's 401
    ],
    ids=["no token", "other scheme", "wrong token"],
)
def test_inference_without_the_token_is_refused_in_rests_words(guarded, headers, status):
    rest, client, _ = guarded
    with pytest.raises(InferenceServerException) as over_rest:
        rest.infer("mlp", mlp_inputs(th), headers=dict(headers))  # it adds to the dict
    with pytest.raises(InferenceServerException) as over_grpc:
        client.infer("mlp", mlp_inputs(tg), headers=dict(headers))
    assert over_grpc.value.status() == status
    assert over_grpc.value.message() == over_rest.value.message()
    # Refused before the model is looked up: an unknown model gets the same answer.
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("no_such_model", headers=headers)
    assert unknown.value.message() == over_grpc.value.message()


@pytest.mark.parametrize("tokens", [(ADMIN, "wrong"), ("wrong", ADMIN)])
def test_two_authorization_entries_are_refused_whichever_comes_first(guarded, tokens):
    """A singleton field: a proxy and the server could each read another one."""
    rest, _, target = guarded
    metadata = [("authorization", f"Bearer {token}") for token in tokens]
    request = tg.service_pb2.ModelInferRequest(model_name="mlp").SerializeToString()

    def failures() -> int:
        stats = rest.get_inference_statistics("mlp", headers=bearer(ADMIN))
        return sum(int(s["inference_stats"]["fail"]["count"]) for s in stats["model_stats"])

    before = failures()
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as refused:
            call(request, metadata=metadata, timeout=30)
    assert failures() == before  # a refusal of credentials is no failed inference
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == ("the request has 2 Authorization headers; send exactly one")


def test_tokens_open_what_they_open(guarded):
    _, client, _ = guarded
    assert client.is_server_live() and client.is_server_ready()  # open, as REST's health
    assert_mlp(client, headers=bearer(API))
    assert_mlp(client, headers=bearer(ADMIN))
    with pytest.raises(InferenceServerException) as error:
        client.unload_model("mlp", headers=bearer(API))
    assert error.value.status() == "StatusCode.PERMISSION_DENIED"  # identified, not allowed
    assert "the API token does not reach this endpoint" in error.value.message()
    client.load_model("mlp", headers=bearer(ADMIN))
    assert client.is_model_ready("mlp", headers=bearer(API))


def test_one_log_line_per_call_with_the_request_id_and_no_token(guarded, caplog):
    _, client, _ = guarded
    caplog.set_level(logging.INFO, logger="layerserve.service.requests")
    assert_mlp(client, headers={**bearer(API), "x-request-id": "grpc-log-1"})
    with pytest.raises(InferenceServerException):
        client.infer("mlp", mlp_inputs(tg), headers={"x-request-id": "grpc-log-2"})
    lines = [r.getMessage() for r in caplog.records if "request_id=grpc-log-" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "path=/inference.GRPCInferenceService/ModelInfer status=OK" in lines[0]
    assert "status=UNAUTHENTICATED" in lines[1] and "client=127.0.0.1" in lines[1]
    assert not any(API in r.getMessage() for r in caplog.records)


def test_calls_repeating_their_metadata_are_each_checked_logged_and_given_their_own_id(
    guarded, caplog
):
    """A client sends the same header block call after call on one connection, and the
    server reads it once: the token is still checked on every call, the address behind a
    loopback proxy still logged, and each call still gets a request id of its own."""
    _, _, target = guarded
    caplog.set_level(logging.INFO, logger="layerserve.service.requests")
    client = tg.InferenceServerClient(target)  # one connection for every call below
    proxied = {"x-forwarded-for": "203.0.113.7"}
    for _ in range(3):
        assert_mlp(client, headers={**bearer(API), **proxied})
    with pytest.raises(InferenceServerException) as error:
        client.infer("mlp", mlp_inputs(tg), headers={**bearer("wrong"), **proxied})
    assert error.value.status() == "StatusCode.UNAUTHENTICATED"
    assert_mlp(client, headers={**bearer(API), **proxied})
    client.close()
    lines = [r for r in caplog.records if "client=203.0.113.7" in r.getMessage()]
    statuses = [line.fields["status"] for line in lines]
    assert statuses == ["OK", "OK", "OK", "UNAUTHENTICATED", "OK"]
    ids = [line.fields["request_id"] for line in lines]
    assert len(set(ids)) == len(ids), ids


def test_a_streams_log_line_is_written_when_it_ends(guarded, caplog):
    """One line for a stream, written as it ends: its status and how long it was open
    (not 0 ms and OK at its opening)."""
    _, _, target = guarded
    caplog.set_level(logging.INFO, logger="layerserve.service.requests")
    answers: queue.Queue = queue.Queue()
    client = tg.InferenceServerClient(target)
    client.start_stream(
        callback=lambda result, error: answers.put((result, error)),
        headers={**bearer(API), "x-request-id": "grpc-stream-log"},
    )
    client.async_stream_infer("mlp", mlp_inputs(tg), request_id="one")
    result, error = answers.get(timeout=30)
    assert error is None
    time.sleep(0.3)  # open a while longer before the client ends it
    assert not [r for r in caplog.records if "request_id=grpc-stream-log" in r.getMessage()]
    client.stop_stream()
    client.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [r for r in caplog.records if "request_id=grpc-stream-log" in r.getMessage()]
        if lines:
            break
        time.sleep(0.05)
    (line,) = lines
    assert "path=/inference.GRPCInferenceService/ModelStreamInfer status=OK" in line.getMessage()
    assert line.fields["duration_ms"] >= 300


# ---- health and reflection ------------------------------------------------------------
@pytest.fixture(scope="module")
def half_ready(tmp_path_factory):
    """mlp loads, 'broken' cannot: live, not ready."""
    root = tmp_path_factory.mktemp("half_ready")
    write_model(root, "mlp", examples.mlp(), "1")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"this is not an ONNX file")
    port = free_port()
    with running_server(Settings(model_repository=root, grpc_port=port), wait_ready=False):
        yield f"127.0.0.1:{port}"


def health_status(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status


@pytest.mark.parametrize(
    "service",
    [
        "",
        "inference.GRPCInferenceService",
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
    ],
)
def test_health_is_serving_when_ready_and_not_before(guarded, half_ready, service):
    target = guarded[2]
    assert health_status(target, service) == health_pb2.HealthCheckResponse.SERVING
    assert health_status(half_ready, service) == health_pb2.HealthCheckResponse.NOT_SERVING


def test_the_liveness_service_is_serving_whether_ready_or_not(guarded, half_ready):
    """For a Kubernetes grpc liveness probe (service "liveness"): the worker answers."""
    for target in (guarded[2], half_ready):
        assert health_status(target, "liveness") == health_pb2.HealthCheckResponse.SERVING


def test_a_server_whose_model_cannot_load_is_live_not_ready(half_ready):
    client = tg.InferenceServerClient(half_ready)
    assert client.is_server_live() and not client.is_server_ready()
    assert client.is_model_ready("mlp") and not client.is_model_ready("broken")
    assert_mlp(client)
    with pytest.raises(InferenceServerException) as error:
        client.infer("broken", mlp_inputs(tg))
    assert error.value.status() == "StatusCode.UNAVAILABLE"
    assert "'broken' has no available versions" in error.value.message()
    index = client.get_model_repository_index(as_json=True)["models"]
    broken = next(e for e in index if e["name"] == "broken")
    assert broken["state"] == "UNAVAILABLE" and "cannot load" in broken["reason"]


def test_reflection_lists_and_describes_the_services(half_ready):
    with grpc.insecure_channel(half_ready) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services
        described = descriptor_pool.DescriptorPool(database)
        for name in services:  # each one listed is described too (what grpcurl calls by)
            assert described.FindServiceByName(name).full_name == name
        service = described.FindServiceByName("inference.GRPCInferenceService")
        method = service.methods_by_name["ModelInfer"]
        assert method.input_type.full_name == "inference.ModelInferRequest"
        config = described.FindMessageTypeByName("inference.ModelConfig")
        assert "max_batch_size" in config.fields_by_name


@pytest.mark.parametrize(
    ("symbol", "found"),
    [
        ("inference.GRPCInferenceService.ModelInfer", True),
        ("grpc.health.v1.Health.Check", True),
        ("tensorflow.serving.PredictionService.Predict", True),
        ("inference.GRPCInferenceService.NoSuchMethod", False),
        ("inference.NoSuchService.ModelInfer", False),
    ],
)
def test_reflection_finds_the_file_of_a_method(half_ready, symbol, found):
    """The reflection protocol's symbols are `<package>.<service>[.<method>]`: `grpcurl
    describe inference.GRPCInferenceService.ModelInfer` asks for a method's file."""
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    with grpc.insecure_channel(half_ready) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = stub.ServerReflectionInfo(iter([request]), timeout=10)
    if not found:
        assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
        return
    service_name, _, method_name = symbol.rpartition(".")
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answer.file_descriptor_response.file_descriptor_proto
    ]
    methods = {
        f"{f.package}.{s.name}": {m.name for m in s.method} for f in files for s in f.service
    }
    assert method_name in methods[service_name], methods


# ---- read-only repository -------------------------------------------------------------
def test_unload_from_a_read_only_server_is_permission_denied_in_rests_words(repository):
    port = free_port()
    settings = Settings(model_repository=repository, grpc_port=port, read_only=True)
    with running_server(settings) as url:
        rest = th.InferenceServerClient(url.removeprefix("http://"))
        client = tg.InferenceServerClient(f"127.0.0.1:{port}")
        with pytest.raises(InferenceServerException) as over_rest:
            rest.unload_model("mlp")
        with pytest.raises(InferenceServerException) as over_grpc:
            client.unload_model("mlp")
        assert over_grpc.value.status() == "StatusCode.PERMISSION_DENIED"
        assert over_grpc.value.message() == over_rest.value.message()
        assert "read-only" in over_grpc.value.message()
        client.load_model("mlp")  # a reload writes nothing: allowed
        assert_mlp(client)
        client.close()
        rest.close()  # here: tritonclient's HTTP client may not be collected on another thread


# ---- worker processes -----------------------------------------------------------------
def test_two_workers_answer_grpc_on_one_port(repository, tmp_path):
    port = free_port()
    with serving(repository, tmp_path, 2, "--grpc-port", str(port)) as served:
        target = f"127.0.0.1:{port}"
        # A worker answers its siblings before it listens for gRPC (once its models are
        # loaded): until both listen, the kernel gives every connection to the one that does.
        eventually(
            lambda: served.log.read_text().count("gRPC (inference.GRPCInferenceService) on") == 2,
            "both workers listening for gRPC",
        )
        for _ in range(16):  # new channels: the kernel spreads them over both workers
            client = tg.InferenceServerClient(target)
            assert client.is_server_ready()
            assert_mlp(client)
            client.close()
        per_worker = [
            sum(m["stats"]["success"] for m in s["models"] if m["name"] == "mlp")
            for s in served.snapshots()
        ]
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker), per_worker
        client = tg.InferenceServerClient(target)
        stats = client.get_inference_statistics("mlp", "1", as_json=True)["model_stats"][0]
        assert int(stats["inference_stats"]["success"]["count"]) == sum(per_worker)
        client.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_busy_grpc_port_fails_the_start_at_once(repository, tmp_path, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        command = [sys.executable, "-m", "layerserve.cli", "serve", "--model-repository"]
        arguments = [str(repository), "--port", str(free_port()), "--workers", str(workers)]
        arguments += ["--grpc-port", str(taken.getsockname()[1])]
        result = subprocess.run(
            [*command, *arguments], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "choose --grpc-port" in result.stdout + result.stderr


# ---- drain ----------------------------------------------------------------------------
def test_sigterm_drains_grpc_finishing_the_call_in_flight(tmp_path):
    """A call held 1 s in its model's queue (max_queue_delay_us) when SIGTERM comes: the
    server turns not ready over gRPC and health at once, serves on through the drain, then
    stops accepting, answers the held call and exits 0."""
    write_identity(tmp_path, "held", "FP32", {"max_batch_size": 8, "max_queue_delay_us": 1_000_000})
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "layerserve.cli", "serve", "--model-repository"]
    arguments = [str(tmp_path), "--port", str(port), "--grpc-port", str(grpc_port)]
    arguments += ["--workers", "1", "--drain-seconds", "0.6"]
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen([*command, *arguments], stdout=log, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{grpc_port}"
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        client = tg.InferenceServerClient(target)
        tensor = tg.InferInput("x", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.array([[1.0, 2.0, 3.0]], np.float32))
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(client.infer, "held", [tensor])
            time.sleep(0.3)  # queued, waiting for more rows
            process.send_signal(signal.SIGTERM)
            time.sleep(0.1)  # for the signal to reach the server
            assert client.is_server_live() and not client.is_server_ready()
            assert health_status(target, "") == health_pb2.HealthCheckResponse.NOT_SERVING
            np.testing.assert_array_equal(held.result(timeout=30).as_numpy("y"), [[1, 2, 3]])
        client.close()
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
