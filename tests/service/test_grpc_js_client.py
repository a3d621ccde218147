"""The gRPC port with a client that shares nothing with grpcio: grpc-js, the gRPC of
Node.js, over Node's own HTTP/2 (nghttp2), against a real server on loopback
(``tests/support/npm_clients.py`` drives ``tests/clients/grpc_js_client.js``).

Its HTTP/2 differs from grpcio's in what a server must get right: its own window sizes
and updates, frame sizes, header order and HPACK use, keepalive pings, resets on
cancellation and deadlines. Expectations come from the NumPy reference models, from the
inputs themselves (identity models) and from REST's answer to the same request."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_test_models import grpc_server, write_models
from npm_clients import answers, call, run_steps
from tfs_messages import array_of, predict_request, status_request, tensor_of

from layerserve import examples
from layerserve.service.grpc.generated import grpc_service_pb2 as pb
from layerserve.service.grpc.tfs_generated.tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    model_service_pb2,
    prediction_service_pb2,
)

pytestmark = pytest.mark.parallel_safe

ATOL = 1e-5
MLP_INPUT, MLP_OUTPUT = "hidden_1_input", "probabilities"
OK, CANCELLED, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 3, 4, 5
UNIMPLEMENTED, UNAUTHENTICATED = 12, 16
V2 = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name
PREDICTION = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
MODELS = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"]
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
LARGE_ROWS = 1_000_000  # 12 MB each way: hundreds of DATA frames, windows updated
# grpc-js takes at most 4 MiB in a message unless told
CHANNEL = {"grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = write_models(tmp_path_factory.mktemp("grpc_js_repository"), large_identity=True)
    with grpc_server(root) as server:
        yield server


@pytest.fixture(scope="module")
def steps(server):
    def run(steps, channel=None):
        return run_steps(server[1], steps, {**CHANNEL, **(channel or {})})

    return run


def infer_request(model, x, request_id="", typed=False, name=MLP_INPUT, version=""):
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    tensor = request.inputs.add(name=name, datatype="FP32", shape=list(x.shape))
    if typed:
        tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
    else:
        request.raw_input_contents.append(x.astype("<f4").tobytes())
    return request


def only(method, result):
    """The one answer of a call that succeeded."""
    assert result["code"] == OK, result
    [answer] = answers(method, result)
    return answer


def output_array(response: pb.ModelInferResponse, index: int = 0) -> np.ndarray:
    output = response.outputs[index]
    return np.frombuffer(response.raw_output_contents[index], "<f4").reshape(output.shape)


def infer(result) -> np.ndarray:
    return output_array(only(V2["ModelInfer"], result))


def mlp_x(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((rows, 784), dtype=np.float32)


# ---- health and metadata -----------------------------------------------------------------
def test_health_and_metadata_are_rests(server, steps):
    url = server[0]
    calls = [
        (V2["ServerLive"], pb.ServerLiveRequest()),
        (V2["ServerReady"], pb.ServerReadyRequest()),
        (V2["ModelReady"], pb.ModelReadyRequest(name="mlp")),
        (V2["ModelReady"], pb.ModelReadyRequest(name="no_such_model")),
        (V2["ServerMetadata"], pb.ServerMetadataRequest()),
        (V2["ModelMetadata"], pb.ModelMetadataRequest(name="mlp", version="1")),
        (HEALTH.methods_by_name["Check"], health_pb2.HealthCheckRequest()),
    ]
    [results] = steps([[call(method, request) for method, request in calls]])
    live, ready, mlp_ready, unknown_ready, metadata, model, health = (
        only(method, result) for (method, _), result in zip(calls, results, strict=True)
    )
    assert live.live and ready.ready and mlp_ready.ready and not unknown_ready.ready
    rest = httpx.get(f"{url}/v2").json()
    assert (metadata.name, metadata.version) == (rest["name"], rest["version"])
    assert list(metadata.extensions) == rest["extensions"]
    rest = httpx.get(f"{url}/v2/models/mlp/versions/1").json()
    assert (model.name, list(model.versions), model.platform) == (
        "mlp",
        rest["versions"],
        rest["platform"],
    )
    tensors = [(t.name, t.datatype, list(t.shape)) for t in (*model.inputs, *model.outputs)]
    rest_tensors = [
        (t["name"], t["datatype"], t["shape"]) for t in rest["inputs"] + rest["outputs"]
    ]
    assert tensors == rest_tensors
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_health_watch_streams_serving_until_the_client_leaves(steps):
    watch = HEALTH.methods_by_name["Watch"]
    [[result]] = steps([[call(watch, health_pb2.HealthCheckRequest(), cancel_after_ms=700)]])
    assert result["code"] == CANCELLED
    statuses = [answer.status for answer in answers(watch, result)]
    assert statuses == [health_pb2.HealthCheckResponse.SERVING]  # sent again only on change


# ---- inference -----------------------------------------------------------------------------
@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
@pytest.mark.parametrize("rows", [0, 1, 7, 64])
def test_mlp_is_the_reference(steps, rows, typed):
    x = mlp_x(rows, rows)
    request = infer_request("mlp", x, f"r{rows}", typed, version="1")
    [[result]] = steps([[call(V2["ModelInfer"], request)]])
    response = only(V2["ModelInfer"], result)
    assert (response.id, response.model_name, response.model_version) == (f"r{rows}", "mlp", "1")
    assert [o.name for o in response.outputs] == [MLP_OUTPUT]
    np.testing.assert_allclose(output_array(response), examples.mlp().predict(x), atol=ATOL)


def test_calls_at_once_on_one_connection_each_get_their_own_answer(steps):
    """Sixty-four calls in flight together, of different sizes: each answer is its own
    request's (by id and by value)."""
    xs = {f"c{i}": mlp_x(1 + i % 64, 100 + i) for i in range(64)}
    [results] = steps([[call(V2["ModelInfer"], infer_request("mlp", x, i)) for i, x in xs.items()]])
    reference = examples.mlp()
    for (request_id, x), result in zip(xs.items(), results, strict=True):
        response = only(V2["ModelInfer"], result)
        assert response.id == request_id
        np.testing.assert_allclose(output_array(response), reference.predict(x), atol=ATOL)


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compressed_requests_are_read(steps, compression):
    x = mlp_x(16, 3)
    request = call(V2["ModelInfer"], infer_request("mlp", x), compression=compression)
    [[result]] = steps([[request]])
    np.testing.assert_allclose(infer(result), examples.mlp().predict(x), atol=ATOL)


