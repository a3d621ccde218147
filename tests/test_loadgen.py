"""The load generator's requests and responses, checked against the server's own V2 codec,
an independent HTTP parser (h11), and hand-written expectations."""

from __future__ import annotations

import h11
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper

from layerserve.loadgen import (
    build_request,
    decode_response,
    http_request,
    inference_path,
)
from layerserve.service.model_config import ModelConfig
from layerserve.service.protocols import v2
from layerserve.service.runtime import LoadedModel
from layerserve.service.settings import Settings

NUMERIC = [
    np.bool_,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
]
LIMIT = 1 << 30


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> LoadedModel:
    """A real served model (y = Identity(x)); the codec needs it for output names."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    path = tmp_path_factory.mktemp("identity") / "model.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path
    )
    return LoadedModel.load("identity", "1", path, ModelConfig().resolved(Settings()))


def arrays(finite: bool) -> st.SearchStrategy[np.ndarray]:
    shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
    numeric = st.sampled_from(NUMERIC).flatmap(
        lambda dtype: hnp.arrays(
            dtype,
            shapes,
            elements=hnp.from_dtype(
                np.dtype(dtype), allow_nan=not finite, allow_infinity=not finite
            ),
        )
    )
    text = shapes.flatmap(lambda shape: hnp.arrays(object, shape, elements=st.text(max_size=6)))
    return st.one_of(numeric, text)


def assert_same(got: np.ndarray, sent: np.ndarray) -> None:
    assert got.shape == sent.shape
    if sent.dtype == object:
        assert [str(v) for v in got.reshape(-1)] == list(sent.reshape(-1))
    else:
        assert got.dtype == sent.dtype
        np.testing.assert_array_equal(got, sent)


def header_length(headers: dict[str, str]) -> int | None:
    value = headers.get("Inference-Header-Content-Length")
    return None if value is None else int(value)


@settings(max_examples=60)
@given(st.lists(arrays(finite=True), min_size=1, max_size=3), st.sampled_from(["json", "binary"]))
def test_requests_decode_to_the_same_tensors_on_the_server(model, tensors, protocol):
    if protocol == "json":  # the server refuses FP16 as JSON numbers (own test below)
        tensors = [t.astype(np.float32) if t.dtype == np.float16 else t for t in tensors]
    inputs = {f"input_{i}": t for i, t in enumerate(tensors)}
    body, headers = build_request(protocol, inputs, ["y"])
    decoded = v2.decode_request(body, header_length(headers), model, LIMIT)
    assert list(decoded.inputs) == list(inputs)
    for name, sent in inputs.items():
        assert_same(decoded.inputs[name], sent)
    if protocol == "binary":
        assert [(o.name, o.binary) for o in decoded.outputs] == [("y", True)]
    else:
        assert decoded.outputs is None


@settings(max_examples=40)
@given(arrays(finite=False))
def test_binary_requests_carry_non_finite_values_bit_for_bit(model, tensor):
    # a name the model lacks: its codec reads any datatype (the model's own input "x"
    # takes FP32 alone, refused before its data are read)
    body, headers = build_request("binary", {"value": tensor}, ["y"])
    decoded = v2.decode_request(body, header_length(headers), model, LIMIT)
    assert_same(decoded.inputs["value"], tensor)


@settings(max_examples=60)
@given(arrays(finite=True), st.booleans())
def test_server_responses_decode_to_the_tensors_it_encoded(model, tensor, binary):
    request = v2.V2Request(None, {}, [v2.RequestedOutput("y", binary)])
    body, json_length = v2.encode_response(model, request, {"y": tensor})
    headers = {} if json_length is None else {"Inference-Header-Content-Length": str(json_length)}
    decoded = decode_response(body, headers)
    if tensor.dtype == object and binary:  # BYTES travel as raw bytes in binary form
        assert [v.decode() for v in decoded["y"].reshape(-1)] == list(tensor.reshape(-1))
        assert decoded["y"].shape == tensor.shape
    else:
        assert_same(decoded["y"], tensor)


def test_fp16_as_json_numbers_is_refused_by_the_server_so_bench_reports_it(model):
    body, headers = build_request("json", {"value": np.ones((1, 3), np.float16)}, ["y"])
    with pytest.raises(v2.InvalidInput, match="FP16 data via JSON is not supported"):
        v2.decode_request(body, header_length(headers), model, LIMIT)


def test_tfserving_request_is_columnar_json_with_nested_lists():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    body, headers = build_request("tfserving", {"a": x, "b": np.array([[1], [2]])}, ["y"])
    assert headers == {"Content-Type": "application/json"}
    assert body == b'{"inputs":{"a":[[0.0,1.0,2.0],[3.0,4.0,5.0]],"b":[[1],[2]]}}'


def test_a_pre_encoded_request_is_one_valid_http_request():
    body, headers = build_request("binary", {"x": np.ones((2, 3), np.float32)}, ["y"])
    raw = http_request("127.0.0.1", 8080, "/v2/models/m/infer", body, {**headers, "A": "b"})
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(raw)
    request, data, end = connection.next_event(), connection.next_event(), connection.next_event()
    assert (request.method, request.target) == (b"POST", b"/v2/models/m/infer")
    assert dict(request.headers)[b"host"] == b"127.0.0.1:8080"
    assert dict(request.headers)[b"a"] == b"b"
    assert bytes(data.data) == body
    assert isinstance(end, h11.EndOfMessage)
    assert connection.next_event() is h11.NEED_DATA  # nothing after it: it can be resent


@pytest.mark.parametrize(
    ("protocol", "version", "prefix", "path"),
    [
        ("json", None, "", "/v2/models/m/infer"),
        ("binary", "3", "", "/v2/models/m/versions/3/infer"),
        ("tfserving", None, "", "/v1/models/m:predict"),
        ("tfserving", "2", "/api", "/api/v1/models/m/versions/2:predict"),
    ],
)
def test_inference_path(protocol, version, prefix, path):
    assert inference_path(protocol, "m", version, prefix) == path
