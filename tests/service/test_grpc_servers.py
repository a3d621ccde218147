"""Both servers of the gRPC port (``--grpc-server``): layerserve's own HTTP/2 server, the
default that every other gRPC suite runs against, and gRPC's asyncio server (grpcio).
The same calls through tritonclient and grpcio's clients get the same answers from each,
byte for byte, and the same refusals."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from live_server import free_port, running_server, write_model
from tritonclient.utils import InferenceServerException

from layerserve import examples
from layerserve.service.grpc.generated import grpc_service_pb2 as pb
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe
LIMIT = 64 * 1024
X = np.random.default_rng(7).random((4, 784), dtype=np.float32)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """One server of each kind, on the same repository."""
    root = tmp_path_factory.mktemp("grpc_servers")
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 64})
    ports = {}
    contexts = []
    for kind in ("http2", "grpcio"):
        port = free_port()
        settings = Settings(
            model_repository=root, grpc_port=port, grpc_server=kind, grpc_max_message_bytes=LIMIT
        )
        context = running_server(settings)
        context.__enter__()
        contexts.append(context)
        ports[kind] = port
    yield ports
    for context in contexts:
        context.__exit__(None, None, None)


def mlp_inputs(x: np.ndarray) -> list[tg.InferInput]:
    tensor = tg.InferInput("hidden_1_input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return [tensor]


@pytest.mark.parametrize("kind", ["http2", "grpcio"])
@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_tritonclient_infers_on_both_servers(servers, kind, compression):
    client = tg.InferenceServerClient(f"127.0.0.1:{servers[kind]}")
    try:
        result = client.infer("mlp", mlp_inputs(X), compression_algorithm=compression)
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), examples.mlp().predict(X), atol=1e-5
        )
        with pytest.raises(InferenceServerException) as error:
            client.infer("nope", mlp_inputs(X))
        assert error.value.status() == "StatusCode.NOT_FOUND"
        assert "nope" in error.value.message()
        with pytest.raises(InferenceServerException) as error:  # 200 KB over a 64 KiB limit
            client.infer("mlp", mlp_inputs(np.zeros((64, 784), np.float32)))
        assert error.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert str(LIMIT) in error.value.message()
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["http2", "grpcio"])
def test_streams_health_and_reflection_on_both_servers(servers, kind):
    answers = []
    client = tg.InferenceServerClient(f"127.0.0.1:{servers[kind]}")
    try:
        client.start_stream(callback=lambda result, error: answers.append((result, error)))
        for i in range(3):
            client.async_stream_infer("mlp", mlp_inputs(X[i : i + 1]), request_id=str(i))
        client.stop_stream()
    finally:
        client.close()
    assert sorted(result.get_response().id for result, error in answers if error is None) == [
        "0",
        "1",
        "2",
    ]
    for result, _ in answers:
        i = int(result.get_response().id)
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), examples.mlp().predict(X[i : i + 1]), atol=1e-5
        )
    with grpc.insecure_channel(f"127.0.0.1:{servers[kind]}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING


def test_both_servers_answer_the_same_bytes(servers):
    """The serialised answers of ModelMetadata and ModelInfer, read without protobuf, are
    the same bytes from either server: one servicer behind both."""
    request = pb.ModelInferRequest(model_name="mlp", id="same")
    request.inputs.add(name="hidden_1_input", datatype="FP32", shape=list(X.shape))
    request.raw_input_contents.append(X.tobytes())
    metadata = pb.ModelMetadataRequest(name="mlp").SerializeToString()
    answers = {}
    for kind, port in servers.items():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            describe = channel.unary_unary("/inference.GRPCInferenceService/ModelMetadata")
            answers[kind] = (
                infer(request.SerializeToString(), timeout=10),
                describe(metadata, timeout=10),
            )
    assert answers["http2"] == answers["grpcio"]
    outputs = pb.ModelInferResponse.FromString(answers["http2"][0]).raw_output_contents
    np.testing.assert_allclose(
        np.frombuffer(outputs[0], np.float32).reshape(4, 10), examples.mlp().predict(X), atol=1e-5
    )


@pytest.mark.parametrize("kind", ["http2", "grpcio"])
def test_an_error_too_long_for_trailers_keeps_its_code_on_both_servers(servers, kind):
    """An error naming a 20,000-character input name reaches tritonclient (gRPC's C core,
    which refuses trailers past 16 KiB, and at random past 8 KiB) as INVALID_ARGUMENT, its
    message cut to 4,096 characters."""
    tensor = tg.InferInput("n" * 20_000, list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    client = tg.InferenceServerClient(f"127.0.0.1:{servers[kind]}")
    for _ in range(5):  # the C core's refusal past 8 KiB is at random
        with pytest.raises(InferenceServerException) as error:
            client.infer("mlp", [tensor])
        assert error.value.status() == "StatusCode.INVALID_ARGUMENT", error.value.message()
        message = error.value.message()
        assert len(message) <= 4096 and message.endswith(" [...]")
        assert message.startswith("expected 1 inputs but got 1 inputs for model 'mlp'")
    client.close()


@pytest.mark.parametrize("kind", ["http2", "grpcio"])
def test_both_servers_send_an_idle_connection_away_and_serve_the_next_call(tmp_path, kind):
    """LAYERSERVE_GRPC_MAX_CONNECTION_IDLE_SECONDS: after a call, with none for the idle
    time, the server closes the connection (the client's channel falls back to IDLE);
    the next call opens a new one and is answered."""
    write_model(tmp_path, "mlp", examples.mlp(), "1", {"max_batch_size": 64})
    port = free_port()
    settings = Settings(
        model_repository=tmp_path,
        grpc_port=port,
        grpc_server=kind,
        grpc_max_connection_idle_seconds=1.0,
    )
    request = pb.ServerLiveRequest().SerializeToString()
    with running_server(settings), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        states: list[grpc.ChannelConnectivity] = []
        channel.subscribe(states.append)
        live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive")
        assert pb.ServerLiveResponse.FromString(live(request, timeout=10)).live
        answered = time.monotonic()
        while grpc.ChannelConnectivity.IDLE not in states[1:]:  # the first: before the call
            assert time.monotonic() - answered < 10, states
            time.sleep(0.02)
        assert time.monotonic() - answered >= 0.5  # not before the idle time
        assert states[-2:] == [grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.IDLE]
        assert pb.ServerLiveResponse.FromString(live(request, timeout=10)).live
