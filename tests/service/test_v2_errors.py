"""The V2 API's answers to requests that are not inference requests, or whose tensors do
not fit the model, on a real uvicorn: the status, and an ``{"error": ...}`` body naming
what was expected and what was received; never a 500. Bodies, the binary extension and
routes: test_v2_body_errors.py; 503 and 504: test_v2_queue_errors.py."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException
from v2_mistakes import (
    BYTES_ID,
    MLP,
    assert_clear_error,
    case,
    error_server,
    mlp_input,
    two_rows,
    x_input,
)

pytestmark = pytest.mark.parallel_safe  # no timing: each answer is what is checked


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with error_server(tmp_path_factory.mktemp("error_repository")) as server:
        yield server


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=30) as session:
        yield session


CLIENT_MISTAKES = {
    # -- the body is not an inference request
    "malformed JSON": case(
        MLP, 400, "failed to parse the request JSON", content=b'{"inputs": [', headers={}
    ),
    "body not an object": case(MLP, 400, "JSON object with an 'inputs' array", [1, 2]),
    "missing inputs": case(MLP, 400, "'inputs' array", {"outputs": []}),
    "empty inputs": case(
        MLP, 400, ["expected 1 inputs but got 0", "missing: ['hidden_1_input']"], {"inputs": []}
    ),
    "inputs not an array": case(MLP, 400, "'inputs' array", {"inputs": {"a": 1}}),
    "input not an object": case(
        MLP, 400, "each entry of 'inputs' must be an object", {"inputs": [3]}
    ),
    "missing name": case(MLP, 400, "no 'name'", {"inputs": [mlp_input(name=None)]}),
    "missing shape": case(
        MLP, 400, ["'hidden_1_input' needs 'shape'", "None"], {"inputs": [mlp_input(shape=None)]}
    ),
    "negative shape": case(
        MLP, 400, ["non-negative integers", "[-1, 784]"], {"inputs": [mlp_input(shape=[-1, 784])]}
    ),
    "shape of strings": case(MLP, 400, "'shape'", {"inputs": [mlp_input(shape=["1", "784"])]}),
    "missing datatype": case(
        MLP, 400, "'hidden_1_input' has no 'datatype'", {"inputs": [mlp_input(datatype=None)]}
    ),
    "unknown datatype": case(
        MLP,
        400,
        ["unsupported datatype 'FLOAT'", "FP32"],
        {"inputs": [mlp_input(datatype="FLOAT")]},
    ),
    "missing data": case(
        MLP, 400, "'hidden_1_input' has neither 'data'", {"inputs": [mlp_input(data=None)]}
    ),
    "data not an array": case(
        MLP, 400, ["'hidden_1_input'", "must be a JSON array"], {"inputs": [mlp_input(data=0.5)]}
    ),
    "id not a string": case(MLP, 400, "'id' must be a string", {"id": 7, "inputs": [mlp_input()]}),
    "parameters not an object": case(
        MLP, 400, "'parameters' of the request", {"parameters": [1], "inputs": [mlp_input()]}
    ),
    "input parameters not an object": case(
        MLP, 400, "'parameters' of the input", {"inputs": [mlp_input(parameters="x")]}
    ),
    "binary_data_output not a bool": case(
        MLP,
        400,
        ["binary_data_output", "'yes'"],
        {"parameters": {"binary_data_output": "yes"}, "inputs": [mlp_input()]},
    ),
    "timeout not an integer": case(
        MLP,
        400,
        ["'timeout'", "microseconds", "'soon'"],
        {"parameters": {"timeout": "soon"}, "inputs": [mlp_input()]},
    ),
    "input given twice": case(
        MLP, 400, "'hidden_1_input' is given more than once", {"inputs": [mlp_input()] * 2}
    ),
    # -- the tensors do not fit the model (Triton's wording)
    "wrong shape": case(
        MLP,
        400,
        ["unexpected shape for input 'hidden_1_input' for model 'mlp'", "Expected [-1, 784]"],
        {"inputs": [mlp_input(shape=[1, 783], data=[0.0] * 783)]},
    ),
    "missing batch dimension": case(
        MLP,
        400,
        ["Expected [-1, 784], got [784]", "first dimension is the batch", "shape [1, 784]"],
        {"inputs": [mlp_input(shape=[784])]},
    ),
    "wrong datatype": case(
        MLP,
        400,
        ["data-type is 'FP64', model expects 'FP32'", "'hidden_1_input'"],
        {"inputs": [mlp_input(datatype="FP64")]},
    ),
    "data shorter than shape": case(
        MLP,
        400,
        ["'hidden_1_input'", "shape [2, 784] needs 1568 elements, 'data' has 784"],
        {"inputs": [mlp_input(shape=[2, 784])]},
    ),
    "ragged data": case(
        "/v2/models/identity_fp32/infer",
        400,
        ["input 'x'", "not a regular array of FP32"],
        {"inputs": [x_input("FP32", [[1.0, 2.0], [3.0]], shape=(1, 3))]},
    ),
    # text as numbers: nested lists are an array's rows, never re-flowed into the shape
    "ragged BYTES data": case(
        BYTES_ID,
        400,
        ["input 'x'", "not a regular array of BYTES"],
        {"inputs": [x_input("BYTES", [["a", "b"], ["c", "d", "e", "f"]], shape=(2, 3))]},
    ),
    "BYTES data mixing lists and strings": case(
        BYTES_ID,
        400,
        ["input 'x'", "not a regular array of BYTES"],
        {"inputs": [x_input("BYTES", [["a", "b", "c"], "d", "e", "f"], shape=(2, 3))]},
    ),
    "unknown input": case(
        MLP,
        400,
        ["model 'mlp'", "missing: ['hidden_1_input']", "unexpected: ['pixels']"],
        {"inputs": [mlp_input(name="pixels")]},
    ),
    "extra input": case(
        "/v2/models/hadamard/infer",
        400,
        ["unexpected inference input 'centre' for model 'hadamard'", "['left', 'right']"],
        {
            "inputs": [
                {"name": n, "shape": [1, 8], "datatype": "FP32", "data": [0.0] * 8}
                for n in ("left", "right", "centre")
            ]
        },
    ),
    "missing one of two inputs": case(
        "/v2/models/hadamard/infer",
        400,
        ["expected 2 inputs but got 1", "missing: ['right']"],
        {"inputs": [two_rows()[0]]},
    ),
    "batch sizes disagree": case(
        "/v2/models/hadamard/infer",
        400,
        ["batch size does not match other inputs for 'hadamard'", "1 vs 2"],
        {"inputs": two_rows()},
    ),
    "unknown output": case(
        MLP,
        400,
        ["unexpected inference output 'logits' for model 'mlp'", "['probabilities']"],
        {"inputs": [mlp_input()], "outputs": [{"name": "logits"}]},
    ),
    "output without name": case(
        MLP, 400, "requested output needs a 'name'", {"inputs": [mlp_input()], "outputs": [{}]}
    ),
    "outputs not an array": case(
        MLP, 400, "'outputs' must be an array", {"inputs": [mlp_input()], "outputs": "all"}
    ),
    "binary_data not a bool": case(
        MLP,
        400,
        ["binary_data", "of the output 'probabilities'"],
        {
            "inputs": [mlp_input()],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": 1}}],
        },
    ),
    "classification asked": case(
        MLP,
        501,
        "classification extension is not supported",
        {
            "inputs": [mlp_input()],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}],
        },
    ),
    "batch over max_batch_size": case(
        MLP,
        400,
        ["batch-size must be <= 8 for 'mlp'", "got 9"],
        {"inputs": [mlp_input(rows=9)]},
    ),
    # -- datatypes in JSON
    "FP16 in JSON": case(
        "/v2/models/identity_fp16/infer",
        400,
        ["input 'x'", "FP16 data via JSON is not supported", "binary"],
        {"inputs": [x_input("FP16", [1.0, 2.0, 3.0])]},
    ),
    "BF16": case(
        "/v2/models/identity_fp16/infer",
        400,
        ["input 'x'", "BF16 is not supported"],
        {"inputs": [x_input("BF16", [1.0, 2.0, 3.0])]},
    ),
    "INT8 out of range": case(
        "/v2/models/identity_int8/infer",
        400,
        ["input 'x'", "value 300 is out of range for INT8 [-128, 127]"],
        {"inputs": [x_input("INT8", [1, 300, 3])]},
    ),
    # orjson reads an integer past 64 bits as a float: refused as out of range; a float
    # written within the range is refused as no integer
    "UINT64 past its range": case(
        "/v2/models/identity_uint64/infer",
        400,
        ["input 'x'", "value 1.8446744073709552e+19 is out of range for UINT64"],
        content=b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "UINT64", '
        b'"data": [1, 18446744073709551616, 3]}]}',
    ),
    "UINT64 given a float within its range": case(
        "/v2/models/identity_uint64/infer",
        400,
        ["input 'x'", "JSON integers for datatype UINT64, got 1e+19"],
        {"inputs": [x_input("UINT64", [1, 1e19, 3])]},
    ),
    "UINT64 given true beside a large integer": case(
        "/v2/models/identity_uint64/infer",
        400,
        ["input 'x'", "JSON integers for datatype UINT64, got true"],
        content=b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "UINT64", '
        b'"data": [true, 18446744073709551615, 3]}]}',
    ),
    "INT8 given a fraction": case(
        "/v2/models/identity_int8/infer",
        400,
        ["input 'x'", "JSON integers for datatype INT8"],
        {"inputs": [x_input("INT8", [1, 2.5, 3])]},
    ),
    "FP32 given strings": case(
        "/v2/models/identity_fp32/infer",
        400,
        ["input 'x'", "JSON numbers for datatype FP32, got strings"],
        {"inputs": [x_input("FP32", ["1", "2", "3"])]},
    ),
    "BOOL given integers": case(
        "/v2/models/identity_bool/infer",
        400,
        ["input 'x'", "true/false for datatype BOOL, got integers"],
        {"inputs": [x_input("BOOL", [1, 0, 1])]},
    ),
    "BYTES given numbers": case(
        BYTES_ID,
        400,
        ["input 'x'", "BYTES 'data' must hold JSON strings, got 2"],
        {"inputs": [x_input("BYTES", ["a", 2, "c"])]},
    ),
    "BYTES nested too deep": case(
        BYTES_ID,
        400,
        ["input 'x'", "nested deeper than 64"],
        {"inputs": [x_input("BYTES", json.loads("[" * 120 + "]" * 120))]},
    ),
    "FP32 nested too deep": case(
        "/v2/models/identity_fp32/infer",
        400,
        ["input 'x'", "not a regular array of FP32"],
        {"inputs": [x_input("FP32", json.loads("[" * 120 + "1.0" + "]" * 120))]},
    ),
}


@pytest.mark.parametrize("name", CLIENT_MISTAKES)
def test_client_mistakes_get_a_clear_error_and_never_a_500(http, name):
    assert_clear_error(http, CLIENT_MISTAKES[name])


def test_tritonclient_sees_the_status_and_the_message(url):
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    request = triton.InferInput("hidden_1_input", [784], "FP32")
    request.set_data_from_numpy(np.zeros(784, np.float32))
    with pytest.raises(InferenceServerException) as error:
        client.infer("mlp", [request])
    assert error.value.status() == "400"
    assert "Expected [-1, 784], got [784]" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata("mlp", model_version="9")
    assert error.value.status() == "404" and "['1']" in error.value.message()
