"""The gRPC port through ``buf curl``: Buf's command-line client, in Go (Go's HTTP/2 and
connect-go's gRPC), which reads the services' schema from the server's reflection as
``grpcurl`` does and takes and prints messages as proto3 JSON
(``tests/support/npm_clients.py``). A real server on loopback; expectations come from the
NumPy reference models, from the inputs themselves (identity models) and from REST's
answer to the same request."""

from __future__ import annotations

import base64

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import json_format
from grpc_test_models import grpc_server, write_models
from npm_clients import buf_curl, buf_services
from tfs_messages import array_of, predict_request, tensor_of

from layerserve import examples
from layerserve.service.grpc.generated import grpc_service_pb2 as pb
from layerserve.service.grpc.tfs_generated.tensorflow_serving.apis import predict_pb2

pytestmark = pytest.mark.parallel_safe

ATOL = 1e-5
MLP_INPUT, MLP_OUTPUT = "hidden_1_input", "probabilities"
V2 = "inference.GRPCInferenceService"
SERVICES = [  # what the README says the port serves
    V2,
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
]
REFLECTION = ["grpc-v1", "grpc-v1alpha"]  # buf's names of the two versions


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = write_models(tmp_path_factory.mktemp("buf_repository"), large_identity=True)
    with grpc_server(root) as server:
        yield server


def infer_json(
    model: str, x: np.ndarray, request_id: str = "", typed: bool = False, name=MLP_INPUT
):
    tensor = {"name": name, "datatype": "FP32", "shape": list(x.shape)}
    request = {"model_name": model, "id": request_id, "inputs": [tensor]}
    if typed:
        tensor["contents"] = {"fp32_contents": x.reshape(-1).tolist()}
    else:
        request["raw_input_contents"] = [base64.b64encode(x.astype("<f4").tobytes()).decode()]
    return request


def output_array(document: dict) -> np.ndarray:
    response = json_format.ParseDict(document, pb.ModelInferResponse())
    output = response.outputs[0]
    return np.frombuffer(response.raw_output_contents[0], "<f4").reshape(output.shape)


@pytest.mark.parametrize("reflection", REFLECTION)
def test_reflection_lists_every_service_and_describes_health(server, reflection):
    """Through either version of reflection alone: every service, and a call of the
    health service (its messages described by reflection)."""
    assert sorted(buf_services(server[1], reflection)) == sorted(SERVICES)
    [health], error = buf_curl(server[1], "grpc.health.v1.Health/Check", reflection=reflection)
    assert (health, error) == ({"status": "SERVING"}, None)


@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
@pytest.mark.parametrize("rows", [1, 64])
def test_model_infer_is_the_reference(server, rows, typed):
    x = np.random.default_rng(rows).random((rows, 784), dtype=np.float32)
    [answer], error = buf_curl(server[1], f"{V2}/ModelInfer", [infer_json("mlp", x, "b", typed)])
    assert error is None
    assert (answer["modelName"], answer["id"]) == ("mlp", "b")
    np.testing.assert_allclose(output_array(answer), examples.mlp().predict(x), atol=ATOL)


def test_a_large_request_and_answer_cross_whole(server):
    """3.6 MB each way (buf takes at most 4 MiB in a message): hundreds of DATA frames."""
    x = np.random.default_rng(5).standard_normal((300_000, 3)).astype(np.float32)
    request = infer_json("identity_large", x, name="x")
    [answer], error = buf_curl(server[1], f"{V2}/ModelInfer", [request])
    assert error is None
    np.testing.assert_array_equal(output_array(answer), x)


def test_a_stream_answers_each_request(server):
    xs = {
        f"s{i}": np.random.default_rng(i).random((1 + i, 784), dtype=np.float32) for i in range(5)
    }
    requests = [infer_json("mlp", x, request_id) for request_id, x in xs.items()]
    requests.insert(2, infer_json("nope", xs["s0"], "bad"))
    answers, error = buf_curl(server[1], f"{V2}/ModelStreamInfer", requests)
    assert error is None
    by_id = {a["inferResponse"]["id"]: a for a in answers}
    assert sorted(by_id) == sorted([*xs, "bad"])
    rest = httpx.post(f"{server[0]}/v2/models/nope/infer", json={"inputs": []})
    assert by_id["bad"]["errorMessage"] == rest.json()["error"]
    for request_id, x in xs.items():
        got = output_array(by_id[request_id]["inferResponse"])
        np.testing.assert_allclose(got, examples.mlp().predict(x), atol=ATOL)


@pytest.mark.parametrize(
    ("model", "x", "code", "status"),
    [
        ("nope", np.zeros((1, 784), np.float32), grpc.StatusCode.NOT_FOUND, 404),
        ("mlp", np.zeros(784, np.float32), grpc.StatusCode.INVALID_ARGUMENT, 400),
    ],
    ids=["unknown model", "wrong rank"],
)
def test_errors_have_rests_words_and_matching_code(server, model, x, code, status):
    answers, error = buf_curl(server[1], f"{V2}/ModelInfer", [infer_json(model, x)])
    tensor = {"name": MLP_INPUT, "datatype": "FP32", "shape": list(x.shape), "data": x.tolist()}
    rest = httpx.post(f"{server[0]}/v2/models/{model}/infer", json={"inputs": [tensor]})
    assert rest.status_code == status
    assert answers == []
    assert error == {"code": code.name.lower(), "message": rest.json()["error"]}


def test_tensorflow_serving_predict(server):
    x = np.random.default_rng(3).random((4, 784), dtype=np.float32)
    request = predict_request("mlp", {MLP_INPUT: tensor_of(x)}, version=1)
    document = json_format.MessageToDict(request, preserving_proto_field_name=True)
    [answer], error = buf_curl(
        server[1], "tensorflow.serving.PredictionService/Predict", [document]
    )
    assert error is None
    response = json_format.ParseDict(answer, predict_pb2.PredictResponse())
    np.testing.assert_allclose(
        array_of(response.outputs[MLP_OUTPUT]), examples.mlp().predict(x), atol=ATOL
    )
