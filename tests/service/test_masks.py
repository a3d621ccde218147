"""Masks end to end on a real uvicorn: ``<output>_mask`` outputs asked for like any
other output (tritonclient JSON and binary, TF Serving ``:predict``), and the
``:mask`` endpoint (input masks from the Masking layers on the inputs, output masks from
the graph).

Expectations: masks written out by hand for inputs with all-zero (or all ``mask_value``)
timesteps at chosen positions, interior ones included, and the NumPy reference
(``model.compute_mask``, ``model.run``, ``model.predict``)."""

from __future__ import annotations

import struct

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.http as triton
from live_server import running_server, write_model
from onnx import TensorProto, helper

from layerserve import examples, initializers
from layerserve.layers import LSTM, Dense, Input, Masking
from layerserve.models import Model
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

ATOL = 1e-5


def _seed(seed: int) -> initializers.VarianceScaling:
    return initializers.glorot_uniform(seed=seed)


def seq_lstm() -> Model:
    """Masking(0) then LSTM(return_sequences=True): the output carries the input's mask."""
    seq = Input((6, 3), name="seq")
    masked = Masking(0.0, name="masking")(seq)
    out = LSTM(4, return_sequences=True, kernel_initializer=_seed(1), name="lstm")(masked)
    return Model(seq, out, name="seq_lstm")


def two_inputs() -> Model:
    """``tokens`` goes through Masking(-1); ``extra`` only through a Dense."""
    tokens, extra = Input((5, 2), name="tokens"), Input((3,), name="extra")
    masked = Masking(-1.0, name="masking")(tokens)
    seq = LSTM(3, return_sequences=True, kernel_initializer=_seed(2), name="lstm")(masked)
    dense = Dense(2, kernel_initializer=_seed(3), name="dense")(extra)
    return Model([tokens, extra], [seq, dense], name="two_inputs")


def late_masking() -> Model:
    """Masking after a Dense (zero bias): no Masking reads the input itself, yet the
    output carries a mask."""
    steps = Input((4, 3), name="steps")
    projected = Dense(3, kernel_initializer=_seed(4), name="project")(steps)
    masked = Masking(0.0, name="masking")(projected)
    out = LSTM(2, return_sequences=True, kernel_initializer=_seed(5), name="lstm")(masked)
    return Model(steps, out, name="late_masking")


BUILDERS = {
    "seq_lstm": seq_lstm,
    "two_inputs": two_inputs,
    "late_masking": late_masking,
    "masking_lstm": examples.masking_lstm,
    "mlp": examples.mlp,
}

# seq_lstm input: 5 rows of 6 timesteps x 3 features; zero timesteps chosen per row.
ZERO_STEPS = [[2], [0, 5], [1, 2, 3], [], [0, 1, 2, 3, 4, 5]]
# Row 3 has a timestep with two of its three features zero: not masked.
SEQ_MASK = [
    [True, True, False, True, True, True],
    [False, True, True, True, True, False],
    [True, False, False, False, True, True],
    [True, True, True, True, True, True],
    [False, False, False, False, False, False],
]


def seq_input() -> np.ndarray:
    x = np.random.default_rng(7).uniform(0.5, 1.5, (5, 6, 3)).astype(np.float32)
    for row, steps in enumerate(ZERO_STEPS):
        x[row, steps] = 0.0
    x[3, 4, :2] = 0.0
    return x


@pytest.fixture(scope="module")
def references() -> dict[str, Model]:
    return {name: build() for name, build in BUILDERS.items()}


