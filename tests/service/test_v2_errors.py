"""Every error path of the V2 API on a real uvicorn: the status, and an ``{"error": ...}``
body naming what was expected and what was received. One table of client mistakes (none
may ever be a 500), then the 413 limits, 503 + Retry-After when not ready or the queue is
full, and 504 queue timeouts, each made deterministic by the batcher's queue delay."""

from __future__ import annotations

import gzip
import json
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from grpc_test_models import ONNX, write_identity
from live_server import pending, running_server, write_model
from tritonclient.utils import InferenceServerException

from layerserve import examples
from layerserve.service.settings import Settings

LIMIT = 256 * 1024  # the server's max_request_bytes
# Queue behaviour made deterministic: with max_queue_delay_us the batcher keeps the
# oldest request queued until the delay has passed (or max_batch_size rows are queued).
QUEUE_TIMEOUT = {"max_batch_size": 8, "max_queue_delay_us": 300_000, "queue_timeout_ms": 1}
DELAYED = {"max_batch_size": 8, "max_queue_delay_us": 200_000}
TINY_QUEUE = {"max_batch_size": 8, "max_queue_delay_us": 600_000, "max_queue_size": 1}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("error_repository")
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 8})
    write_model(root, "hadamard", examples.hadamard_model())
    for datatype in ONNX:
        write_identity(root, f"identity_{datatype.lower()}", datatype)
    write_identity(root, "queue_timeout", "FP32", QUEUE_TIMEOUT)
    write_identity(root, "delayed", "FP32", DELAYED)
    write_identity(root, "expiring", "FP32", DELAYED)
    write_identity(root, "tiny_queue", "FP32", TINY_QUEUE)
    write_identity(root, "fixed", "FP32", {"max_batch_size": 0}, shape=(2, 3))
    with running_server(Settings(model_repository=root, max_request_bytes=LIMIT)) as server:
        yield server


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=30) as session:
        yield session


# ---- request builders -----------------------------------------------------------------
def mlp_input(rows: int = 1, **changes) -> dict:
    entry = {
        "name": "hidden_1_input",
        "shape": [rows, 784],
        "datatype": "FP32",
        "data": [0.25] * (rows * 784),
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def x_input(datatype: str, data, shape=(1, 3), **changes) -> dict:
    return {"name": "x", "shape": list(shape), "datatype": datatype, "data": data, **changes}


def binary(document: dict, tail: bytes, header: int | str | None = None) -> dict:
    head = json.dumps(document).encode()
    length = len(head) if header is None else header
    return {"content": head + tail, "headers": {"Inference-Header-Content-Length": str(length)}}


def chunked(size: int):
    def stream():
        sent = 0
        while sent < size:
            yield b" " * 16384
            sent += 16384

    return stream()


def two_rows() -> list[dict]:
    return [
        {"name": "left", "shape": [2, 8], "datatype": "FP32", "data": [1.0] * 16},
        {"name": "right", "shape": [1, 8], "datatype": "FP32", "data": [1.0] * 8},
    ]


@dataclass
class Case:
    path: str
    status: int
    says: tuple[str, ...]
    json: object = None
    content: object = None
    headers: dict | list = field(default_factory=dict)
    method: str = "POST"


def case(path: str, status: int, says, body=None, **kwargs) -> Case:
    if body is not None:
        kwargs = {**kwargs, "json": body}
    return Case(path, status, tuple(says) if isinstance(says, list) else (says,), **kwargs)


MLP = "/v2/models/mlp/infer"
BYTES_ID = "/v2/models/identity_bytes/infer"
FP32_BINARY = {"name": "hidden_1_input", "shape": [1, 784], "datatype": "FP32"}

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
    mistake = CLIENT_MISTAKES[name]
    response = http.request(
        mistake.method,
        mistake.path,
        json=mistake.json,
        content=mistake.content,
        headers=mistake.headers,
    )
    assert response.status_code == mistake.status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    for fragment in mistake.says:
        assert fragment in body["error"], body["error"]
    # The connection and the server survive every mistake.
    assert http.get("/v2/health/live").json() == {"live": True}


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


# ---- 503 when not ready -----------------------------------------------------------------
def test_not_ready_server_answers_503_with_retry_after(tmp_path):
    """A model that cannot load keeps the server live but not ready."""
    write_model(tmp_path, "mlp", examples.mlp(), "1", {"max_batch_size": 8})
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"this is not an ONNX file")
    with running_server(Settings(model_repository=tmp_path), wait_ready=False) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_live() and not client.is_server_ready()
        with httpx.Client(base_url=url) as http:
            ready = http.get("/v2/health/ready")
            assert ready.status_code == 503 and ready.headers["retry-after"].isdigit()
            assert "not ready" in ready.json()["error"]
            for response in (
                http.get("/v2/models/broken/ready"),
                http.get("/v2/models/broken"),
                http.post("/v2/models/broken/infer", json={"inputs": [mlp_input()]}),
            ):
                assert response.status_code == 503 and response.headers["retry-after"]
                message = response.json()["error"]
                assert "'broken' has no available versions" in message
                assert "cannot load" in message and "model.onnx" in message
            # The models that loaded keep serving.
            x = np.full((1, 784), 0.25, np.float32)
            response = http.post("/v2/models/mlp/infer", json={"inputs": [mlp_input()]})
            np.testing.assert_allclose(
                response.json()["outputs"][0]["data"],
                examples.mlp().predict(x).reshape(-1),
                atol=1e-5,
            )
            index = http.post("/v2/repository/index").json()
            broken = next(e for e in index if e["name"] == "broken")
            assert broken["state"] == "UNAVAILABLE" and "cannot load" in broken["reason"]