def test_a_12_mb_request_and_answer_cross_whole(steps):
    x = np.random.default_rng(5).standard_normal((LARGE_ROWS, 3)).astype(np.float32)
    request = infer_request("identity_large", x, name="x")
    [[result]] = steps([[call(V2["ModelInfer"], request, deadline_ms=60_000)]])
    np.testing.assert_array_equal(infer(result), x)


def test_a_stream_answers_every_request_and_says_which_failed(server, steps):
    xs = {f"s{i}": mlp_x(1 + 3 * i, 200 + i) for i in range(12)}
    requests = [infer_request("mlp", x, i) for i, x in xs.items()]
    requests.insert(5, infer_request("nope", mlp_x(1, 0), "bad"))
    [[result]] = steps([[call(V2["ModelStreamInfer"], requests)]])
    assert result["code"] == OK, result
    by_id = {a.infer_response.id: a for a in answers(V2["ModelStreamInfer"], result)}
    assert sorted(by_id) == sorted([*xs, "bad"])
    rest = httpx.post(f"{server[0]}/v2/models/nope/infer", json={"inputs": []})
    assert by_id["bad"].error_message == rest.json()["error"]
    reference = examples.mlp()
    for request_id, x in xs.items():
        answer = by_id[request_id]
        assert not answer.error_message
        np.testing.assert_allclose(
            output_array(answer.infer_response), reference.predict(x), atol=ATOL
        )


# ---- errors, deadlines, cancellation, pings --------------------------------------------------
@pytest.mark.parametrize(
    ("model", "x", "code", "status"),
    [
        ("nope", np.zeros((1, 784), np.float32), NOT_FOUND, 404),
        ("mlp", np.zeros(784, np.float32), INVALID_ARGUMENT, 400),
        ("limited", np.zeros((5, 784), np.float32), INVALID_ARGUMENT, 400),
    ],
    ids=["unknown model", "wrong rank", "too many rows"],
)
def test_errors_have_rests_words_and_matching_code(server, steps, model, x, code, status):
    [[result]] = steps([[call(V2["ModelInfer"], infer_request(model, x))]])
    tensor = {"name": MLP_INPUT, "datatype": "FP32", "shape": list(x.shape), "data": x.tolist()}
    rest = httpx.post(f"{server[0]}/v2/models/{model}/infer", json={"inputs": [tensor]})
    assert rest.status_code == status
    assert (result["code"], result["details"]) == (code, rest.json()["error"])
    assert result["responses"] == []


