"""``ModelStreamInfer`` with the real ``tritonclient.grpc`` stream API (its end at the
server's shutdown too), and the RPCs of the protocol this server does not serve (shared
memory, tracing, log settings), which answer UNIMPLEMENTED saying why. Expectations: the
NumPy reference model, and REST's answer to the same request."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from grpc_test_models import grpc_server, write_identity, write_models
from live_server import free_port, wait_ready
from tritonclient.grpc import service_pb2 as tpb
from tritonclient.grpc import service_pb2_grpc as tpb_grpc
from tritonclient.utils import InferenceServerException

from layerserve import examples
from layerserve.service.grpc.servicer import STREAM_CLOSED, STREAM_IN_FLIGHT

MLP_INPUT, MLP_OUTPUT = "hidden_1_input", "probabilities"
API = "stream-api-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = write_models(tmp_path_factory.mktemp("grpc_streaming"))
    with grpc_server(root, api_token=API) as server:
        yield server


def authorization() -> dict[str, str]:
    """A fresh dict each time: tritonclient adds its own entries to the headers given."""
    return {"authorization": f"Bearer {API}"}


def mlp_inputs(module, x: np.ndarray):
    tensor = module.InferInput(MLP_INPUT, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return [tensor]


def streamed(target: str, requests: list[tuple[str, str, np.ndarray]], headers=None) -> dict:
    """Send ``(id, model, x)`` requests on one stream; every answer by id: the result, or
    the error."""
    answers: queue.Queue = queue.Queue()
    client = tg.InferenceServerClient(target)
    client.start_stream(
        callback=lambda result, error: answers.put((result, error)), headers=headers
    )
    try:
        for request_id, model, x in requests:
            client.async_stream_infer(model, mlp_inputs(tg, x), request_id=request_id)
        got = [answers.get(timeout=30) for _ in requests]
    finally:
        client.stop_stream()
        client.close()
    by_id = {}
    for result, error in got:
        if error is not None:
            by_id[("error", len(by_id))] = error
        else:
            by_id[result.get_response().id] = result
    return by_id


def test_every_streamed_request_is_answered_with_the_reference(server):
    """More requests than a stream runs at once (STREAM_IN_FLIGHT): the stream is read as
    answers go out, and every one is answered."""
    _, target = server
    xs = {
        f"s{i}": np.random.default_rng(i).random((1 + i % 3, 784), dtype=np.float32)
        for i in range(2 * STREAM_IN_FLIGHT + 5)
    }
    answers = streamed(target, [(i, "mlp", x) for i, x in xs.items()], authorization())
    assert set(answers) == set(xs)
    reference = examples.mlp()
    for request_id, x in xs.items():
        np.testing.assert_allclose(
            answers[request_id].as_numpy(MLP_OUTPUT), reference.predict(x), atol=1e-5
        )


def test_a_failing_request_is_answered_on_the_stream_which_goes_on(server):
    url, target = server
    x = np.random.default_rng(7).random((2, 784), dtype=np.float32)
    wrong = np.random.default_rng(8).random((2, 783), dtype=np.float32)
    answers = streamed(target, [("bad", "mlp", wrong), ("good", "mlp", x)], authorization())
    np.testing.assert_allclose(
        answers["good"].as_numpy(MLP_OUTPUT), examples.mlp().predict(x), atol=1e-5
    )
    [error] = [v for k, v in answers.items() if k != "good"]
    rest = th.InferenceServerClient(url.removeprefix("http://"))
    with pytest.raises(InferenceServerException) as refused:
        rest.infer("mlp", mlp_inputs(th, wrong), headers=authorization())
    rest.close()
    assert error.message() == refused.value.message()  # REST's words


def test_a_stream_without_the_token_is_refused(server):
    _, target = server
    x = np.random.default_rng(9).random((1, 784), dtype=np.float32)
    answers: queue.Queue = queue.Queue()
    client = tg.InferenceServerClient(target)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("mlp", mlp_inputs(tg, x), request_id="r")
    except InferenceServerException:
        pass  # the stream may be closed by the refusal already
    result, error = answers.get(timeout=30)
    client.stop_stream()
    client.close()
    assert result is None
    assert error.status() == "StatusCode.UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("rpc", "request_type", "reason"),
    [
        (f"{kind}SharedMemory{action}", f"{kind}SharedMemory{action}Request", "shared memory")
        for kind in ("System", "Cuda")
        for action in ("Status", "Register", "Unregister")
    ]
    + [
        ("TraceSetting", "TraceSettingRequest", "does not trace requests"),
        ("LogSettings", "LogSettingsRequest", "LAYERSERVE_LOG_LEVEL"),
    ],
)
def test_what_is_not_served_answers_unimplemented_saying_why(server, rpc, request_type, reason):
    with grpc.insecure_channel(server[1]) as channel:
        stub = tpb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            getattr(stub, rpc)(
                getattr(tpb, request_type)(), metadata=tuple(authorization().items())
            )
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.value.details().startswith(f"{rpc} is not supported: ")
    assert reason in error.value.details()


def test_at_shutdown_a_stream_answers_what_it_read_then_ends_unavailable(tmp_path):
    """A stream with a request held in its model's queue (max_queue_delay_us) when SIGTERM
    comes: at the end of the drain the stream answers that request, then ends with
    UNAVAILABLE saying why, and the server exits 0, long before its exit timeout (25 s),
    which an open stream held it to before."""
    write_identity(tmp_path, "held", "FP32", {"max_batch_size": 8, "max_queue_delay_us": 1_000_000})
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "layerserve.cli", "serve", "--model-repository"]
    arguments = [str(tmp_path), "--port", str(port), "--grpc-port", str(grpc_port)]
    arguments += ["--workers", "1", "--drain-seconds", "0.3", "--exit-timeout-seconds", "25"]
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen([*command, *arguments], stdout=log, stderr=subprocess.STDOUT)
    answers: queue.Queue = queue.Queue()
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        client = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        tensor = tg.InferInput("x", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.array([[1.0, 2.0, 3.0]], np.float32))
        client.async_stream_infer("held", [tensor], request_id="held-1")
        time.sleep(0.2)  # read, and waiting in the queue for more rows
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        result, error = answers.get(timeout=30)
        assert error is None and result.get_response().id == "held-1"
        np.testing.assert_array_equal(result.as_numpy("y"), [[1, 2, 3]])
        result, error = answers.get(timeout=30)
        assert result is None
        assert error.status() == "StatusCode.UNAVAILABLE" and error.message() == STREAM_CLOSED
        assert process.wait(30) == 0
        assert time.monotonic() - began < 10
        client.stop_stream()
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