# ---- 504 queue timeouts -----------------------------------------------------------------
def wait_until_queued(url: str, model: str) -> None:
    """Until a request waits in ``model``'s queue (its pending gauge)."""
    deadline = time.monotonic() + 10
    while pending(httpx.get(url + "/metrics").text, model) < 1:
        assert time.monotonic() < deadline, "the first request was never queued"
        time.sleep(0.01)


def identity_request(value: float, **parameters) -> dict:
    document = {"inputs": [x_input("FP32", [value, value + 1, value + 2])]}
    if parameters:
        document["parameters"] = parameters
    return document


def test_queue_timeout_is_a_504(http):
    """queue_timeout_ms 1 while the batcher holds the request up to 300 ms for more
    rows: the request is still queued when its timeout passes."""
    response = http.post("/v2/models/queue_timeout/infer", json=identity_request(1.0))
    assert response.status_code == 504
    assert list(response.json()) == ["error"]
    assert "'queue_timeout' timed out after waiting" in response.json()["error"]


def test_request_timeout_parameter_shortens_the_queue_timeout(url, http):
    """The model's timeout is 30 s; a request's ``timeout`` (µs) below the 200 ms queue
    delay expires, one above it is served."""
    expired = http.post("/v2/models/delayed/infer", json=identity_request(1.0, timeout=1000))
    assert expired.status_code == 504
    assert "'delayed' timed out" in expired.json()["error"]
    served = http.post("/v2/models/delayed/infer", json=identity_request(1.0, timeout=5_000_000))
    assert served.status_code == 200
    assert served.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0]
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    request = triton.InferInput("x", [1, 3], "FP32")
    request.set_data_from_numpy(np.array([[4.0, 5.0, 6.0]], np.float32))
    with pytest.raises(InferenceServerException) as error:
        client.infer("delayed", [request], timeout=1000)
    assert error.value.status() == "504"


def test_a_request_expiring_behind_another_leaves_the_queue_serving(url):
    """A request queued behind another runs out of time first: it gets its 504, and the
    one ahead of it, and every later request, are still served (dropping it once stopped
    the model's queue for good, so that every later request waited out its client)."""

    def send(value: float, **parameters) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=10) as http:
            document = identity_request(value, **parameters)
            return http.post("/v2/models/expiring/infer", json=document)

    with ThreadPoolExecutor(2) as pool:
        ahead = pool.submit(send, 10.0)
        wait_until_queued(url, "expiring")
        behind = pool.submit(send, 20.0, timeout=1000)
        expired, served = behind.result(), ahead.result()
    assert expired.status_code == 504, expired.text
    assert "'expiring' timed out after waiting" in expired.json()["error"]
    assert served.status_code == 200, served.text
    assert served.json()["outputs"][0]["data"] == [10.0, 11.0, 12.0]
    later = send(30.0)
    assert later.status_code == 200, later.text
    assert later.json()["outputs"][0]["data"] == [30.0, 31.0, 32.0]


# ---- 503 queue full ---------------------------------------------------------------------
def test_queue_full_is_a_503_with_retry_after(url):
    """max_queue_size 1, and the batcher keeps the first request queued for 600 ms: the
    requests sent while it waits are refused, and the queued one is served."""

    def send(value: float) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30) as http:
            return http.post("/v2/models/tiny_queue/infer", json=identity_request(value))

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(send, 10.0)
        wait_until_queued(url, "tiny_queue")
        refused = [send(20.0), send(30.0)]
        served = first.result()
    assert served.status_code == 200, served.text
    assert served.json()["outputs"][0]["data"] == [10.0, 11.0, 12.0]
    for response in refused:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
        message = response.json()["error"]
        assert "'tiny_queue' exceeds maximum queue size 1" in message
