"""Tensors NumPy cannot hold or a datatype cannot represent, refused with a 400 before
NumPy or onnxruntime sees them, on every path a client-given shape takes (V2 JSON and
binary, BYTES, ``:mask``, ``:validate``, TF Serving rows and columns); and how
non-finite values travel in JSON, in and out, as Triton and TF Serving write them.

Expectations: the ranks and shapes the test models declare, NumPy's documented limit of
64 dimensions, ``np.finfo`` for the largest finite values, and the tokens ``NaN``,
``Infinity`` and ``-Infinity`` as Python's ``json`` and tritonclient read them."""

from __future__ import annotations

import json
import math
import struct

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from grpc_test_models import write_identity
from hypothesis import given, settings
from hypothesis import strategies as st
from live_server import running_server, write_model

from layerserve import examples
from layerserve.service.settings import Settings

NUMPY_MAX_DIMS = 64
MLP_INPUT = ("hidden_1_input", [-1, 784])
LSTM_INPUT = ("masking_input", [-1, 10, 8])
TEXT_INPUT = ("x", [-1, 3])
IDENTITY_TYPES = ("FP16", "FP32", "BYTES")


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_repository")
    write_model(root, "mlp", examples.mlp())
    write_model(root, "masking_lstm", examples.masking_lstm())
    for datatype in IDENTITY_TYPES:
        write_identity(root, f"identity_{datatype.lower()}", datatype)
    with running_server(Settings(model_repository=root)) as base:
        yield base


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


def rank_error(model: str, spec: tuple[str, list[int]], rank: int) -> str:
    name, shape = spec
    return (
        f"unexpected shape for input '{name}' for model '{model}'. Expected rank "
        f"{len(shape)} (shape {shape}), got rank {rank}: tensors have at most "
        f"{NUMPY_MAX_DIMS} dimensions"
    )


def binary_body(header: dict, payload: bytes) -> dict:
    text = json.dumps(header).encode()
    return {
        "content": text + payload,
        "headers": {"Inference-Header-Content-Length": str(len(text))},
    }


def nested(value, depth: int):
    for _ in range(depth):
        value = [value]
    return value


def v2_json(name: str, shape: list[int], datatype: str, data) -> dict:
    return {
        "json": {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}
    }


def v2_binary(name: str, shape: list[int], datatype: str, payload: bytes) -> dict:
    entry = {
        "name": name,
        "shape": shape,
        "datatype": datatype,
        "parameters": {"binary_data_size": len(payload)},
    }
    return binary_body({"inputs": [entry]}, payload)


ONE_TEXT = struct.pack("<I", 1) + b"a"


def request_of_rank(kind: str, rank: int) -> tuple[str, dict, str]:
    """(path, httpx arguments, expected message) for a tensor of ``rank`` ones."""
    ones = [1] * rank
    if kind == "v2-json":
        return "/v2/models/mlp/infer", v2_json(MLP_INPUT[0], ones, "FP32", [0.5]), "mlp"
    if kind == "v2-json-flat-data-nested":
        data = nested(0.5, rank)
        return "/v2/models/mlp/infer", v2_json(MLP_INPUT[0], ones, "FP32", data), "mlp"
    if kind == "v2-binary":
        args = v2_binary(MLP_INPUT[0], ones, "FP32", struct.pack("<f", 0.5))
        return "/v2/models/mlp/infer", args, "mlp"
    if kind == "v2-json-bytes":
        args = v2_json(TEXT_INPUT[0], ones, "BYTES", ["a"])
        return "/v2/models/identity_bytes/infer", args, "identity_bytes"
    if kind == "v2-binary-bytes":
        args = v2_binary(TEXT_INPUT[0], ones, "BYTES", ONE_TEXT)
        return "/v2/models/identity_bytes/infer", args, "identity_bytes"
    if kind == "mask-json":
        args = v2_json(LSTM_INPUT[0], ones, "FP32", [0.5])
        return "/v1/models/masking_lstm:mask", args, "masking_lstm"
    if kind == "mask-binary":
        args = v2_binary(LSTM_INPUT[0], ones, "FP32", struct.pack("<f", 0.5))
        return "/v1/models/masking_lstm:mask", args, "masking_lstm"
    if kind == "tfs-row":
        return "/v1/models/mlp:predict", {"json": {"instances": nested(0.5, rank)}}, "mlp"
    if kind == "tfs-columnar":
        return "/v1/models/mlp:predict", {"json": {"inputs": nested(0.5, rank)}}, "mlp"
    if kind == "tfs-row-bytes":
        args = {"json": {"instances": nested("a", rank)}}
        return "/v1/models/identity_bytes:predict", args, "identity_bytes"
    if kind == "tfs-columnar-bytes":
        args = {"json": {"inputs": nested({"b64": "YQ=="}, rank)}}
        return "/v1/models/identity_bytes:predict", args, "identity_bytes"
    raise AssertionError(kind)


