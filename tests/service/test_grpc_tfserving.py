"""TensorFlow Serving's gRPC API (PredictionService, ModelService) end to end: a real server
on loopback (HTTP and gRPC in one process), called through stubs generated from the same
official protos (layerserve's own, in its private pool), and once through the real
``tensorflow-serving-api`` client with TensorFlow's ``make_tensor_proto`` / ``make_ndarray``
in a subprocess (TensorFlow stays out of this process).

Expectations come from the NumPy reference models, from the inputs themselves (identity
models), from tensors written here by hand (``tensor_of``/``array_of`` follow tensor.proto,
not the server's codec), and from REST's answer to the same request: every error carries
REST's message word for word."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import json_format
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_test_models import (
    DATATYPES,
    grpc_server,
    identity_name,
    mask_model,
    mask_model_input,
    write_models,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from live_server import free_port, running_server
from tfs_messages import (
    DT,
    array_of,
    metadata_request,
    predict_request,
    status_request,
    tensor_of,
)

from layerserve import examples
from layerserve.service.grpc.tfs_generated.tensorflow.core.framework import (
    tensor_pb2,
    tensor_shape_pb2,
)
from layerserve.service.grpc.tfs_generated.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

ATOL = 1e-5
REAL_CLIENT = Path(__file__).parents[1] / "support" / "tfs_real_client.py"
MLP_INPUT, MLP_OUTPUT = "hidden_1_input", "probabilities"
HTTP_OF = {  # REST's HTTP status for each gRPC status code
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with grpc_server(write_models(tmp_path_factory.mktemp("tfs_grpc_repository"))) as server:
        yield server


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server[1]) as channel:
        yield channel


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


# ---- Predict ------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [False, True], ids=["typed", "tensor_content"])
@pytest.mark.parametrize("rows", [0, 1, 7, 64])
def test_mlp_predict_is_the_reference_and_rests_answer(server, predictions, rows, content):
    x = np.random.default_rng(rows).random((rows, 784), dtype=np.float32)
    request = predict_request("mlp", {MLP_INPUT: tensor_of(x, content)}, version=1)
    response = predictions.Predict(request)
    assert list(response.outputs) == [MLP_OUTPUT]
    spec = response.model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("mlp", 1, "serving_default")
    got = array_of(response.outputs[MLP_OUTPUT])
    assert got.dtype == np.float32 and got.shape == (rows, 10)
    np.testing.assert_allclose(got, examples.mlp().predict(x), atol=ATOL)
    if rows:  # REST's columnar :predict cannot say [0, 784] in JSON
        rest = httpx.post(
            f"{server[0]}/v1/models/mlp/versions/1:predict", json={"inputs": x.tolist()}
        )
        np.testing.assert_allclose(got, np.array(rest.json()["outputs"]), atol=ATOL)


ROUND_TRIPS = [  # DT_STRING has no tensor_content (refused: see GRPC_MISTAKES)
    (datatype, content)
    for datatype in DATATYPES
    for content in (False, True)
    if not (content and datatype == "BYTES")
]


@pytest.mark.parametrize(("datatype", "content"), ROUND_TRIPS)
def test_every_datatype_round_trips_through_identity(predictions, datatype, content):
    x = DATATYPES[datatype]
    response = predictions.Predict(
        predict_request(identity_name(datatype), {"x": tensor_of(x, content)})
    )
    got = array_of(response.outputs["y"])
    assert got.dtype == x.dtype and got.shape == x.shape
    assert got.tolist() == x.tolist()


NUMERIC = [d for d in DATATYPES if d != "BYTES"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_numeric_tensor_round_trips_in_either_form(predictions, data):
    datatype = data.draw(st.sampled_from(NUMERIC))
    x = data.draw(arrays(DATATYPES[datatype].dtype, st.tuples(st.integers(0, 20), st.just(3))))
    response = predictions.Predict(
        predict_request(identity_name(datatype), {"x": tensor_of(x, data.draw(st.booleans()))})
    )
    got = array_of(response.outputs["y"])
    assert got.dtype == x.dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, x)  # NaN equals NaN here


def test_one_typed_value_fills_the_shape_as_in_tensorflow(predictions):
    tensor = tensor_pb2.TensorProto(dtype=DT.DT_FLOAT, float_val=[0.25])
    tensor.tensor_shape.dim.add(size=2)
    tensor.tensor_shape.dim.add(size=3)
    response = predictions.Predict(predict_request(identity_name("FP32"), {"x": tensor}))
    np.testing.assert_array_equal(array_of(response.outputs["y"]), np.full((2, 3), 0.25))


def test_two_inputs_output_filter_and_mask_outputs(predictions):
    rng = np.random.default_rng(3)
    left, right = (rng.random((4, 8), dtype=np.float32) for _ in range(2))
    expected = examples.hadamard_model().predict([left, right])
    inputs = {"left": tensor_of(left), "right": tensor_of(right)}
    both = predictions.Predict(predict_request("hadamard", inputs))
    assert sorted(both.outputs) == ["hadamard", "hadamard_1"]
    for name, value in zip(["hadamard", "hadamard_1"], expected, strict=True):
        np.testing.assert_allclose(array_of(both.outputs[name]), value, atol=ATOL)
    request = predict_request("hadamard", inputs)
    request.output_filter.append("hadamard_1")
    one = predictions.Predict(request)
    assert list(one.outputs) == ["hadamard_1"]
    np.testing.assert_allclose(array_of(one.outputs["hadamard_1"]), expected[1], atol=ATOL)

    reference, x = mask_model(), mask_model_input()
    plain = predictions.Predict(predict_request("seq_lstm", {"seq": tensor_of(x)}))
    assert list(plain.outputs) == ["lstm"]  # a mask output only when named, as REST
    request = predict_request("seq_lstm", {"seq": tensor_of(x)})
    request.output_filter.extend(["lstm", "lstm_mask"])
    asked = predictions.Predict(request)
    values, mask = reference.run(x)
    np.testing.assert_allclose(array_of(asked.outputs["lstm"]), values, atol=ATOL)
    assert asked.outputs["lstm_mask"].dtype == DT.DT_BOOL
    np.testing.assert_array_equal(array_of(asked.outputs["lstm_mask"]), mask)


def test_version_label_latest_is_the_newest_version(predictions):
    x = np.random.default_rng(5).random((2, 784), dtype=np.float32)
    response = predictions.Predict(
        predict_request("mlp", {MLP_INPUT: tensor_of(x)}, version_label="latest")
    )
    assert response.model_spec.version.value == 2
    np.testing.assert_allclose(
        array_of(response.outputs[MLP_OUTPUT]), examples.mlp().predict(x), atol=ATOL
    )


# ---- errors: REST's words ---------------------------------------------------------------
X1 = np.zeros((1, 784), np.float32)


def rest_error(url: str, path: str, body: dict | None = None) -> tuple[int, str]:
    answer = httpx.post(url + path, json=body) if body is not None else httpx.get(url + path)
    return answer.status_code, answer.json()["error"]


REST_MISTAKES = {  # id -> (gRPC request, REST path, REST body)
    "unknown model": (
        predict_request("nope", {MLP_INPUT: tensor_of(X1)}),
        "/v1/models/nope:predict",
        {"inputs": X1.tolist()},
    ),
    "unknown version": (
        predict_request("mlp", {MLP_INPUT: tensor_of(X1)}, version=9),
        "/v1/models/mlp/versions/9:predict",
        {"inputs": X1.tolist()},
    ),
    "unknown label": (
        predict_request("mlp", {MLP_INPUT: tensor_of(X1)}, version_label="canary"),
        "/v1/models/mlp/labels/canary:predict",
        {"inputs": X1.tolist()},
    ),
    "unknown signature": (
        predict_request("mlp", {MLP_INPUT: tensor_of(X1)}, signature_name="classify"),
        "/v1/models/mlp:predict",
        {"inputs": X1.tolist(), "signature_name": "classify"},
    ),
    "unknown input": (
        predict_request("mlp", {"nope": tensor_of(X1)}),
        "/v1/models/mlp:predict",
        {"inputs": {"nope": X1.tolist()}},
    ),
    "wrong rank": (
        predict_request("mlp", {MLP_INPUT: tensor_of(X1[0])}),
        "/v1/models/mlp:predict",
        {"inputs": X1[0].tolist()},
    ),
    "missing input": (
        predict_request("hadamard", {"left": tensor_of(np.zeros((1, 8), np.float32))}),
        "/v1/models/hadamard:predict",
        {"inputs": {"left": [[0.0] * 8]}},
    ),
    "too many rows": (
        predict_request("limited", {MLP_INPUT: tensor_of(np.zeros((5, 784), np.float32))}),
        "/v1/models/limited:predict",
        {"inputs": np.zeros((5, 784)).tolist()},
    ),
}


def _with_filter(names: list[str]):
    request = predict_request("mlp", {MLP_INPUT: tensor_of(X1)})
    request.output_filter.extend(names)
    return request, "/v1/models/mlp:predict", {"inputs": X1.tolist(), "output_filter": names}


REST_MISTAKES["unknown output"] = _with_filter(["nope"])
REST_MISTAKES["output named twice"] = _with_filter([MLP_OUTPUT, MLP_OUTPUT])


@pytest.mark.parametrize("case", list(REST_MISTAKES))
def test_predict_errors_have_rests_message_and_the_matching_code(server, predictions, case):
    request, path, body = REST_MISTAKES[case]
    status, message = rest_error(server[0], path, body)
    with pytest.raises(grpc.RpcError) as error:
        predictions.Predict(request)
    assert error.value.details() == message
    assert HTTP_OF[error.value.code()] == status, message


def _tensor(dtype, shape, **fields):
    tensor = tensor_pb2.TensorProto(dtype=dtype, **fields)
    tensor.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape)
    return tensor


GRPC_MISTAKES = {  # id -> (model, tensor, words in the message)
    "wrong dtype": ("mlp", tensor_of(X1.astype(np.float64)), "model expects 'FP32'"),
    "too few values": (
        identity_name("FP32"),
        _tensor(DT.DT_FLOAT, [2, 3], float_val=[1, 2]),
        "needs 6 values",
    ),
    "too many values": (
        identity_name("FP32"),
        _tensor(DT.DT_FLOAT, [1, 3], float_val=[1, 2, 3, 4]),
        "needs 3 values",
    ),
    "no values": (identity_name("FP32"), _tensor(DT.DT_FLOAT, [1, 3]), "holds 0"),
    "values in another field": (
        identity_name("FP32"),
        _tensor(DT.DT_FLOAT, [1, 3], double_val=[1, 2, 3]),
        "['double_val']",
    ),
    "typed values beside tensor_content": (
        identity_name("FP32"),
        _tensor(DT.DT_FLOAT, [1, 1], float_val=[1], tensor_content=b"\0\0\0\0"),
        "['float_val']",
    ),
    "short tensor_content": (
        identity_name("FP32"),
        _tensor(DT.DT_FLOAT, [1, 3], tensor_content=b"\0" * 8),
        "holds 8 bytes but DT_FLOAT [1, 3] takes 12",
    ),
    "string tensor_content": (
        identity_name("BYTES"),
        _tensor(DT.DT_STRING, [1, 1], tensor_content=b"abc"),
        "not tensor_content",
    ),
    "bool tensor_content byte neither 0 nor 1": (
        identity_name("BOOL"),
        _tensor(DT.DT_BOOL, [1, 3], tensor_content=b"\x01\x00\xfe"),
        "BOOL bytes must be 0 (false) or 1 (true); byte 2 is 254",
    ),
    "int8 out of range": (
        identity_name("INT8"),
        _tensor(DT.DT_INT8, [1, 3], int_val=[1, 2, 300]),
        "value 300 is out of range for INT8",
    ),
    "unsupported dtype": (
        identity_name("FP32"),
        _tensor(DT.DT_COMPLEX64, [1, 1], scomplex_val=[1, 0]),
        "DT_COMPLEX64 is not supported",
    ),
    "unknown rank": (
        identity_name("FP32"),
        tensor_pb2.TensorProto(
            dtype=DT.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(unknown_rank=True)
        ),
        "unknown_rank",
    ),
    "negative size": (identity_name("FP32"), _tensor(DT.DT_FLOAT, [-1, 3]), "non-negative"),
    "one value filling a huge shape": (
        identity_name("FP32"),
        _tensor(DT.DT_FLOAT, [2**40, 3], float_val=[1]),
        "exceeds the maximum allowed input size",
    ),
    "one string filling a huge shape": (
        identity_name("BYTES"),
        _tensor(DT.DT_STRING, [2**40, 3], string_val=[b"a"]),
        "exceeds the maximum allowed input size",
    ),
}


@pytest.mark.parametrize("case", list(GRPC_MISTAKES))
def test_malformed_tensors_are_invalid_arguments_naming_the_mistake(predictions, case):
    model, tensor, words = GRPC_MISTAKES[case]
    name = MLP_INPUT if model == "mlp" else "x"
    with pytest.raises(grpc.RpcError) as error:
        predictions.Predict(predict_request(model, {name: tensor}))
    assert error.value.code() in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # over the message limit, as V2 answers
    )
    assert words in error.value.details() and f"'{name}'" in error.value.details()


def test_a_model_spec_without_a_name_is_refused(predictions):
    with pytest.raises(grpc.RpcError) as error:
        predictions.Predict(predict_request("", {}))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model_spec.name" in error.value.details()


def test_streaming_and_request_options_are_refused_not_ignored(predictions):
    for option in ("predict_streamed_options", "request_options"):
        request = predict_request("mlp", {MLP_INPUT: tensor_of(X1)})
        getattr(request, option).SetInParent()
        with pytest.raises(grpc.RpcError) as error:
            predictions.Predict(request)
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert option in error.value.details()


def test_invalid_predictions_count_as_failures_in_the_statistics(server, predictions):
    def counts() -> tuple[int, int]:
        stats = httpx.get(server[0] + "/v2/models/hadamard/versions/1/stats").json()
        inference = stats["model_stats"][0]["inference_stats"]
        return inference["fail"]["count"], inference["success"]["count"]

    fail, success = counts()
    ones = tensor_of(np.ones((1, 8), np.float32))
    with pytest.raises(grpc.RpcError):
        predictions.Predict(predict_request("hadamard", {"left": ones}))
    predictions.Predict(predict_request("hadamard", {"left": ones, "right": ones}))
    assert counts() == (fail + 1, success + 1)


def test_request_id_comes_back_in_the_trailers(predictions):
    request = predict_request("mlp", {MLP_INPUT: tensor_of(X1)})
    _, call = predictions.Predict.with_call(request, metadata=[("x-request-id", "tfs-1")])
    assert ("x-request-id", "tfs-1") in call.trailing_metadata()


# ---- GetModelMetadata / GetModelStatus ------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "version"), [("mlp", None), ("mlp", 1), ("hadamard", None), ("seq_lstm", None)]
)
def test_metadata_signature_def_is_rests(server, predictions, name, version):
    path = f"/v1/models/{name}" + (f"/versions/{version}" if version else "") + "/metadata"
    rest = httpx.get(server[0] + path).json()
    response = predictions.GetModelMetadata(metadata_request(name, version=version))
    assert list(response.metadata) == ["signature_def"]
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(signatures)
    expected = json_format.ParseDict(
        rest["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap()
    )
    assert signatures == expected
    assert list(signatures.signature_def) == ["serving_default"]
    spec = response.model_spec
    assert (spec.name, str(spec.version.value)) == (name, rest["model_spec"]["version"])


def test_metadata_errors(server, predictions):
    status, message = rest_error(server[0], "/v1/models/mlp/versions/9/metadata")
    with pytest.raises(grpc.RpcError) as error:
        predictions.GetModelMetadata(metadata_request("mlp", version=9))
    assert (error.value.code(), error.value.details()) == (grpc.StatusCode.NOT_FOUND, message)
    assert status == 404
    for fields, words in (((), "at least one metadata_field"), (("graph",), "graph")):
        with pytest.raises(grpc.RpcError) as error:
            predictions.GetModelMetadata(metadata_request("mlp", fields))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in error.value.details()


@pytest.mark.parametrize(
    ("name", "version", "label"),
    [("mlp", None, ""), ("mlp", 2, ""), ("mlp", None, "latest"), ("hadamard", None, "")],
)
def test_model_status_is_rests(server, models, name, version, label):
    path = f"/v1/models/{name}" + (f"/versions/{version}" if version else "")
    path += f"/labels/{label}" if label else ""
    rest = httpx.get(server[0] + path).json()
    response = models.GetModelStatus(status_request(name, version, label))
    document = json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    assert document == {"model_version_status": rest["model_version_status"]}
    assert all(s.state == s.AVAILABLE for s in response.model_version_status)


@pytest.mark.parametrize(
    ("name", "version", "label", "path"),
    [
        ("nope", None, "", "/v1/models/nope"),
        ("mlp", 9, "", "/v1/models/mlp/versions/9"),
        ("mlp", None, "canary", "/v1/models/mlp/labels/canary"),
    ],
)
def test_model_status_errors_are_rests(server, models, name, version, label, path):
    status, message = rest_error(server[0], path)
    with pytest.raises(grpc.RpcError) as error:
        models.GetModelStatus(status_request(name, version, label))
    assert (HTTP_OF[error.value.code()], error.value.details()) == (status, message)


# ---- what is not implemented, access, reflection ---------------------------------------------
def test_classify_regress_multi_inference_and_reload_are_unimplemented(predictions, models):
    calls = [
        (predictions.Classify, classification_pb2.ClassificationRequest(), "tf.Example"),
        (predictions.Regress, regression_pb2.RegressionRequest(), "tf.Example"),
        (predictions.MultiInference, inference_pb2.MultiInferenceRequest(), "tf.Example"),
        (models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(), "load"),
    ]
    for method, request, words in calls:
        with pytest.raises(grpc.RpcError) as error:
            method(request)
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert words in error.value.details()


def test_tokens_guard_the_tensorflow_serving_services(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="layerserve.service.requests")
    root = write_models(tmp_path)
    port = free_port()
    settings = Settings(
        model_repository=root,
        grpc_port=port,
        api_token="api-secret",
        admin_token="adm-secret",
        access_log=True,
    )
    with running_server(settings), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        admin = model_service_pb2_grpc.ModelServiceStub(channel)
        request = predict_request("mlp", {MLP_INPUT: tensor_of(X1)})
        for metadata, code in (
            ((), grpc.StatusCode.UNAUTHENTICATED),
            ((("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED),
        ):
            with pytest.raises(grpc.RpcError) as error:
                stub.Predict(request, metadata=metadata)
            assert error.value.code() == code
            with pytest.raises(grpc.RpcError) as error:
                admin.GetModelStatus(status_request("mlp"), metadata=metadata)
            assert error.value.code() == code
        api = (("authorization", "Bearer api-secret"),)
        logged = (*api, ("x-request-id", "tfs-log"))
        assert MLP_OUTPUT in stub.Predict(request, metadata=logged).outputs
        # the access log names the service each call went to
        lines = [r.getMessage() for r in caplog.records]
        (line,) = [m for m in lines if "request_id=tfs-log " in m]
        assert "path=/tensorflow.serving.PredictionService/Predict status=OK" in line
        assert admin.GetModelStatus(status_request("mlp"), metadata=api).model_version_status
        reload = model_management_pb2.ReloadConfigRequest()
        with pytest.raises(grpc.RpcError) as error:
            admin.HandleReloadConfigRequest(reload, metadata=api)
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as error:
            admin.HandleReloadConfigRequest(
                reload, metadata=(("authorization", "Bearer adm-secret"),)
            )
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_lists_the_tensorflow_serving_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    response = next(stub.ServerReflectionInfo(iter([request])))
    names = {s.name for s in response.list_services_response.service}
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"} <= names
    asked = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="tensorflow.serving.PredictionService"
    )
    found = next(stub.ServerReflectionInfo(iter([asked])))
    assert found.file_descriptor_response.file_descriptor_proto


POOL_CHILD = """
from tensorflow_serving.apis import predict_pb2 as official  # protobuf's default pool

