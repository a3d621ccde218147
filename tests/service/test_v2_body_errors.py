"""The V2 API's answers to mistakes in the binary tensor data extension, in the body's
encoding and size, and in models, versions and routes, on a real uvicorn: the status and
an ``{"error": ...}`` body naming what was expected and what was received; never a 500."""

from __future__ import annotations

import gzip
import struct
import zlib

import httpx
import numpy as np
import pytest
from v2_mistakes import (
    BYTES_ID,
    FP32_BINARY,
    LIMIT,
    MLP,
    assert_clear_error,
    binary,
    case,
    chunked,
    error_server,
    mlp_input,
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
    # -- the binary tensor data extension
    "header not a number": case(
        MLP,
        400,
        "invalid Inference-Header-Content-Length: 'abc'",
        **binary({"inputs": []}, b"", "abc"),
    ),
    "null among the numbers": case(
        MLP,
        400,
        "'data' must hold JSON numbers for datatype FP32, got null at element 2",
        {"inputs": [{**FP32_BINARY, "data": [0.5, 0.5, None] + [0.5] * 781}]},
    ),
    # NumPy reads [0.5, true] as [0.5, 1.0]: a boolean among numbers is named, not run
    "true among the numbers": case(
        MLP,
        400,
        "'data' must hold JSON numbers for datatype FP32, got true at element 3",
        {"inputs": [{**FP32_BINARY, "data": [[0.0, 1.0, 0.5, True] + [0.5] * 780]}]},
    ),
    "false among the integers": case(
        "/v2/models/identity_int8/infer",
        400,
        ["input 'x'", "JSON integers for datatype INT8, got false at element 1"],
        {"inputs": [x_input("INT8", [1, False, 3])]},
    ),
    "output requested twice": case(
        MLP,
        400,
        "output 'probabilities' is requested more than once",
        {
            "inputs": [{**FP32_BINARY, "data": [0.5] * 784}],
            "outputs": [{"name": "probabilities"}, {"name": "probabilities"}],
        },
    ),
    "priority not an integer": case(
        MLP,
        400,
        "request parameter 'priority' must be a non-negative integer, got 'hi'",
        {"inputs": [{**FP32_BINARY, "data": [0.5] * 784}], "parameters": {"priority": "hi"}},
    ),
    "header with a sign": case(
        MLP, 400, "invalid Inference-Header-Content-Length: '+2'", **binary({}, b"", "+2")
    ),
    "header of 5,000 digits": case(
        MLP, 400, "invalid Inference-Header-Content-Length", **binary({}, b"", "9" * 5000)
    ),
    "header with an underscore": case(
        MLP, 400, "invalid Inference-Header-Content-Length: '1_0'", **binary({}, b"", "1_0")
    ),
    "header given twice, differently": case(
        MLP,
        400,
        ["Inference-Header-Content-Length is given 2 times", "'2', '3'"],
        content=b"{}",
        headers=[
            ("Inference-Header-Content-Length", "2"),
            ("Inference-Header-Content-Length", "3"),
        ],
    ),
    "binary_data_size a string": case(
        MLP,
        400,
        ["'hidden_1_input'", "binary_data_size must be a non-negative integer", "got '3136'"],
        **binary(
            {"inputs": [{**FP32_BINARY, "parameters": {"binary_data_size": "3136"}}]},
            b"\0" * 3136,
        ),
    ),
    "binary_data_size true": case(
        MLP,
        400,
        ["'hidden_1_input'", "binary_data_size must be a non-negative integer", "got True"],
        **binary({"inputs": [{**FP32_BINARY, "parameters": {"binary_data_size": True}}]}, b"\0"),
    ),
    "data beside a binary_data_size": case(
        MLP,
        400,
        ["'hidden_1_input' has both 'data' and a binary_data_size", "one way"],
        **binary(
            {
                "inputs": [
                    {
                        **FP32_BINARY,
                        "data": [0.5] * 784,
                        "parameters": {"binary_data_size": 3136},
                    }
                ]
            },
            b"\0" * 3136,
        ),
    ),
    "header longer than body": case(
        MLP,
        400,
        ["Inference-Header-Content-Length 99999", "does not fit"],
        **binary({}, b"", 99999),
    ),
    "binary_data_size past the end": case(
        MLP,
        400,
        ["'hidden_1_input'", "binary_data_size 3136", "0 bytes of binary data left"],
        **binary({"inputs": [{**FP32_BINARY, "parameters": {"binary_data_size": 3136}}]}, b""),
    ),
    "binary_data_size not the tensor size": case(
        MLP,
        400,
        ["'hidden_1_input'", "binary_data_size 3132", "3136 bytes that FP32 [1, 784] takes"],
        **binary(
            {"inputs": [{**FP32_BINARY, "parameters": {"binary_data_size": 3132}}]}, b"\0" * 3132
        ),
    ),
    "binary bytes no input claims": case(
        MLP,
        400,
        "8 bytes of binary data that no input claims",
        **binary({"inputs": [mlp_input()]}, b"\0" * 8),
    ),
    "BYTES element not UTF-8": case(
        BYTES_ID,
        400,
        ["input 'x'", "not valid UTF-8"],
        **binary(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 3],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 15},
                    }
                ]
            },
            b"".join(struct.pack("<I", 1) + c for c in (b"a", b"\xff", b"c")),
        ),
    ),
    "BYTES length prefix truncated": case(
        BYTES_ID,
        400,
        ["input 'x'", "truncated BYTES element length"],
        **binary(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 3],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 7},
                    }
                ]
            },
            struct.pack("<I", 1) + b"a" + b"\0\0",
        ),
    ),
    "BYTES element count": case(
        BYTES_ID,
        400,
        ["input 'x'", "holds 1 BYTES elements but shape [1, 3] needs 3"],
        **binary(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 3],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 6},
                    }
                ]
            },
            struct.pack("<I", 2) + b"ab",
        ),
    ),
    "raw binary, two-input model": case(
        "/v2/models/hadamard/infer",
        400,
        ["exactly one input", "'hadamard' has 2"],
        content=b"\0" * 64,
        headers={"Inference-Header-Content-Length": "0"},
    ),
    "raw binary, size not whole rows": case(
        MLP,
        400,
        ["cannot deduce the shape of input 'hidden_1_input' [-1, 784]", "from 10 bytes"],
        content=b"\0" * 10,
        headers={"Inference-Header-Content-Length": "0"},
    ),
    # no dimension to deduce: a body of whole multiples of the input is no input either
    "raw binary, fixed shape, twice its bytes": case(
        "/v2/models/fixed/infer",
        400,
        ["cannot deduce the shape of input 'x' [2, 3]", "from 48 bytes"],
        content=b"\0" * 48,
        headers={"Inference-Header-Content-Length": "0"},
    ),
    "raw binary, empty": case(
        MLP,
        400,
        ["needs the bytes of input 'hidden_1_input'", "empty"],
        content=b"",
        headers={"Inference-Header-Content-Length": "0"},
    ),
    # -- bodies: encoding and size
    "unknown Content-Encoding": case(
        MLP,
        400,
        ["unsupported Content-Encoding 'br'", "gzip or deflate"],
        content=b"{}",
        headers={"Content-Encoding": "br"},
    ),
    "corrupt gzip": case(
        MLP,
        400,
        "gzip body cannot be decompressed",
        content=b"\x1f\x8b not really gzip",
        headers={"Content-Encoding": "gzip"},
    ),
    # two rows of the MLP's raw input, compressed, cut before the stream's end: what
    # inflates is the first row whole, a request that would parse as one row
    "gzip body cut short": case(
        MLP,
        400,
        "the gzip body is truncated: its compressed stream does not end",
        content=gzip.compress(np.ones((2, 784), "<f4").tobytes())[:-8],
        headers={"Content-Encoding": "gzip", "Inference-Header-Content-Length": "0"},
    ),
    # 64 members pass; a body of a thousand empty ones is refused at once, not read
    # member by member
    "gzip body of too many members": case(
        MLP,
        400,
        "the gzip body holds more than 64 members",
        content=gzip.compress(b"") * 1000,
        headers={"Content-Encoding": "gzip", "Inference-Header-Content-Length": "0"},
    ),
    "bytes after the deflate stream": case(
        MLP,
        400,
        "the deflate body goes on for 4 bytes after its compressed stream ends",
        content=zlib.compress(np.ones((1, 784), "<f4").tobytes()) + b"junk",
        headers={"Content-Encoding": "deflate", "Inference-Header-Content-Length": "0"},
    ),
    "Content-Length over the limit": case(
        MLP,
        413,
        [f"request body of {LIMIT + 1} bytes exceeds the maximum allowed input size of {LIMIT}"],
        content=b" " * (LIMIT + 1),
    ),
    "chunked body over the limit": case(
        MLP,
        413,
        f"request body exceeds the maximum allowed input size of {LIMIT} bytes",
        content=chunked(LIMIT + 16384),
    ),
    "gzip bomb": case(
        MLP,
        413,
        f"decompressed request exceeds the maximum allowed input size of {LIMIT} bytes",
        content=gzip.compress(b" " * (64 * LIMIT)),
        headers={"Content-Encoding": "gzip"},
    ),
    "declared shape too large (JSON)": case(
        MLP,
        413,
        [
            "input 'hidden_1_input' of shape [1000000000, 784]",
            "3136000000000 bytes",
            f"maximum allowed input size of {LIMIT} bytes",
        ],
        {"inputs": [mlp_input(shape=[10**9, 784], data=[])]},
    ),
    "declared shape too large (binary)": case(
        MLP,
        413,
        ["input 'hidden_1_input' of shape [4096, 784]", "12845056 bytes"],
        **binary(
            {
                "inputs": [
                    {**FP32_BINARY, "shape": [4096, 784], "parameters": {"binary_data_size": 4}}
                ]
            },
            b"\0" * 4,
        ),
    ),
    # -- models, versions and routes
    "unknown model (infer)": case(
        "/v2/models/resnet/infer",
        404,
        "Request for unknown model: 'resnet' is not found",
        {"inputs": [mlp_input()]},
    ),
    "unknown model (metadata)": case(
        "/v2/models/resnet", 404, "'resnet' is not found", method="GET"
    ),
    "unknown model (ready)": case(
        "/v2/models/resnet/ready", 404, "'resnet' is not found", method="GET"
    ),
    "unknown version (infer)": case(
        "/v2/models/mlp/versions/2/infer",
        404,
        ["'mlp' version 2 is not found", "available versions: ['1']"],
        {"inputs": [mlp_input()]},
    ),
    "unknown version (metadata)": case(
        "/v2/models/mlp/versions/latest",
        404,
        ["version latest is not found", "['1']"],
        method="GET",
    ),
    "unknown route": case("/v2/modelz", 404, "no route for GET /v2/modelz", method="GET"),
    "wrong method": case(
        MLP, 405, [f"method GET is not allowed for {MLP}", "expected one of: POST"], method="GET"
    ),
    "index body not an object": case(
        "/v2/repository/index", 400, 'object like {"ready": true}', [True]
    ),
    "index ready not a boolean": case(
        "/v2/repository/index",
        400,
        "'ready' in the index request must be true or false, got 'yes'",
        {"ready": "yes"},
    ),
    "index body not JSON": case(
        "/v2/repository/index", 400, "failed to parse", content=b"ready", headers={}
    ),
    "load of '..'": case("/v2/repository/models/%2E%2E/load", 404, "'..' is not found"),
    "load with a config override": case(
        "/v2/repository/models/mlp/load",
        501,
        ["['config']", "not supported"],
        {"parameters": {"config": "{}"}},
    ),
}


@pytest.mark.parametrize("name", CLIENT_MISTAKES)
def test_client_mistakes_get_a_clear_error_and_never_a_500(http, name):
    assert_clear_error(http, CLIENT_MISTAKES[name])