SPECS = {"mlp": MLP_INPUT, "masking_lstm": LSTM_INPUT, "identity_bytes": TEXT_INPUT}
KINDS = [
    "v2-json",
    "v2-binary",
    "v2-json-bytes",
    "v2-binary-bytes",
    "mask-json",
    "mask-binary",
    "tfs-row",
    "tfs-columnar",
    "tfs-row-bytes",
    "tfs-columnar-bytes",
]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=8, deadline=None)
@given(rank=st.integers(NUMPY_MAX_DIMS + 1, 300))
def test_a_rank_above_numpys_limit_is_a_400_naming_the_ranks(http, kind, rank):
    path, arguments, model = request_of_rank(kind, rank)
    response = http.post(path, **arguments)
    assert response.status_code == 400, response.text
    assert response.json() == {"error": rank_error(model, SPECS[model], rank)}


def test_data_nested_deeper_than_numpy_allows_is_a_400(http):
    """The shape is fine, the data is not: NumPy's own refusal becomes the 400."""
    path, arguments, _ = request_of_rank("v2-json-flat-data-nested", 70)
    arguments["json"]["inputs"][0]["shape"] = [1, 784]
    response = http.post(path, **arguments)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "input 'hidden_1_input': 'data' is not a regular array of FP32 values" in error


@pytest.mark.parametrize("kind", ["v2-json", "v2-binary", "tfs-row"])
def test_rank_64_reaches_the_models_own_shape_check(http, kind):
    """At NumPy's limit the tensor is built, and refused for not fitting the model."""
    path, arguments, _ = request_of_rank(kind, NUMPY_MAX_DIMS)
    response = http.post(path, **arguments)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    if kind == "tfs-row":
        assert "each entry of 'instances' is one example and must have shape [784]" in error
    else:
        assert error.startswith(
            f"unexpected shape for input 'hidden_1_input' for model 'mlp'. Expected "
            f"[-1, 784], got {[1] * NUMPY_MAX_DIMS}"
        )