from layerserve.service.grpc.tfs_generated.tensorflow_serving.apis import predict_pb2 as ours
from layerserve.service.grpc import tfserving  # the servicer imports too

request = official.PredictRequest(output_filter=["y"])
request.model_spec.name = "m"
request.inputs["x"].float_val.extend([1.5, 2.5])
again = ours.PredictRequest.FromString(request.SerializeToString())
back = official.PredictRequest.FromString(again.SerializeToString())
print(again.model_spec.name, list(again.inputs["x"].float_val), back == request)
print(*tfserving.SERVICE_NAMES)
"""


def test_the_generated_modules_import_beside_the_official_ones():
    """Both copies of TF Serving's protos in one process, and the same wire format."""
    child = subprocess.run(
        [sys.executable, "-c", POOL_CHILD], capture_output=True, text=True, timeout=240
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.splitlines()[-2:] == [
        "m [1.5, 2.5] True",
        "tensorflow.serving.PredictionService tensorflow.serving.ModelService",
    ]


# ---- the real client: tensorflow-serving-api with TensorFlow -------------------------------
def test_the_real_tensorflow_serving_client(server):
    rows = 7
    child = subprocess.run(
        [sys.executable, str(REAL_CLIENT), server[1], str(rows)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    x = np.random.default_rng(rows).random((rows, 784), dtype=np.float32)
    assert answer["y_dtype"] == "float32"
    np.testing.assert_allclose(np.array(answer["y"]), examples.mlp().predict(x), atol=ATOL)
    assert answer["filled_dtype"] == "float16" and answer["filled"] == [[1.5] * 3] * 2
    assert answer["inputs"] == {MLP_INPUT: ["float32", [-1, 784]]}
    assert answer["method"] == "tensorflow/serving/predict"
    assert answer["versions"] == [[1, 30], [2, 30]]  # AVAILABLE
