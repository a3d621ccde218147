"""The Open Inference Protocol (V2) end to end on a real uvicorn: tritonclient's HTTP
client unmodified (JSON, binary and mixed) on every demo model, the mask output of a
Masking+LSTM(return_sequences=True) model, requested outputs, ids and parameters, nested
and flat JSON, every datatype through small ONNX graphs, the binary tensor data extension
byte by byte, compressed bodies, and version addressing.

Expectations are independent of the service: the NumPy reference
(``model.predict``), hand-written values and a hand-written binary codec."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.http as triton
from live_server import running_server, write_model
from onnx import TensorProto, helper

from layerserve import examples, initializers
from layerserve.layers import LSTM, Dense, Masking
from layerserve.models import Sequential
from layerserve.service.settings import Settings

ATOL = 1e-5

# The V2 datatypes with their NumPy and ONNX types, written out independently of the
# service's own table.
NUMPY = {
    "BOOL": np.dtype(bool),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
ONNX = {
    "BOOL": TensorProto.BOOL,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}
# Two rows of three values per datatype, with each type's extremes.
SAMPLES = {
    "BOOL": [[True, False, True], [False, False, True]],
    "INT8": [[-128, 127, 0], [1, -1, 42]],
    "INT16": [[-32768, 32767, 0], [1, -1, 1234]],
    "INT32": [[-(2**31), 2**31 - 1, 0], [1, -1, 123456]],
    "INT64": [[-(2**63), 2**63 - 1, 0], [1, -1, 2**40]],
    "UINT8": [[0, 255, 1], [2, 3, 128]],
    "UINT16": [[0, 65535, 1], [2, 3, 40000]],
    "UINT32": [[0, 2**32 - 1, 1], [2, 3, 2**31]],
    "UINT64": [[0, 2**64 - 1, 1], [2, 3, 2**63]],
    "FP16": [[0.5, -2.0, 65504.0], [6.1e-05, -0.0, 0.099975586]],
    "FP32": [[1.1, -3.4028235e38, 1e-45], [0.1, -0.0, 123.456]],
    "FP64": [[0.1, 1.7976931348623157e308, 5e-324], [-1.5, -0.0, 2.0 / 3.0]],
    "BYTES": [["a", "é", ""], ["hello world", "✓ ünïcödé", "x" * 300]],
}


def sample(datatype: str) -> np.ndarray:
    return np.array(SAMPLES[datatype], dtype=NUMPY[datatype])


def identity_model(datatype: str) -> onnx.ModelProto:
    """``y = Identity(x)`` with x of shape [batch, 3]."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        f"identity_{datatype.lower()}",
        [helper.make_tensor_value_info("x", ONNX[datatype], ["batch", 3])],
        [helper.make_tensor_value_info("y", ONNX[datatype], ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def cast_model() -> onnx.ModelProto:
    """Three outputs of three datatypes from one INT32 input: FP16, FP64 and BOOL casts."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["half"], to=TensorProto.FLOAT16),
            helper.make_node("Cast", ["x"], ["double"], to=TensorProto.DOUBLE),
            helper.make_node("Cast", ["x"], ["nonzero"], to=TensorProto.BOOL),
        ],
        "casts",
        [helper.make_tensor_value_info("x", TensorProto.INT32, ["batch", 3])],
        [
            helper.make_tensor_value_info("half", TensorProto.FLOAT16, ["batch", 3]),
            helper.make_tensor_value_info("double", TensorProto.DOUBLE, ["batch", 3]),
            helper.make_tensor_value_info("nonzero", TensorProto.BOOL, ["batch", 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def first_mlp() -> Sequential:
    """Version 1 of "mlp": an older, smaller network with the demo MLP's signature."""
    return Sequential(
        [
            Dense(
                16,
                activation="relu",
                input_shape=(784,),
                kernel_initializer=initializers.glorot_uniform(seed=21),
                name="hidden_1",
            ),
            Dense(
                10,
                activation="softmax",
                kernel_initializer=initializers.glorot_uniform(seed=22),
                name="probabilities",
            ),
        ],
        name="mlp",
    )


def masked_sequences() -> Sequential:
    """Masking + LSTM(return_sequences=True): the output carries a Keras mask."""
    return Sequential(
        [
            Masking(0.0, input_shape=(5, 3), name="masking"),
            LSTM(
                4,
                return_sequences=True,
                kernel_initializer=initializers.glorot_uniform(seed=31),
                recurrent_initializer=initializers.Orthogonal(seed=32),
                name="lstm",
            ),
        ],
        name="masked_sequences",
    )


MODELS = {
    "mlp": examples.mlp,
    "conv_flatten": examples.conv_flatten,
    "masking_lstm": examples.masking_lstm,
    "hadamard": examples.hadamard_model,
    "masked_sequences": masked_sequences,
}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("v2_repository")
    write_model(root, "mlp", first_mlp(), "1", {"max_batch_size": 64})
    write_model(root, "mlp", examples.mlp(), "2")
    for name, build in MODELS.items():
        if name != "mlp":
            write_model(root, name, build())
    for datatype in NUMPY:
        target = root / f"identity_{datatype.lower()}" / "1" / "model.onnx"
        target.parent.mkdir(parents=True)
        onnx.save(identity_model(datatype), target)
    (root / "casts" / "1").mkdir(parents=True)
    onnx.save(cast_model(), root / "casts" / "1" / "model.onnx")
    with running_server(Settings(model_repository=root)) as server:
        yield server


@pytest.fixture(scope="module")
def client(url):
    return triton.InferenceServerClient(url.removeprefix("http://"))


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=30) as session:
        yield session


def inputs_of(name: str, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Named inputs of a demo model; sequences end in all-zero (masked) timesteps."""
    model = MODELS[name]()
    arrays = examples.example_inputs(model, batch=batch, seed=seed)
    names = {"hadamard": ["left", "right"]}.get(name, [f"{model.layers[0].name}_input"])
    return dict(zip(names, arrays, strict=True))


def reference(name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the NumPy reference computes, by output name (masks by hand)."""
    arrays = list(inputs.values())
    if name == "hadamard":
        product, total = examples.hadamard_model().predict(arrays)
        return {"hadamard": product, "hadamard_1": total}
    value = MODELS[name]().predict(arrays[0])
    output = {
        "mlp": "probabilities",
        "conv_flatten": "flatten",
        "masking_lstm": "lstm",
        "masked_sequences": "lstm",
    }[name]
    expected = {output: value}
    if name == "masked_sequences":
        expected["lstm_mask"] = np.any(arrays[0] != 0.0, axis=-1)
    return expected


def check(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    if expected.dtype == bool:
        assert actual.dtype == bool
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


# ---- hand-written binary tensor codec (the test's own, not the service's) -----------
def to_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        items = [str(v).encode() for v in array.reshape(-1)]
        return b"".join(struct.pack("<I", len(item)) + item for item in items)
    little = array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array).astype(little).tobytes()


def from_bytes(chunk: bytes, datatype: str, shape: list[int]) -> np.ndarray:
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(chunk):
            (length,) = struct.unpack_from("<I", chunk, offset)
            items.append(chunk[offset + 4 : offset + 4 + length].decode())
            offset += 4 + length
        return np.array(items, dtype=object).reshape(shape)
    little = NUMPY[datatype].newbyteorder("<")
    return np.frombuffer(chunk, dtype=little).astype(NUMPY[datatype]).reshape(shape)


def binary_request(document: dict, chunks: list[bytes]) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(document).encode()
    return header + b"".join(chunks), {"Inference-Header-Content-Length": str(len(header))}


def decode(response: httpx.Response) -> tuple[dict, dict[str, np.ndarray]]:
    """The response document and its outputs, JSON or binary, checked byte for byte."""
    assert response.status_code == 200, response.text
    length = response.headers.get("inference-header-content-length")
    body = response.content
    if length is None:
        assert response.headers["content-type"] == "application/json"
        document, offset = json.loads(body), len(body)
    else:
        assert response.headers["content-type"] == "application/octet-stream"
        document, offset = json.loads(body[: int(length)]), int(length)
    outputs = {}
    for entry in document["outputs"]:
        datatype, shape = entry["datatype"], entry["shape"]
        if "data" in entry:
            assert "binary_data_size" not in entry.get("parameters", {})
            values = np.array(entry["data"], dtype=NUMPY[datatype])
            outputs[entry["name"]] = values.reshape(shape)
        else:
            size = entry["parameters"]["binary_data_size"]
            outputs[entry["name"]] = from_bytes(body[offset : offset + size], datatype, shape)
            offset += size
    assert offset == len(body), "binary data that no output claims"
    return document, outputs


def json_input(name: str, array: np.ndarray, datatype: str, flat: bool = True) -> dict:
    data = array.reshape(-1).tolist() if flat else array.tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


# ---- server, health and metadata ----------------------------------------------------
def test_server_metadata_health_and_model_metadata(url, client, http):
    metadata = http.get("/v2").json()
    assert metadata["name"] == "layerserve" and metadata["version"]
    assert {"binary_tensor_data", "model_repository"} <= set(metadata["extensions"])
    assert client.get_server_metadata() == metadata
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert client.is_server_live() and client.is_server_ready()
    for name in [*MODELS, "casts"]:
        assert client.is_model_ready(name)
        assert http.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    assert client.get_model_metadata("masked_sequences") == {
        "name": "masked_sequences",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "masking_input", "datatype": "FP32", "shape": [-1, 5, 3]}],
        "outputs": [
            {"name": "lstm", "datatype": "FP32", "shape": [-1, 5, 4]},
            {"name": "lstm_mask", "datatype": "BOOL", "shape": [-1, 5]},
        ],
    }
    hadamard = client.get_model_metadata("hadamard")
    assert [(t["name"], t["shape"]) for t in hadamard["inputs"]] == [
        ("left", [-1, 8]),
        ("right", [-1, 8]),
    ]
    assert [(t["name"], t["shape"]) for t in hadamard["outputs"]] == [
        ("hadamard", [-1, 32]),
        ("hadamard_1", [-1]),
    ]