def test_deadlines_and_cancellations_leave_the_connection_serving(steps):
    """A call past its deadline and a cancelled one, both waiting in the queue of a model
    that holds requests 200 ms to merge them, then a call on the same connection."""
    x = np.ones((1, 3), np.float32)
    queued = infer_request("delayed", x, name="x")
    first, second = steps(
        [
            [
                call(V2["ModelInfer"], queued, deadline_ms=50),
                call(V2["ModelInfer"], queued, cancel_after_ms=50),
            ],
            [call(V2["ModelInfer"], queued)],
        ]
    )
    assert [r["code"] for r in first] == [DEADLINE_EXCEEDED, CANCELLED]
    np.testing.assert_array_equal(infer(second[0]), x)


def test_keepalive_pings_are_answered_while_a_stream_is_open(steps):
    """grpc-js pings every 200 ms and drops the connection when an answer takes 1.5 s:
    a stream held open for 3 s across those pings still ends with its answers."""
    x = mlp_x(2, 9)
    channel = {"grpc.keepalive_time_ms": 200, "grpc.keepalive_timeout_ms": 1500}
    stream = call(V2["ModelStreamInfer"], [infer_request("mlp", x, "kept")], end_after_ms=3000)
    [[result]] = steps([[stream]], channel)
    answer = only(V2["ModelStreamInfer"], result)
    np.testing.assert_allclose(
        output_array(answer.infer_response), examples.mlp().predict(x), atol=ATOL
    )


def test_the_request_id_comes_back_beside_binary_metadata(steps):
    metadata = {"x-request-id": "js-42", "trace-bin": base64.b64encode(b"\x00\x01\xff").decode()}
    request = call(V2["ModelInfer"], infer_request("mlp", mlp_x(1, 1)), metadata=metadata)
    [[result]] = steps([[request]])
    assert result["code"] == OK, result
    assert result["trailers"]["x-request-id"] == "js-42"


def test_each_call_is_checked_for_its_token(tmp_path):
    """With an API token, calls on one connection that alternate the right token, a wrong
    one and none (Node sends ``authorization`` as a never-indexed HPACK field) are each
    answered for their own token."""
    request = infer_request("mlp", mlp_x(1, 4))
    tokens = ["Bearer s3cret", "Bearer wrong", None, "Bearer s3cret", "bearer s3cret"]
    with grpc_server(write_models(tmp_path), api_token="s3cret") as (_, target):
        results = run_steps(
            target,
            [
                [call(V2["ModelInfer"], request, metadata={"authorization": t} if t else {})]
                for t in tokens
            ],
        )
    codes = [result["code"] for [result] in results]
    assert codes == [OK, UNAUTHENTICATED, UNAUTHENTICATED, OK, OK]  # RFC 6750: both 401s
    wrong, missing = results[1][0]["details"], results[2][0]["details"]
    assert "the Bearer token is not valid for this endpoint" in wrong
    assert "the request has no Authorization header" in missing


# ---- TensorFlow Serving ----------------------------------------------------------------------
@pytest.mark.parametrize("content", [False, True], ids=["typed", "tensor_content"])
def test_tensorflow_serving_predict_is_the_reference(steps, content):
    x = mlp_x(7, 11)
    predict = PREDICTION.methods_by_name["Predict"]
    request = predict_request("mlp", {MLP_INPUT: tensor_of(x, content)}, version=1)
    [[result]] = steps([[call(predict, request)]])
    response = only(predict, result)
    assert response.model_spec.signature_name == "serving_default"
    np.testing.assert_allclose(
        array_of(response.outputs[MLP_OUTPUT]), examples.mlp().predict(x), atol=ATOL
    )


def test_tensorflow_serving_status_and_unimplemented_methods(server, steps):
    get_status = MODELS.methods_by_name["GetModelStatus"]
    classify = PREDICTION.methods_by_name["Classify"]
    [[status, classified]] = steps(
        [
            [
                call(get_status, status_request("mlp", 1)),
                call(classify, classification_pb2.ClassificationRequest()),
            ]
        ]
    )
    response = only(get_status, status)
    rest = httpx.get(f"{server[0]}/v1/models/mlp/versions/1").json()["model_version_status"]
    state = get_model_status_pb2.ModelVersionStatus.State
    assert [(v.version, v.state) for v in response.model_version_status] == [
        (int(v["version"]), state.Value(v["state"])) for v in rest
    ]
    assert classified["code"] == UNIMPLEMENTED and classified["details"]
