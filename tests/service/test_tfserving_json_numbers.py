"""Numbers in TF Serving's REST API as TF Serving reads and writes them
(``tensorflow_serving/util/json_tensor.cc``): 64-bit integer outputs in row format, scalar
outputs, JSON integers a float input cannot hold, integers written as floats, the non-finite
tokens rapidjson's ``kParseNanAndInfFlag`` reads (``Inf`` among them) and numbers too large
for a double; and the status of a version that failed to load beside versions serving.

Expectations: onnxruntime run on the very model files, and the rules of ``json_tensor.cc``
(``IsLosslessDecimal``: a JSON integer for a float or double input is at most
2**digits - 1 in magnitude) and of ``get_model_status_impl.cc``."""

from __future__ import annotations

import json

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from grpc_test_models import write_identity
from live_server import running_server
from onnx import TensorProto, helper

from layerserve.service.settings import Settings


def save(model: onnx.ModelProto, path) -> None:
    model.ir_version = 8
    path.parent.mkdir(parents=True)
    onnx.save(model, path)


def classifier() -> onnx.ModelProto:
    """probs = Identity(x) [batch, 3]; classes = ArgMax(x) INT64 [batch]; total =
    ReduceSum(classes) INT64, a scalar."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["probs"]),
            helper.make_node("ArgMax", ["x"], ["classes"], axis=1, keepdims=0),
            helper.make_node("ReduceSum", ["classes"], ["total"], keepdims=0),
        ],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("classes", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("total", TensorProto.INT64, []),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfserving_numbers")
    save(classifier(), root / "classifier" / "1" / "model.onnx")
    for datatype in ("FP32", "FP64", "INT64"):
        write_identity(root, datatype.lower(), datatype)
    for version in ("1", "2"):
        write_identity(root, "two", "FP32", version=version)
    (root / "two" / "3").mkdir()
    (root / "two" / "3" / "model.onnx").write_bytes(b"not an ONNX model")
    (root / "two" / "config.json").write_text(json.dumps({"version_policy": {"all": {}}}))
    return root


@pytest.fixture(scope="module")
def http(repository):
    with running_server(Settings(model_repository=repository)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client


def predict(http: httpx.Client, model: str, body: bytes | dict) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(
        f"/v1/models/{model}:predict",
        content=content,
        headers={"Content-Type": "application/json"},
    )


def onnxruntime_outputs(repository, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(repository / "classifier" / "1" / "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"x": x}), strict=True))


X = np.array([[0.1, 0.7, 0.2], [0.9, 0.05, 0.05]], np.float32)


def test_row_format_writes_int64_outputs_beside_float_ones(http, repository):
    """A classifier's usual outputs, probabilities [N, 3] and classes INT64 [N]: one
    object per row (json_tensor.cc's MakeRowFormatJsonFromTensors)."""
    expected = onnxruntime_outputs(repository, X)
    response = predict(
        http, "classifier", {"instances": X.tolist(), "output_filter": ["probs", "classes"]}
    )
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    assert [row["classes"] for row in rows] == expected["classes"].tolist()
    probs = np.array([row["probs"] for row in rows], np.float32)
    np.testing.assert_array_equal(probs, expected["probs"])


def test_columnar_format_writes_a_scalar_output_bare(http, repository):
    expected = onnxruntime_outputs(repository, X)
    response = predict(http, "classifier", {"inputs": X.tolist()})
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert outputs["total"] == int(expected["total"])  # not [total]
    assert outputs["classes"] == expected["classes"].tolist()


@pytest.mark.parametrize(
    ("model", "most"),
    [("fp32", 2**24 - 1), ("fp64", 2**53 - 1)],
)
@pytest.mark.parametrize("beside_a_fraction", [False, True])
def test_json_integers_a_float_input_cannot_hold_are_refused(http, model, most, beside_a_fraction):
    """The largest integer TF Serving takes is served as written; the next is refused,
    alone or among numbers written with a fraction (which NumPy reads as floats)."""
    first = 0.5 if beside_a_fraction else 1
    served = predict(http, model, {"instances": [[first, most, -most]]})
    assert served.status_code == 200, served.text
    assert served.json()["predictions"] == [[first, most, -most]]
    for beyond in (most + 1, -(most + 2)):
        refused = predict(http, model, {"instances": [[first, beyond, 2]]})
        assert refused.status_code == 400, refused.text
        message = refused.json()["error"]
        assert f"cannot convert JSON value {beyond} to" in message
        assert "without loss of precision" in message


def test_a_float_for_an_integer_input_is_taken_below_2_to_the_53(http):
    served = predict(http, "int64", {"instances": [[2.0**53 - 1, -(2.0**53 - 1), 3.0]]})
    assert served.status_code == 200, served.text
    assert served.json()["predictions"] == [[2**53 - 1, -(2**53 - 1), 3]]
    for written in (b"9007199254740993.0", b"9.007199254740992e15", b"-9007199254740993.0"):
        refused = predict(http, "int64", b'{"instances": [[' + written + b", 1, 2]]}")
        assert refused.status_code == 400, refused.text
        assert "does not fit INT64 exactly" in refused.json()["error"]


TOKENS = {b"NaN": np.nan, b"Inf": np.inf, b"-Inf": -np.inf, b"Infinity": np.inf}


@pytest.mark.parametrize("token", list(TOKENS))
def test_every_non_finite_token_rapidjson_reads(http, token):
    response = predict(http, "fp32", b'{"instances": [[' + token + b", 1.5, -0.0]]}")
    assert response.status_code == 200, response.text
    got = np.array(json.loads(response.content)["predictions"], np.float32)
    np.testing.assert_array_equal(got, np.array([[TOKENS[token], 1.5, -0.0]], np.float32))


@pytest.mark.parametrize("elsewhere", [b"", b', "note": "NaN"', b', "x": [NaN]'])
@pytest.mark.parametrize("protocol", ["tfserving", "v2"])
def test_a_number_too_large_for_a_double_is_refused(http, elsewhere, protocol):
    """1e400 is a parse error in rapidjson ("Number too big to be stored in double"),
    whatever else the body holds: never an infinity."""
    if protocol == "tfserving":
        response = predict(http, "fp32", b'{"instances": [[1e400, 1, 2]]' + elsewhere + b"}")
    else:
        body = (
            b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", '
            b'"data": [1e400, 1, 2]}]' + elsewhere + b"}"
        )
        response = http.post(
            "/v2/models/fp32/infer", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["error"]


@pytest.mark.parametrize("boolean", [b"true", b"false"])
def test_a_bare_number_beside_a_boolean_is_a_rank_error(http, boolean):
    response = predict(http, "fp32", b'{"inputs": 1, "other": ' + boolean + b"}")
    assert response.status_code == 400, response.text
    assert response.json()["error"].endswith("Expected [-1, 3], got []")


def test_a_version_that_failed_to_load_is_listed_beside_those_serving(http):
    """get_model_status_impl.cc lists every version the server tried: the broken one
    as END with its error."""
    response = http.get("/v1/models/two")
    assert response.status_code == 200, response.text
    entries = {e["version"]: e for e in response.json()["model_version_status"]}
    assert sorted(entries) == ["1", "2", "3"]
    for version in ("1", "2"):
        assert entries[version]["state"] == "AVAILABLE"
        assert entries[version]["status"]["error_code"] == "OK"
    assert entries["3"]["state"] == "END"
    assert entries["3"]["status"]["error_code"] == "UNKNOWN"
    assert entries["3"]["status"]["error_message"]
    alone = http.get("/v1/models/two/versions/3")
    assert alone.status_code == 200, alone.text
    assert alone.json()["model_version_status"] == [entries["3"]]