@pytest.mark.parametrize("rank", [NUMPY_MAX_DIMS + 1, 1000])
def test_validate_refuses_the_rank_too(http, rank):
    body = {"inputs": [{"name": "hidden_1_input", "shape": [1] * rank, "datatype": "FP32"}]}
    response = http.post("/v1/models/mlp:validate", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["problems"] == [
        f"input 'hidden_1_input': expected rank 2 (shape [-1, 784]), received rank {rank} "
        f"(shape {[1] * rank})"
    ]


@settings(max_examples=25, deadline=None)
@given(
    dims=st.lists(st.integers(2**31, 2**64 - 1), min_size=1, max_size=4),  # uint64
    datatype=st.sampled_from(["FP32", "BYTES"]),
)
def test_an_empty_tensor_whose_other_dimensions_numpy_cannot_address_is_a_400(http, dims, datatype):
    """A zero dimension makes the byte count 0, but NumPy still needs the other
    dimensions' product to fit its address space (a ValueError, a 500, before)."""
    shape = [0, *dims]
    itemsize = 4 if datatype == "FP32" else np.dtype(object).itemsize
    model, name = ("mlp", MLP_INPUT) if datatype == "FP32" else ("identity_bytes", TEXT_INPUT)
    response = http.post(f"/v2/models/{model}/infer", **v2_json(name[0], shape, datatype, []))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    if math.prod(dims) * itemsize > np.iinfo(np.intp).max:
        assert error == (
            f"input '{name[0]}' for model '{model}' has shape {shape}, whose dimensions "
            f"describe more than {np.iinfo(np.intp).max} bytes; expected a shape like "
            f"{name[1]}"
        )
    else:  # NumPy holds it; the model's shape check refuses it
        assert error.startswith(f"unexpected shape for input '{name[0]}' for model '{model}'")


# ---- float overflow in JSON -----------------------------------------------------------
FP32_MAX = float(np.finfo(np.float32).max)
FP16_MAX = float(np.finfo(np.float16).max)


def overflow_error(where: str, value: str, datatype: str, largest: float) -> str:
    return (
        f"{where}: value {value} does not fit {datatype}: finite {datatype} values are at "
        f"most {largest:g} in magnitude"
    )


@pytest.mark.parametrize(
    ("data", "shown"),
    [([3.5e38, 0.0, 1.0], "3.5e+38"), ([0.0, -1e39, 2.0], "-1e+39"), ([1.5, 1e300, 0], "1e+300")],
)
def test_a_finite_json_number_beyond_fp32_is_a_400(http, data, shown):
    response = http.post("/v2/models/identity_fp32/infer", **v2_json("x", [1, 3], "FP32", data))
    assert response.status_code == 400, response.text
    assert response.json() == {"error": overflow_error("input 'x'", shown, "FP32", FP32_MAX)}


def test_the_largest_finite_fp32_passes_exactly(http):
    data = [FP32_MAX, -FP32_MAX, float(np.finfo(np.float32).tiny)]
    response = http.post("/v2/models/identity_fp32/infer", **v2_json("x", [1, 3], "FP32", data))
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(
        np.asarray(response.json()["outputs"][0]["data"], np.float32), np.float32(data)
    )


@pytest.mark.parametrize(("value", "shown"), [(70000, "70000"), (-65520.0, "-65520.0")])
def test_tf_serving_refuses_a_number_beyond_fp16(http, value, shown):
    """Integers too (70000 was turned into infinity before)."""
    body = {"instances": [[value, 1, 65504]]}
    response = http.post("/v1/models/identity_fp16:predict", json=body)
    assert response.status_code == 400, response.text
    where = "input 'x' of model 'identity_fp16'"
    assert response.json() == {"error": overflow_error(where, shown, "FP16", FP16_MAX)}


def test_tf_serving_passes_the_largest_fp16(http):
    response = http.post("/v1/models/identity_fp16:predict", json={"instances": [[65504, -1, 2]]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [[65504.0, -1.0, 2.0]]}


# ---- NaN and infinities in JSON --------------------------------------------------------
SPECIAL = np.array([[np.nan, np.inf, -np.inf], [1.5, -0.0, 2.0]], np.float32)
SPECIAL_JSON = b"[[NaN,Infinity,-Infinity],[1.5,-0.0,2.0]]"


def assert_special(values) -> None:
    np.testing.assert_array_equal(np.asarray(values, np.float32), SPECIAL)


def test_v2_json_outputs_write_nan_and_infinity_tokens(http):
    """Binary in, JSON out: the tokens Triton writes, read back exactly by ``json``."""
    args = v2_binary("x", [2, 3], "FP32", SPECIAL.astype("<f4").tobytes())
    response = http.post("/v2/models/identity_fp32/infer", **args)
    assert response.status_code == 200, response.text
    assert b'"data":[NaN,Infinity,-Infinity,1.5,-0.0,2.0]' in response.content
    assert_special(np.reshape(json.loads(response.content)["outputs"][0]["data"], (2, 3)))


def test_v2_json_inputs_accept_the_tokens(http):
    header = b'{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":'
    response = http.post(
        "/v2/models/identity_fp32/infer",
        content=header + SPECIAL_JSON + b"}]}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert_special(np.reshape(json.loads(response.content)["outputs"][0]["data"], (2, 3)))


@pytest.mark.parametrize("binary_input", [False, True])
def test_tritonclient_round_trips_nan_and_infinities_through_json(url, binary_input):
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    try:
        tensor = triton.InferInput("x", [2, 3], "FP32")
        tensor.set_data_from_numpy(SPECIAL, binary_data=binary_input)
        requested = [triton.InferRequestedOutput("y", binary_data=False)]
        result = client.infer("identity_fp32", [tensor], outputs=requested)
        assert_special(result.as_numpy("y"))
    finally:
        client.close()


@pytest.mark.parametrize("model", ["identity_fp32", "identity_fp16"])
def test_tf_serving_reads_and_writes_the_tokens(http, model):
    response = http.post(
        f"/v1/models/{model}:predict",
        content=b'{"instances": ' + SPECIAL_JSON + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.content == b'{"predictions":' + SPECIAL_JSON + b"}"
    assert_special(json.loads(response.content)["predictions"])