# ---- tritonclient, unmodified, on every demo model -----------------------------------
# (inputs sent binary?, outputs asked binary?); None: tritonclient's default (no
# requested outputs, so it sets binary_data_output and every output comes back binary).
MODES = {
    "json": (False, False),
    "binary": (True, None),
    "binary-in-json-out": (True, False),
    "json-in-binary-out": (False, True),
    "mixed": ("mixed", "mixed"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MODELS)
def test_tritonclient_infers_every_demo_model(client, name, mode):
    binary_in, binary_out = MODES[mode]
    inputs = inputs_of(name, batch=2, seed=len(mode))
    expected = reference(name, inputs)
    requests = []
    for index, (input_name, array) in enumerate(inputs.items()):
        request = triton.InferInput(input_name, list(array.shape), "FP32")
        binary = index % 2 == 0 if binary_in == "mixed" else binary_in
        request.set_data_from_numpy(array, binary_data=binary)
        requests.append(request)
    outputs = None
    if binary_out is not None:
        outputs = [
            triton.InferRequestedOutput(
                output, binary_data=index % 2 == 1 if binary_out == "mixed" else binary_out
            )
            for index, output in enumerate(expected)
        ]
    result = client.infer(name, requests, outputs=outputs)
    response = result.get_response()
    assert response["model_name"] == name
    assert response["model_version"] == ("2" if name == "mlp" else "1")
    assert "id" not in response
    if outputs is None:  # the model's own outputs; a mask only when asked for
        expected = {k: v for k, v in expected.items() if not k.endswith("_mask")}
    assert [o["name"] for o in response["outputs"]] == list(expected)
    for output, value in expected.items():
        check(result.as_numpy(output), value)
        entry = result.get_output(output)
        assert entry["datatype"] == ("BOOL" if value.dtype == bool else "FP32")
        assert entry["shape"] == list(value.shape)


def test_masked_sequence_output_serves_its_mask(client):
    """The BOOL ``lstm_mask`` output, asked for, is False exactly on the all-zero
    timesteps."""
    x = np.random.default_rng(3).standard_normal((3, 5, 3)).astype(np.float32)
    x[0, 2:] = 0.0
    x[1, 4:] = 0.0
    x[2, 1] = 0.0  # a masked step in the middle
    request = triton.InferInput("masking_input", [3, 5, 3], "FP32")
    request.set_data_from_numpy(x)
    assert [
        o["name"] for o in client.infer("masked_sequences", [request]).get_response()["outputs"]
    ] == ["lstm"]  # without asking, the model's own output only
    asked = [triton.InferRequestedOutput("lstm"), triton.InferRequestedOutput("lstm_mask")]
    result = client.infer("masked_sequences", [request], outputs=asked)
    np.testing.assert_array_equal(
        result.as_numpy("lstm_mask"),
        [[True, True, False, False, False], [True] * 4 + [False], [True, False, True, True, True]],
    )
    check(result.as_numpy("lstm"), masked_sequences().predict(x))


@pytest.mark.parametrize(
    ("name", "requested"),
    [
        ("hadamard", ["hadamard_1"]),
        ("hadamard", ["hadamard"]),
        ("hadamard", ["hadamard_1", "hadamard"]),
        ("masked_sequences", ["lstm_mask"]),
        ("casts", ["double"]),
    ],
)
def test_requested_outputs_return_exactly_that_subset(http, name, requested):
    if name == "casts":
        x = np.array([[0, 7, -3]], dtype=np.int32)
        inputs, expected = {"x": x}, {"double": x.astype(np.float64)}
        datatype = "INT32"
    else:
        inputs, expected, datatype = inputs_of(name), None, "FP32"
        expected = reference(name, inputs)
    document = {
        "inputs": [json_input(n, a, datatype) for n, a in inputs.items()],
        "outputs": [{"name": n} for n in requested],
    }
    response, outputs = decode(http.post(f"/v2/models/{name}/infer", json=document))
    assert [o["name"] for o in response["outputs"]] == requested
    for output in requested:
        check(outputs[output], expected[output])


def test_request_id_is_echoed_only_when_given(client, http):
    inputs = inputs_of("mlp", batch=1)
    request = triton.InferInput("hidden_1_input", [1, 784], "FP32")
    request.set_data_from_numpy(inputs["hidden_1_input"])
    assert client.infer("mlp", [request], request_id="req-42").get_response()["id"] == "req-42"
    assert "id" not in client.infer("mlp", [request]).get_response()
    document = {
        "id": "",
        "inputs": [json_input("hidden_1_input", inputs["hidden_1_input"], "FP32")],
    }
    assert http.post("/v2/models/mlp/infer", json=document).json()["id"] == ""


def test_request_and_input_parameters_are_accepted(client, http):
    inputs = inputs_of("hadamard", seed=5)
    expected = reference("hadamard", inputs)
    requests = []
    for name, array in inputs.items():
        request = triton.InferInput(name, list(array.shape), "FP32")
        request.set_data_from_numpy(array, binary_data=False)
        requests.append(request)
    result = client.infer(
        "hadamard",
        requests,
        parameters={"trace": "abc", "temperature": 0.5, "n": 3, "flag": True},
        priority=1,
        timeout=10_000_000,
    )
    for output, value in expected.items():
        check(result.as_numpy(output), value)
    document = {
        "parameters": {"content_type": "np", "custom": "x"},
        "inputs": [
            {**json_input(n, a, "FP32"), "parameters": {"content_type": "np"}}
            for n, a in inputs.items()
        ],
        "outputs": [{"name": "hadamard_1", "parameters": {"custom": 1}}],
    }
    _, outputs = decode(http.post("/v2/models/hadamard/infer", json=document))
    check(outputs["hadamard_1"], expected["hadamard_1"])


def test_binary_data_output_parameter_and_per_output_override(http):
    inputs = inputs_of("hadamard", seed=6)
    expected = reference("hadamard", inputs)
    document = {
        "parameters": {"binary_data_output": True},
        "inputs": [json_input(n, a, "FP32") for n, a in inputs.items()],
    }
    response = http.post("/v2/models/hadamard/infer", json=document)
    header, outputs = decode(response)
    assert all("data" not in o for o in header["outputs"])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [2 * 32 * 4, 2 * 4]
    for output, value in expected.items():
        check(outputs[output], value)
    # A per-output binary_data overrides the request-level default, both ways.
    document["outputs"] = [
        {"name": "hadamard", "parameters": {"binary_data": False}},
        {"name": "hadamard_1"},
    ]
    header, outputs = decode(http.post("/v2/models/hadamard/infer", json=document))
    assert "data" in header["outputs"][0] and "data" not in header["outputs"][1]
    check(outputs["hadamard"], expected["hadamard"])
    document["parameters"] = {"binary_data_output": False}
    document["outputs"][1]["parameters"] = {"binary_data": True}
    header, outputs = decode(http.post("/v2/models/hadamard/infer", json=document))
    assert "data" in header["outputs"][0] and "data" not in header["outputs"][1]
    check(outputs["hadamard_1"], expected["hadamard_1"])


@pytest.mark.parametrize("layout", ["flat", "nested"])
@pytest.mark.parametrize("name", ["mlp", "hadamard", "conv_flatten"])
def test_json_data_nested_or_flat(http, name, layout):
    inputs = inputs_of(name, seed=7)
    document = {"inputs": [json_input(n, a, "FP32", layout == "flat") for n, a in inputs.items()]}
    if layout == "nested":
        assert isinstance(document["inputs"][0]["data"][0], list)
    response, outputs = decode(http.post(f"/v2/models/{name}/infer", json=document))
    for output, value in reference(name, inputs).items():
        check(outputs[output], value)
        assert isinstance(
            next(o for o in response["outputs"] if o["name"] == output)["data"][0], float
        )


# ---- every datatype, exactly ----------------------------------------------------------
def exact(actual: np.ndarray, expected: np.ndarray, datatype: str) -> None:
    assert actual.shape == expected.shape
    if datatype == "BYTES":
        assert actual.tolist() == expected.tolist()
    else:
        assert actual.dtype == NUMPY[datatype]
        assert actual.tobytes() == expected.tobytes()  # bit for bit (-0.0, subnormals)


JSON_TYPES = [t for t in NUMPY if t != "FP16"]


@pytest.mark.parametrize("layout", ["flat", "nested"])
@pytest.mark.parametrize("datatype", JSON_TYPES)
def test_every_datatype_round_trips_in_json(http, datatype, layout):
    array = sample(datatype)
    document = {"inputs": [json_input("x", array, datatype, layout == "flat")]}
    response, outputs = decode(
        http.post(f"/v2/models/identity_{datatype.lower()}/infer", json=document)
    )
    assert response["outputs"][0]["datatype"] == datatype
    assert response["outputs"][0]["shape"] == [2, 3]
    exact(outputs["y"], array, datatype)


@pytest.mark.parametrize("datatype", JSON_TYPES)
def test_an_empty_batch_round_trips(http, datatype):
    document = {"inputs": [{"name": "x", "shape": [0, 3], "datatype": datatype, "data": []}]}
    response, outputs = decode(
        http.post(f"/v2/models/identity_{datatype.lower()}/infer", json=document)
    )
    assert response["outputs"][0]["shape"] == [0, 3] and outputs["y"].shape == (0, 3)


@pytest.mark.parametrize("datatype", list(NUMPY))
def test_every_datatype_round_trips_in_binary(http, datatype):
    array = sample(datatype)
    chunk = to_bytes(array, datatype)
    document = {
        "inputs": [
            {
                "name": "x",
                "shape": [2, 3],
                "datatype": datatype,
                "parameters": {"binary_data_size": len(chunk)},
            }
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    body, headers = binary_request(document, [chunk])
    response = http.post(
        f"/v2/models/identity_{datatype.lower()}/infer", content=body, headers=headers
    )
    header, outputs = decode(response)
    assert header["outputs"][0]["datatype"] == datatype
    assert response.content[int(response.headers["inference-header-content-length"]) :] == chunk
    exact(outputs["y"], array, datatype)


@pytest.mark.parametrize(
    ("datatype", "binary"),
    [(t, True) for t in NUMPY] + [(t, False) for t in JSON_TYPES],  # FP16: binary only
)
def test_every_datatype_with_tritonclient(client, datatype, binary):
    array = sample(datatype)
    request = triton.InferInput("x", [2, 3], datatype)
    request.set_data_from_numpy(array, binary_data=binary)
    output = triton.InferRequestedOutput("y", binary_data=binary)
    result = client.infer(f"identity_{datatype.lower()}", [request], outputs=[output])
    value = result.as_numpy("y")
    if datatype == "BYTES":
        value = np.array([v.decode() if isinstance(v, bytes) else v for v in value.reshape(-1)])
        assert value.tolist() == array.reshape(-1).tolist()
    else:
        exact(value, array, datatype)


def test_fp16_in_json_is_a_400_naming_the_input(http):
    document = {"inputs": [json_input("x", sample("FP32"), "FP16")]}
    response = http.post("/v2/models/identity_fp16/infer", json=document)
    assert response.status_code == 400
    message = response.json()["error"]
    assert "input 'x'" in message and "FP16" in message and "binary" in message


def test_cast_outputs_fp16_fp64_and_bool_in_json_and_binary(http):
    x = np.array([[0, 1, -2], [2048, -7, 3]], dtype=np.int32)
    document = {"inputs": [json_input("x", x, "INT32")]}
    expected = {
        "half": x.astype(np.float16),
        "double": x.astype(np.float64),
        "nonzero": x != 0,
    }
    for binary in (False, True):
        document["parameters"] = {"binary_data_output": binary}
        response, outputs = decode(http.post("/v2/models/casts/infer", json=document))
        assert [o["datatype"] for o in response["outputs"]] == ["FP16", "FP64", "BOOL"]
        for name, value in expected.items():
            exact(outputs[name], value, {"half": "FP16", "double": "FP64", "nonzero": "BOOL"}[name])


# ---- the binary extension in detail ---------------------------------------------------
def test_binary_request_with_mixed_inputs_and_header_lengths(http):
    """left in binary, right in JSON: only left occupies the tail; the response header
    length marks the end of its JSON part and binary_data_size each output's chunk."""
    inputs = inputs_of("hadamard", batch=3, seed=8)
    left = to_bytes(inputs["left"], "FP32")
    document = {
        "id": "mixed-1",
        "inputs": [
            {
                "name": "left",
                "shape": [3, 8],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(left)},
            },
            json_input("right", inputs["right"], "FP32"),
        ],
        "outputs": [
            {"name": "hadamard", "parameters": {"binary_data": True}},
            {"name": "hadamard_1", "parameters": {"binary_data": True}},
        ],
    }
    body, headers = binary_request(document, [left])
    response = http.post("/v2/models/hadamard/infer", content=body, headers=headers)
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    assert header["id"] == "mixed-1"
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sizes == [3 * 32 * 4, 3 * 4] and length + sum(sizes) == len(response.content)
    _, outputs = decode(response)
    for output, value in reference("hadamard", inputs).items():
        check(outputs[output], value)


def test_two_binary_inputs_of_different_datatypes_in_order(http):
    """Buffers follow the order of the JSON inputs; their sizes differ by datatype."""
    x = np.array([[5, -6, 7]], dtype=np.int32)
    chunk = to_bytes(x, "INT32")
    document = {
        "inputs": [
            {
                "name": "x",
                "shape": [1, 3],
                "datatype": "INT32",
                "parameters": {"binary_data_size": len(chunk)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    body, headers = binary_request(document, [chunk])
    header, outputs = decode(http.post("/v2/models/casts/infer", content=body, headers=headers))
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [6, 24, 3]
    exact(outputs["half"], x.astype(np.float16), "FP16")
    exact(outputs["double"], x.astype(np.float64), "FP64")
    exact(outputs["nonzero"], x != 0, "BOOL")


@pytest.mark.parametrize("rows", [1, 3, 32])
def test_raw_binary_request_for_a_single_input_model(http, rows):
    """Inference-Header-Content-Length: 0 — the body is the input's bytes; every output
    comes back binary (32 rows: a 100 KB body, past uvicorn's 64 KiB flow-control mark)."""
    x = inputs_of("mlp", batch=rows, seed=9)["hidden_1_input"]
    response = http.post(
        "/v2/models/mlp/infer",
        content=x.astype("<f4").tobytes(),
        headers={"Inference-Header-Content-Length": "0"},
    )
    header, outputs = decode(response)
    assert header["outputs"][0]["parameters"]["binary_data_size"] == rows * 10 * 4
    check(outputs["probabilities"], examples.mlp().predict(x))
    int16 = np.array([[-1, 2, 300]], dtype=np.int16)
    response = http.post(
        "/v2/models/identity_int16/infer",
        content=int16.astype("<i2").tobytes(),
        headers={"Inference-Header-Content-Length": "0"},
    )
    exact(decode(response)[1]["y"], int16, "INT16")


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize(
    ("octets", "refused"),
    [
        (b"\x01\x00\x01\x00\x00\x01", None),
        (b"\x01\x00\x00\x00\x02\x01", "byte 4 is 2"),
        (b"\xff\x00\x01\x00\x00\x01", "byte 0 is 255"),
    ],
)
def test_bool_bytes_other_than_0_and_1_are_refused(http, raw, octets, refused):
    """A BOOL byte is 0 or 1: onnxruntime would take byte 2 as a bool without looking and
    answer neither true nor false for it. Refused naming the input and the byte, in the
    extension's binary data and in a raw body alike; 0 and 1 pass."""
    if raw:
        body, headers = octets, {"Inference-Header-Content-Length": "0"}
    else:
        entry = {"name": "x", "shape": [2, 3], "datatype": "BOOL"}
        entry["parameters"] = {"binary_data_size": len(octets)}
        body, headers = binary_request({"inputs": [entry]}, [octets])
    response = http.post("/v2/models/identity_bool/infer", content=body, headers=headers)
    if refused is None:
        expected = np.frombuffer(octets, np.uint8).astype(bool).reshape(2, 3)
        exact(decode(response)[1]["y"], expected, "BOOL")
    else:
        assert response.status_code == 400, response.text
        message = response.json()["error"]
        assert "input 'x'" in message and "0 (false) or 1 (true)" in message
        assert refused in message


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request_bodies(client, http, encoding):
    inputs = inputs_of("hadamard", seed=10)
    expected = reference("hadamard", inputs)
    for binary in (True, False):
        requests = []
        for name, array in inputs.items():
            request = triton.InferInput(name, [2, 8], "FP32")
            request.set_data_from_numpy(array, binary_data=binary)
            requests.append(request)
        result = client.infer("hadamard", requests, request_compression_algorithm=encoding)
        for output, value in expected.items():
            check(result.as_numpy(output), value)
    # By hand: the header length counts the decompressed JSON part.
    left = to_bytes(inputs["left"], "FP32")
    right = to_bytes(inputs["right"], "FP32")
    document = {
        "inputs": [
            {"name": n, "shape": [2, 8], "datatype": "FP32", "parameters": {"binary_data_size": 64}}
            for n in ("left", "right")
        ]
    }
    body, headers = binary_request(document, [left, right])
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    headers["Content-Encoding"] = encoding
    _, outputs = decode(http.post("/v2/models/hadamard/infer", content=packed, headers=headers))
    for output, value in expected.items():
        check(outputs[output], value)
    if encoding == "gzip":  # two members one after the other (RFC 1952); zero padding
        middle = len(body) // 2
        packed = gzip.compress(body[:middle]) + gzip.compress(body[middle:])
        for content in (packed, gzip.compress(body) + bytes(64)):
            reply = http.post("/v2/models/hadamard/infer", content=content, headers=headers)
            for output, value in expected.items():
                check(decode(reply)[1][output], value)
    # an empty body stays empty, whatever its Content-Encoding says (as Python's gzip and
    # urllib3 read one): the index takes it as no filter
    index = http.post("/v2/repository/index", content=b"", headers={"Content-Encoding": encoding})
    assert index.status_code == 200 and {e["name"] for e in index.json()} >= {"hadamard"}


# ---- versions -------------------------------------------------------------------------
VERSION_REFERENCE = {"1": first_mlp, "2": examples.mlp}


@pytest.mark.parametrize("version", ["1", "2", None], ids=["v1", "v2", "latest"])
def test_version_addressing_metadata_ready_and_infer(client, http, version):
    prefix = "/v2/models/mlp" + (f"/versions/{version}" if version else "")
    served = version or "2"  # the highest version by default
    metadata = http.get(prefix).json()
    assert metadata["name"] == "mlp" and metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [
        {"name": "hidden_1_input", "datatype": "FP32", "shape": [-1, 784]}
    ]
    assert client.get_model_metadata("mlp", model_version=version or "") == metadata
    assert http.get(prefix + "/ready").json() == {"name": "mlp", "ready": True}
    assert client.is_model_ready("mlp", model_version=version or "")
    x = inputs_of("mlp", batch=4, seed=11)["hidden_1_input"]
    document = {"inputs": [json_input("hidden_1_input", x, "FP32")]}
    response, outputs = decode(http.post(prefix + "/infer", json=document))
    assert response["model_version"] == served
    check(outputs["probabilities"], VERSION_REFERENCE[served]().predict(x))
    request = triton.InferInput("hidden_1_input", [4, 784], "FP32")
    request.set_data_from_numpy(x)
    result = client.infer("mlp", [request], model_version=version or "")
    assert result.get_response()["model_version"] == served
    check(result.as_numpy("probabilities"), VERSION_REFERENCE[served]().predict(x))
    # The two versions really are different models.
    other = VERSION_REFERENCE["1" if served == "2" else "2"]().predict(x)
    assert not np.allclose(outputs["probabilities"], other, atol=ATOL)


@pytest.mark.parametrize("suffix", ["", "/ready", "/infer"])
def test_unknown_version_is_a_404_naming_the_versions(http, suffix):
    path = f"/v2/models/mlp/versions/3{suffix}"
    document = {"inputs": [json_input("hidden_1_input", np.zeros((1, 784), np.float32), "FP32")]}
    response = http.post(path, json=document) if suffix == "/infer" else http.get(path)
    assert response.status_code == 404
    message = response.json()["error"]
    assert "'mlp' version 3 is not found" in message and "['1', '2']" in message