def write_hand_built(root) -> None:
    """Identity graph by onnx.helper: ``y = x``, ``y_mask = keep``; its metadata names
    the mask output, and its model config is not JSON."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["y"]),
            helper.make_node("Identity", ["keep"], ["y_mask"]),
        ],
        "hand_built",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 2]),
            helper.make_tensor_value_info("keep", TensorProto.BOOL, ["N", 4]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 2]),
            helper.make_tensor_value_info("y_mask", TensorProto.BOOL, ["N", 4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"mask_outputs": '{"y": "y_mask"}', "model_config": "{nope"})
    path = root / "hand_built" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    onnx.save_model(model, str(path))


@pytest.fixture(scope="module")
def url(tmp_path_factory, references):
    root = tmp_path_factory.mktemp("mask_repository")
    for name, model in references.items():
        write_model(root, name, model)
    write_model(root, "seq_lstm", references["seq_lstm"], "2")
    write_hand_built(root)
    with running_server(Settings(model_repository=root)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    yield client
    client.close()


def test_the_hand_written_mask_is_the_references_mask(references):
    """The expectations agree with the NumPy reference before they judge the server."""
    x = seq_input()
    np.testing.assert_array_equal(references["seq_lstm"].compute_mask(x), SEQ_MASK)
    assert references["masking_lstm"].compute_mask(np.zeros((1, 10, 8), np.float32)) is None


# ---- mask outputs through inference ----------------------------------------------------
@pytest.mark.parametrize("binary_input", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("binary_output", [False, True], ids=["json-out", "binary-out"])
def test_tritonclient_asks_for_the_mask_output(client, references, binary_input, binary_output):
    x = seq_input()
    tensor = triton.InferInput("seq", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary_input)
    outputs = [
        triton.InferRequestedOutput("lstm", binary_data=binary_output),
        triton.InferRequestedOutput("lstm_mask", binary_data=binary_output),
    ]
    result = client.infer("seq_lstm", [tensor], outputs=outputs)
    mask = result.as_numpy("lstm_mask")
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, SEQ_MASK)
    values, reference_mask = references["seq_lstm"].run(x)
    np.testing.assert_array_equal(mask, reference_mask)
    np.testing.assert_allclose(result.as_numpy("lstm"), values, atol=ATOL)
    assert result.get_output("lstm_mask")["datatype"] == "BOOL"


def test_the_mask_output_alone(client):
    x = seq_input()
    tensor = triton.InferInput("seq", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("seq_lstm", [tensor], outputs=[triton.InferRequestedOutput("lstm_mask")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["lstm_mask"]
    np.testing.assert_array_equal(result.as_numpy("lstm_mask"), SEQ_MASK)


@pytest.mark.parametrize("layout", ["row", "columnar"])
def test_tf_serving_predict_answers_plain_lists_without_the_mask(url, references, layout):
    """A one-output Keras model answers as TF Serving would: plain lists, no mask."""
    x = seq_input()
    body = {"instances": x.tolist()} if layout == "row" else {"inputs": x.tolist()}
    response = httpx.post(f"{url}/v1/models/seq_lstm:predict", json=body)
    assert response.status_code == 200, response.text
    values = response.json()["predictions" if layout == "row" else "outputs"]
    assert np.asarray(values).shape == (5, 6, 4)
    np.testing.assert_allclose(values, references["seq_lstm"].predict(x), atol=ATOL)


@pytest.mark.parametrize("layout", ["row", "columnar"])
def test_tf_serving_predict_returns_the_mask_when_asked(url, references, layout):
    x = seq_input()
    body = {"instances": x.tolist()} if layout == "row" else {"inputs": x.tolist()}
    body["output_filter"] = ["lstm", "lstm_mask"]
    response = httpx.post(f"{url}/v1/models/seq_lstm:predict", json=body)
    assert response.status_code == 200, response.text
    if layout == "row":
        rows = response.json()["predictions"]
        mask = [row["lstm_mask"] for row in rows]
        values = [row["lstm"] for row in rows]
    else:
        outputs = response.json()["outputs"]
        mask, values = outputs["lstm_mask"], outputs["lstm"]
    assert mask == SEQ_MASK
    np.testing.assert_allclose(values, references["seq_lstm"].predict(x), atol=ATOL)


# ---- :mask -----------------------------------------------------------------------------
def _v2_input(name: str, x: np.ndarray) -> dict:
    return {"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}


def _masked_steps(mask: list[list[bool]]) -> list[list[int]]:
    return [[t for t, kept in enumerate(row) if not kept] for row in mask]


@pytest.mark.parametrize(("path", "version"), [("seq_lstm", "2"), ("seq_lstm/versions/1", "1")])
def test_mask_endpoint_reports_input_and_output_masks(url, references, path, version):
    x = seq_input()
    response = httpx.post(f"{url}/v1/models/{path}:mask", json={"inputs": [_v2_input("seq", x)]})
    assert response.status_code == 200, response.text
    values, output_mask = references["seq_lstm"].run(x)
    assert response.json() == {
        "model_name": "seq_lstm",
        "model_version": version,
        "inputs": [
            {
                "name": "seq",
                "masking_layer": "masking",
                "mask_value": 0.0,
                "mask": SEQ_MASK,
                "masked_timesteps": ZERO_STEPS,
            }
        ],
        "outputs": [
            {
                "name": "lstm",
                "shape": list(values.shape),
                "mask_output": "lstm_mask",
                "mask": output_mask.tolist(),
                "masked_timesteps": ZERO_STEPS,
            }
        ],
    }
    assert _masked_steps(SEQ_MASK) == ZERO_STEPS


def test_mask_endpoint_with_binary_input(url):
    x = seq_input()
    header = (
        b'{"inputs": [{"name": "seq", "shape": [5, 6, 3], "datatype": "FP32", '
        b'"parameters": {"binary_data_size": 360}}]}'
    )
    body = header + struct.pack("<90f", *x.reshape(-1).tolist())
    response = httpx.post(
        f"{url}/v1/models/seq_lstm:mask",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    assert response.json()["inputs"][0]["mask"] == SEQ_MASK


def test_masking_lstm_masks_its_input_but_its_output_has_no_mask(url, references):
    """The demo model: Masking then LSTM(return_sequences=False), whose output drops the
    mask, so the model has no mask output."""
    x = np.full((2, 10, 8), 0.25, np.float32)
    x[0, [0, 4, 9]] = 0.0
    x[1, 5:] = 0.0
    response = httpx.post(
        f"{url}/v1/models/masking_lstm:mask", json={"inputs": [_v2_input("masking_input", x)]}
    )
    assert response.status_code == 200, response.text
    expected_mask = [
        [False, True, True, True, False, True, True, True, True, False],
        [True, True, True, True, True, False, False, False, False, False],
    ]
    document = response.json()
    assert document["inputs"] == [
        {
            "name": "masking_input",
            "masking_layer": "masking",
            "mask_value": 0.0,
            "mask": expected_mask,
            "masked_timesteps": [[0, 4, 9], [5, 6, 7, 8, 9]],
        }
    ]
    assert document["outputs"] == [
        {
            "name": "lstm",
            "shape": [2, 32],
            "mask_output": None,
            "mask": None,
            "masked_timesteps": None,
        }
    ]
    assert references["masking_lstm"].compute_mask(x) is None


def test_an_input_without_masking_reports_null(url, references):
    tokens = np.array(
        [
            [[1.0, 2.0], [-1.0, -1.0], [0.5, -1.0], [-1.0, -1.0], [3.0, 0.0]],
            [[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [-1.0, -1.0]],
        ],
        np.float32,
    )
    extra = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], np.float32)
    body = {"inputs": [_v2_input("tokens", tokens), _v2_input("extra", extra)]}
    response = httpx.post(f"{url}/v1/models/two_inputs:mask", json=body)
    assert response.status_code == 200, response.text
    tokens_mask = [[True, False, True, False, True], [False, True, True, True, False]]
    (_, dense), (output_mask, dense_mask) = references["two_inputs"].run([tokens, extra])
    np.testing.assert_array_equal(output_mask, tokens_mask)
    assert dense_mask is None
    document = response.json()
    assert document["inputs"] == [
        {
            "name": "tokens",
            "masking_layer": "masking",
            "mask_value": -1.0,
            "mask": tokens_mask,
            "masked_timesteps": [[1, 3], [0, 4]],
        },
        {
            "name": "extra",
            "masking_layer": None,
            "mask_value": None,
            "mask": None,
            "masked_timesteps": None,
        },
    ]
    assert document["outputs"] == [
        {
            "name": "lstm",
            "shape": [2, 5, 3],
            "mask_output": "lstm_mask",
            "mask": tokens_mask,
            "masked_timesteps": [[1, 3], [0, 4]],
        },
        {
            "name": "dense",
            "shape": list(dense.shape),
            "mask_output": None,
            "mask": None,
            "masked_timesteps": None,
        },
    ]


def test_a_mask_computed_inside_the_graph(url, references):
    """No Masking layer reads the input; the Dense (zero bias) maps all-zero steps to
    zero, which the Masking after it masks."""
    x = np.random.default_rng(3).uniform(0.5, 1.5, (2, 4, 3)).astype(np.float32)
    x[0, 1] = 0.0
    x[1, [0, 3]] = 0.0
    response = httpx.post(
        f"{url}/v1/models/late_masking:mask", json={"inputs": [_v2_input("steps", x)]}
    )
    assert response.status_code == 200, response.text
    expected = [[True, False, True, True], [False, True, True, False]]
    np.testing.assert_array_equal(references["late_masking"].compute_mask(x), expected)
    document = response.json()
    assert document["inputs"][0]["mask"] is None
    assert document["outputs"][0]["mask"] == expected
    assert document["outputs"][0]["masked_timesteps"] == [[1], [0, 3]]


def test_output_masks_come_from_the_graph(url):
    """A hand-built graph whose model config cannot be read: no input masks, and the
    output mask is what the graph computed (here: the ``keep`` input passed through)."""
    x = np.ones((2, 4, 2), np.float32)
    keep = [[True, False, False, True], [False, True, True, True]]
    body = {
        "inputs": [
            _v2_input("x", x),
            {"name": "keep", "shape": [2, 4], "datatype": "BOOL", "data": keep},
        ]
    }
    response = httpx.post(f"{url}/v1/models/hand_built:mask", json=body)
    assert response.status_code == 200, response.text
    document = response.json()
    assert [entry["mask"] for entry in document["inputs"]] == [None, None]
    assert document["outputs"] == [
        {
            "name": "y",
            "shape": [2, 4, 2],
            "mask_output": "y_mask",
            "mask": keep,
            "masked_timesteps": [[1, 2], [0]],
        }
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (
            "mlp",
            {
                "inputs": [
                    {
                        "name": "hidden_1_input",
                        "shape": [1, 784],
                        "datatype": "FP32",
                        "data": [0.0] * 784,
                    }
                ]
            },
            400,
            "model 'mlp' version 1 has neither Masking layers applied to its inputs nor mask "
            "outputs ('<output>_mask'), so it has no masks to report",
        ),
        (
            "nope",
            {"inputs": []},
            404,
            "Request for unknown model: 'nope' is not found",
        ),
        (
            "seq_lstm",
            {
                "inputs": [
                    {"name": "seq", "shape": [1, 5, 3], "datatype": "FP32", "data": [0.0] * 15}
                ]
            },
            400,
            "unexpected shape for input 'seq' for model 'seq_lstm'. "
            "Expected [-1, 6, 3], got [1, 5, 3]",
        ),
        (
            "seq_lstm",
            {
                "inputs": [
                    {"name": "seq", "shape": [1, 6, 3], "datatype": "FP32", "data": [0.0] * 5}
                ]
            },
            400,
            "shape [1, 6, 3] needs 18 elements, 'data' has 5",
        ),
        ("seq_lstm", {"inputs": "x"}, 400, "'inputs' array"),
    ],
    ids=["no-masks", "unknown-model", "wrong-shape", "short-data", "no-inputs-array"],
)
def test_mask_endpoint_refusals(url, path, body, status, message):
    response = httpx.post(f"{url}/v1/models/{path}:mask", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
