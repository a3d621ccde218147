"""``:validate`` end to end on a real uvicorn: requests checked against a model without
running it. Refusals list every problem (hand-written, in a table); accepted requests
get the output shapes, checked by hand and against a real inference of the same shapes;
hypothesis draws shapes for the mlp and conv models and checks the rule "valid iff the
rank is the model's and every fixed dimension equal" (plus the batch and size limits).

The session repository serves mlp (version 1 with max_batch_size 64), conv_flatten,
masking_lstm and hadamard (inputs left/right); a module server adds an unbatched mlp, a
Masking+LSTM model with a mask output, and hand-built ONNX graphs that shape inference
alone decides (ReduceSum over a variable axis) or cannot decide (a com.microsoft op)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live_server import running_server, write_model
from onnx import TensorProto, helper, save_model

from layerserve import examples, initializers
from layerserve.layers import LSTM, Embedding, Input, Masking
from layerserve.models import Model
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

MLP = "hidden_1_input"
DATATYPES = (
    "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES"
)
SESSION_LIMIT = 8 * 1024 * 1024  # max_request_bytes of the session server (conftest)


def tensor(name: str, shape: list, datatype: str = "FP32", **extra) -> dict:
    return {"name": name, "shape": shape, "datatype": datatype, **extra}


def validate(url: str, path: str, body) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{path}:validate", json=body)


# ---- refusals --------------------------------------------------------------------------
# (model path, body, every problem in the order the server finds them)
REFUSALS = {
    "rank-without-batch": (
        "mlp",
        {"inputs": [tensor(MLP, [784])]},
        [
            f"input '{MLP}': expected rank 2 (shape [-1, 784]), received rank 1 (shape [784]) "
            "(the first dimension is the batch: add it, e.g. [1, 784])"
        ],
    ),
    "rank": (
        "conv_flatten",
        {"inputs": [tensor("conv_input", [1, 2, 3, 32, 32])]},
        [
            "input 'conv_input': expected rank 4 (shape [-1, 3, 32, 32]), received rank 5 "
            "(shape [1, 2, 3, 32, 32])"
        ],
    ),
    "each-dimension": (
        "conv_flatten",
        {"inputs": [tensor("conv_input", [2, 1, 31, 32])]},
        [
            "input 'conv_input' dimension 1: expected 3, received 1 "
            "(expected shape [-1, 3, 32, 32], received [2, 1, 31, 32])",
            "input 'conv_input' dimension 2: expected 32, received 31 "
            "(expected shape [-1, 3, 32, 32], received [2, 1, 31, 32])",
        ],
    ),
    "datatype": (
        "mlp",
        {"inputs": [tensor(MLP, [2, 784], "FP64")]},
        [f"inference input data-type is 'FP64', model expects 'FP32' for 'mlp' (input '{MLP}')"],
    ),
    "unknown-input": (
        "mlp",
        {"inputs": [tensor(MLP, [1, 784]), tensor("x", [1, 3])]},
        [f"unexpected input 'x' for model 'mlp'; expected inputs: ['{MLP}']"],
    ),
    "missing-input": (
        "hadamard",
        {"inputs": [tensor("left", [2, 8])]},
        ["missing input 'right' (datatype FP32, shape [-1, 8])"],
    ),
    "duplicate-input": (
        "hadamard",
        {"inputs": [tensor("left", [2, 8]), tensor("left", [2, 8]), tensor("right", [2, 8])]},
        ["input 'left' is given more than once"],
    ),
    "flat-data-length": (
        "mlp",
        {"inputs": [tensor(MLP, [2, 784], data=[0.5] * 784)]},
        [f"input '{MLP}': 'data' has 784 elements, shape [2, 784] needs 1568"],
    ),
    "nested-data-length": (
        "hadamard",
        {
            "inputs": [
                tensor("left", [2, 8], data=[[1.0] * 8, [1.0] * 7]),
                tensor("right", [2, 8], data=[[1.0] * 8, [1.0] * 8]),
            ]
        },
        ["input 'left': 'data' has 15 elements, shape [2, 8] needs 16"],
    ),
    "data-values": (
        "hadamard",
        {"inputs": [tensor("left", [1, 2], data=[1.0, "a"]), tensor("right", [1, 8])]},
        [
            "input 'left' dimension 1: expected 8, received 2 "
            "(expected shape [-1, 8], received [1, 2])",
            "input 'left': datatype FP32 needs JSON numbers in 'data', received 'a'",
        ],
    ),
    "batch-over-limit": (
        "mlp/versions/1",
        {"inputs": [tensor(MLP, [65, 784])]},
        ["batch size over the max_batch_size 64 of model 'mlp': 'hidden_1_input' 65"],
    ),
    "batch-sizes-differ": (
        "hadamard",
        {"inputs": [tensor("left", [2, 8]), tensor("right", [3, 8])]},
        ["inputs have different batch sizes (first dimension): 'left' 2, 'right' 3"],
    ),
    "over-the-size-limit": (
        "mlp",
        {"inputs": [tensor(MLP, [3000, 784])]},
        [
            f"input '{MLP}' of shape [3000, 784] takes {3000 * 784 * 4} bytes, over the "
            f"maximum request size of {SESSION_LIMIT} bytes",
            f"batch size over the max_batch_size 64 of model 'mlp': '{MLP}' 3000",
        ],
    ),
    "unknown-output": (
        "mlp",
        {"inputs": [tensor(MLP, [1, 784])], "outputs": [{"name": "nope"}]},
        ["unexpected output 'nope' for model 'mlp'; available outputs: ['probabilities']"],
    ),
    "malformed-shape": (
        "mlp",
        {"inputs": [tensor(MLP, [-1, 784])]},
        [f"input '{MLP}': 'shape' must be a list of non-negative integers, received [-1, 784]"],
    ),
    "unknown-datatype": (
        "mlp",
        {"inputs": [tensor(MLP, [1, 784], "FLOAT32")]},
        [f"input '{MLP}': unknown datatype 'FLOAT32'; expected one of {DATATYPES}"],
    ),
    "not-an-object": (
        "mlp",
        {"inputs": [5]},
        [
            "inputs[0] must be an object with 'name', 'shape' and 'datatype'",
            f"missing input '{MLP}' (datatype FP32, shape [-1, 784])",
        ],
    ),
    "no-inputs-array": (
        "mlp",
        [],
        [
            "the request must be a JSON object with an 'inputs' array of "
            '{"name", "shape", "datatype"} objects ("data" optional)'
        ],
    ),
    "everything-at-once": (
        "hadamard",
        {
            "inputs": [
                tensor("left", [2, 7], "FP64", data=[1.0, 2.0, 3.0]),
                tensor("z", [2, 8]),
                tensor("left", [2, 8]),
            ],
            "outputs": [{"name": "hadamard_2"}],
        },
        [
            "inference input data-type is 'FP64', model expects 'FP32' for 'hadamard' "
            "(input 'left')",
            "input 'left' dimension 1: expected 8, received 7 "
            "(expected shape [-1, 8], received [2, 7])",
            "input 'left': 'data' has 3 elements, shape [2, 7] needs 14",
            "unexpected input 'z' for model 'hadamard'; expected inputs: ['left', 'right']",
            "input 'left' is given more than once",
            "missing input 'right' (datatype FP32, shape [-1, 8])",
            "unexpected output 'hadamard_2' for model 'hadamard'; available outputs: "
            "['hadamard', 'hadamard_1']",
        ],
    ),
}


@pytest.mark.parametrize(("path", "body", "problems"), REFUSALS.values(), ids=REFUSALS.keys())
def test_refusals_list_every_problem(server_url, path, body, problems):
    response = validate(server_url, path, body)
    assert response.status_code == 400, response.text
    name = path.split("/")[0]
    version = path.split("/")[-1] if "/versions/" in path else {"mlp": "2"}.get(name, "1")
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    assert response.json() == {
        "error": f"the request does not fit model '{name}' version {version} ({count}): "
        + "; ".join(problems),
        "problems": problems,
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("nope", {"inputs": []}, 404, "Request for unknown model: 'nope' is not found"),
        ("mlp/versions/9", {"inputs": []}, 404, "version"),
        ("mlp", b"{not json", 400, "failed to parse the request JSON buffer"),
    ],
    ids=["unknown-model", "unknown-version", "not-json"],
)
def test_refusals_before_validation(server_url, path, body, status, error):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = httpx.post(f"{server_url}/v1/models/{path}:validate", **kwargs)
    assert response.status_code == status, response.text
    assert error in response.json()["error"]


# ---- accepted requests -----------------------------------------------------------------
# (model path, input descriptors, requested outputs or None, expected outputs by hand)
ACCEPTED = {
    "mlp": ("mlp", [tensor(MLP, [2, 784])], None, [("probabilities", "FP32", [2, 10])]),
    "mlp-batch-limit": (
        "mlp/versions/1",
        [tensor(MLP, [64, 784])],
        None,
        [("probabilities", "FP32", [64, 10])],
    ),
    "mlp-empty-batch": ("mlp", [tensor(MLP, [0, 784])], None, [("probabilities", "FP32", [0, 10])]),
    "mlp-with-data": (
        "mlp",
        [tensor(MLP, [1, 784], data=[[0.25] * 784])],
        None,
        [("probabilities", "FP32", [1, 10])],
    ),
    "conv": (
        "conv_flatten",
        [tensor("conv_input", [5, 3, 32, 32])],
        None,
        [("flatten", "FP32", [5, 64 * 32 * 32])],
    ),
    "masking_lstm": (
        "masking_lstm",
        [tensor("masking_input", [3, 10, 8])],
        None,
        [("lstm", "FP32", [3, 32])],
    ),
    "hadamard": (
        "hadamard",
        [tensor("left", [4, 8]), tensor("right", [4, 8])],
        None,
        [("hadamard", "FP32", [4, 32]), ("hadamard_1", "FP32", [4])],
    ),
    "hadamard-one-output": (
        "hadamard",
        [tensor("right", [4, 8]), tensor("left", [4, 8])],
        ["hadamard_1"],
        [("hadamard_1", "FP32", [4])],
    ),
}


@pytest.mark.parametrize(
    ("path", "inputs", "wanted", "outputs"), ACCEPTED.values(), ids=ACCEPTED.keys()
)
def test_accepted_requests_get_their_output_shapes(server_url, path, inputs, wanted, outputs):
    body: dict = {"inputs": inputs}
    if wanted is not None:
        body["outputs"] = [{"name": n} for n in wanted]
    response = validate(server_url, path, body)
    assert response.status_code == 200, response.text
    name = path.split("/")[0]
    document = response.json()
    assert document["model_name"] == name and document["valid"] is True
    assert document["outputs"] == [{"name": n, "datatype": d, "shape": s} for n, d, s in outputs]
    # The same shapes come out of a real inference on zeros.
    infer_body = {
        "inputs": [
            {**t, "data": [0.0] * int(np.prod(t["shape"]))} for t in inputs if "data" not in t
        ]
        + [t for t in inputs if "data" in t]
    }
    if wanted is not None:
        infer_body["outputs"] = [{"name": n} for n in wanted]
    served = httpx.post(f"{server_url}/v2/models/{path}/infer", json=infer_body)
    assert served.status_code == 200, served.text
    assert [(o["name"], o["datatype"], o["shape"]) for o in served.json()["outputs"]] == [
        (n, d, s) for n, d, s in outputs
    ]


# ---- the rule, on random shapes ----------------------------------------------------------
@st.composite
def shapes_near(draw, expected: list[int]) -> list[int]:
    """Shapes of any rank up to 5; each axis often the expected size."""
    rank = draw(st.sampled_from([len(expected)] * 3 + list(range(6))))
    shape = []
    for axis in range(rank):
        near = expected[axis] if axis < len(expected) and expected[axis] >= 0 else 2
        shape.append(draw(st.one_of(st.just(near), st.integers(0, 70))))
    return shape


def _check_rule(url: str, path: str, input_name: str, expected: list[int], shape, output):
    response = validate(url, path, {"inputs": [tensor(input_name, shape)]})
    same_rank = len(shape) == len(expected)
    wrong_dims = (
        sum(1 for e, d in zip(expected, shape, strict=True) if e >= 0 and e != d)
        if same_rank
        else 0
    )
    over = same_rank and shape[0] > 64
    too_big = int(np.prod(shape)) * 4 > SESSION_LIMIT
    if same_rank and wrong_dims == 0 and not over and not too_big:
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["shape"] == [shape[0], *output]
        return
    assert response.status_code == 400, response.text
    problems = response.json()["problems"]
    assert len(problems) == (1 if not same_rank else wrong_dims + over) + too_big, problems
    if not same_rank:
        assert f"expected rank {len(expected)}" in problems[0]


@settings(max_examples=60)
@given(shape=shapes_near([-1, 784]))
def test_mlp_shapes_follow_the_rule(server_url, shape):
    _check_rule(server_url, "mlp/versions/1", MLP, [-1, 784], shape, [10])


@settings(max_examples=60)
@given(shape=shapes_near([-1, 3, 32, 32]))
def test_conv_shapes_follow_the_rule(server_url, shape):
    _check_rule(server_url, "conv_flatten", "conv_input", [-1, 3, 32, 32], shape, [65536])


# ---- models of this module -----------------------------------------------------------------
def _seq_lstm() -> Model:
    seq = Input((6, 3), name="seq")
    masked = Masking(0.0, name="masking")(seq)
    lstm = LSTM(
        4,
        return_sequences=True,
        kernel_initializer=initializers.glorot_uniform(seed=1),
        name="lstm",
    )
    return Model(seq, lstm(masked), name="seq_lstm")


def _graph(path, nodes, inputs, outputs, opsets) -> None:
    graph = helper.make_graph(nodes, "graph", inputs, outputs)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets], ir_version=8
    )
    path.parent.mkdir(parents=True)
    save_model(model, str(path))


@pytest.fixture(scope="module")
def module_repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate_repository")
    write_model(root, "unbatched", examples.mlp(), config={"max_batch_size": 0})
    write_model(root, "seq_lstm", _seq_lstm())
    tokens = Input((3,), name="tokens")
    embedded = Embedding(50, 4, embeddings_initializer=initializers.RandomNormal(seed=3))(tokens)
    write_model(root, "lookup", Model(tokens, embedded, name="lookup"))
    # y = ReduceSum(x, axis 2): [N, T, 3] -> [N, T]; only shape inference knows T.
    _graph(
        root / "steps" / "1" / "model.onnx",
        [
            helper.make_node(
                "Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [1], [2])
            ),
            helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T"])],
        [("", 17)],
    )
    # A contrib op ONNX shape inference does not know: the output spec decides.
    _graph(
        root / "gelu" / "1" / "model.onnx",
        [helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", None])],
        [("", 17), ("com.microsoft", 1)],
    )
    _graph(
        root / "half" / "1" / "model.onnx",
        [helper.make_node("Identity", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 3])],
        [("", 17)],
    )
    return root


@pytest.fixture(scope="module")
def module_url(module_repository):
    with running_server(Settings(model_repository=module_repository)) as url:
        yield url


MODULE_ACCEPTED = {
    "unbatched-any-batch": (
        "unbatched",
        [tensor(MLP, [1000, 784])],
        [("probabilities", "FP32", [1000, 10])],
    ),
    "mask-output": (
        "seq_lstm",
        [tensor("seq", [5, 6, 3])],
        [("lstm", "FP32", [5, 6, 4]), ("lstm_mask", "BOOL", [5, 6])],
    ),
    "inference-decides": ("steps", [tensor("x", [2, 7, 3])], [("y", "FP32", [2, 7])]),
    "spec-decides": ("gelu", [tensor("x", [5, 3])], [("y", "FP32", [5, 3])]),
}


# Requests whose shapes and kinds of values are right but whose values inference refuses
INFERENCE_REFUSES = {
    "index-past-the-table": ("lookup", [tensor("tokens", [1, 3], data=[1, 60, 2])]),
    "nan-index": ("lookup", [tensor("tokens", [1, 3], data=[1, float("nan"), 2])]),
    "value-past-fp32": ("steps", [tensor("x", [1, 1, 3], data=[1.0, 1e39, 2.0])]),
    "value-past-int8": ("steps", [tensor("x", [1, 1, 3], "INT8", data=[1, 300, 2])]),
    "fp16-in-json": ("half", [tensor("x", [1, 3], "FP16", data=[1.0, 2.0, 3.0])]),
}


@pytest.mark.parametrize(("path", "inputs"), INFERENCE_REFUSES.values(), ids=INFERENCE_REFUSES)
def test_validate_lists_what_inference_refuses_in_its_words(module_url, path, inputs):
    """:validate reads the values as inference does: what inference refuses is one of
    its problems, word for word (for a mismatched datatype, as another problem)."""
    body = json.dumps({"inputs": inputs})  # NaN as the token both protocols read
    inferred = httpx.post(f"{module_url}/v2/models/{path}/infer", content=body)
    assert inferred.status_code == 400, inferred.text
    response = httpx.post(f"{module_url}/v1/models/{path}:validate", content=body)
    assert response.status_code == 400, response.text
    assert inferred.json()["error"] in response.json()["problems"]


def test_validate_refuses_an_id_inference_refuses(module_url):
    body = {"inputs": [tensor(MLP, [1, 784], data=[0.5] * 784)], "id": 5}
    inferred = httpx.post(f"{module_url}/v2/models/unbatched/infer", json=body)
    assert inferred.status_code == 400, inferred.text
    response = validate(module_url, "unbatched", body)
    assert response.status_code == 400, response.text
    assert response.json()["problems"] == [inferred.json()["error"]]


@pytest.mark.parametrize(
    ("path", "inputs", "outputs"), MODULE_ACCEPTED.values(), ids=MODULE_ACCEPTED.keys()
)
def test_output_shapes_from_inference_or_the_spec(module_url, path, inputs, outputs):
    response = validate(module_url, path, {"inputs": inputs})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [
        {"name": n, "datatype": d, "shape": s} for n, d, s in outputs
    ]


def test_shape_inference_keeps_the_graph_it_loaded(module_url, module_repository):
    """After the first answer the file is not read again: with the file on disk
    corrupted, a new input shape still gets the size only shape inference knows."""
    first = validate(module_url, "steps", {"inputs": [tensor("x", [2, 7, 3])]})
    assert first.json()["outputs"][0]["shape"] == [2, 7]
    (module_repository / "steps" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    second = validate(module_url, "steps", {"inputs": [tensor("x", [4, 9, 3])]})
    assert second.status_code == 200, second.text
    assert second.json()["outputs"][0]["shape"] == [4, 9]


def test_the_refusal_body_is_json_with_problems(server_url):
    response = validate(server_url, "mlp", {"inputs": [tensor(MLP, [2, 783], "FP64")]})
    assert response.headers["content-type"] == "application/json"
    document = json.loads(response.content)
    assert set(document) == {"error", "problems"}
    assert len(document["problems"]) == 2


def test_a_flood_of_problems_is_listed_up_to_fifty_and_counted(server_url):
    unknown = [tensor(f"x{i}", [1, 1], "FP32") for i in range(200)]
    response = validate(server_url, "mlp", {"inputs": [tensor(MLP, [1, 784], "FP32"), *unknown]})
    assert response.status_code == 400
    document = response.json()
    assert document["error"].startswith(
        "the request does not fit model 'mlp' version 2 (200 problems): "
    )
    assert len(document["problems"]) == 51
    assert document["problems"][:2] == [
        f"unexpected input 'x{i}' for model 'mlp'; expected inputs: ['{MLP}']" for i in (0, 1)
    ]
    assert document["problems"][-1] == "... and 150 more"
