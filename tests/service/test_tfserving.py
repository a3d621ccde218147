"""TensorFlow Serving REST end to end: plain httpx against a real uvicorn on loopback.

Numbers are checked against the NumPy reference (``layerserve.examples.<model>()``),
bytes and shapes against hand-written expectations. The session repository has mlp
(versions 1 and 2), conv_flatten, masking_lstm and hadamard (inputs left/right, outputs
hadamard/hadamard_1); a second server in this module serves hand-built ONNX models with
string, integer and boolean tensors and a model with a ``<output>_mask`` output.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json

import httpx
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live_server import running_server, write_model
from onnx import TensorProto, helper

from layerserve import examples, initializers
from layerserve.layers import Dense, Masking
from layerserve.models import Sequential
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

ATOL = 1e-5
# name -> (builder, input names, output names); names as the exporter writes them.
MODELS = {
    "mlp": (examples.mlp, ["hidden_1_input"], ["probabilities"]),
    "conv_flatten": (examples.conv_flatten, ["conv_input"], ["flatten"]),
    "masking_lstm": (examples.masking_lstm, ["masking_input"], ["lstm"]),
    "hadamard": (examples.hadamard_model, ["left", "right"], ["hadamard", "hadamard_1"]),
}


@pytest.fixture(scope="module")
def references():
    return {name: build() for name, (build, _, _) in MODELS.items()}


def _masked_model() -> Sequential:
    return Sequential(
        [
            Masking(mask_value=0.0, input_shape=(4, 3), name="masking"),
            Dense(2, kernel_initializer=initializers.glorot_uniform(seed=11), name="dense"),
        ],
        name="masked",
    )


def _identity_model(path, inputs: dict[str, tuple[int, list]], outputs: dict[str, str]) -> None:
    """An ONNX graph of Identity nodes: ``outputs`` maps each output to its input."""
    graph = helper.make_graph(
        [helper.make_node("Identity", [source], [out]) for out, source in outputs.items()],
        "identity",
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [
            helper.make_tensor_value_info(out, inputs[source][0], inputs[source][1])
            for out, source in outputs.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True)
    onnx.save(model, path)


@pytest.fixture(scope="module")
def extra_url(tmp_path_factory):
    """strings (text -> echo_bytes, echo), typed (ids INT32, flags BOOL), wide (i64 INT64,
    u64 UINT64), masked, and spare (masked again, version 3) for the unload test."""
    root = tmp_path_factory.mktemp("tfserving-repository")
    _identity_model(
        root / "strings" / "1" / "model.onnx",
        {"text": (TensorProto.STRING, [None, 2])},
        {"echo_bytes": "text", "echo": "text"},
    )
    _identity_model(
        root / "typed" / "1" / "model.onnx",
        {"ids": (TensorProto.INT32, [None, 3]), "flags": (TensorProto.BOOL, [None, 3])},
        {"ids_out": "ids", "flags_out": "flags"},
    )
    _identity_model(
        root / "wide" / "1" / "model.onnx",
        {"i64": (TensorProto.INT64, [None, 3]), "u64": (TensorProto.UINT64, [None, 3])},
        {"i64_out": "i64", "u64_out": "u64"},
    )
    write_model(root, "masked", _masked_model())
    write_model(root, "spare", _masked_model(), "3")
    with running_server(Settings(model_repository=root)) as url:
        yield url


@pytest.fixture
def urls(server_url, extra_url):
    return {"main": server_url, "extra": extra_url}


def _inputs(name: str, references, batch: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    arrays = examples.example_inputs(references[name], batch=batch, seed=seed)
    return dict(zip(MODELS[name][1], arrays, strict=True))


def _expected(name: str, references, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    arrays = [inputs[n] for n in MODELS[name][1]]
    result = references[name].predict(arrays if len(arrays) > 1 else arrays[0])
    result = result if isinstance(result, list) else [result]
    return dict(zip(MODELS[name][2], result, strict=True))


def _row_request(inputs: dict[str, np.ndarray], named: bool) -> dict:
    if not named:
        (array,) = inputs.values()
        return {"instances": array.tolist()}
    rows = len(next(iter(inputs.values())))
    return {"instances": [{n: a[i].tolist() for n, a in inputs.items()} for i in range(rows)]}


def _post(url: str, path: str, body: dict | None = None, **kwargs) -> httpx.Response:
    if body is not None:
        kwargs["content"] = json.dumps(body)
    return httpx.post(url + path, timeout=30, **kwargs)


# ---- predict: numbers equal the NumPy reference --------------------------------------
# A plain list cannot carry two inputs (the error table covers that), so hadamard is
# sent with named inputs only.
PREDICT_CASES = [
    (name, style)
    for name in MODELS
    for style in ("row", "row-named", "columnar", "columnar-named")
    if len(MODELS[name][1]) == 1 or style.endswith("named")
]


@pytest.mark.parametrize(("name", "style"), PREDICT_CASES)
def test_predict_equals_the_numpy_reference(server_url, references, name, style):
    inputs = _inputs(name, references)
    expected = _expected(name, references, inputs)
    multi_out = len(expected) > 1
    if style.startswith("row"):
        body = _row_request(inputs, named=style == "row-named")
    elif style == "columnar":
        body = {"inputs": next(iter(inputs.values())).tolist()}
    else:
        body = {"inputs": {n: a.tolist() for n, a in inputs.items()}}
    response = _post(server_url, f"/v1/models/{name}:predict", body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    if style.startswith("row"):
        assert list(document) == ["predictions"]
        predictions = document["predictions"]
        assert len(predictions) == 3
        if multi_out:  # one object per example, output name -> that example's value
            assert all(list(p) == MODELS[name][2] for p in predictions)
            got = {n: np.array([p[n] for p in predictions]) for n in expected}
        else:
            got = {MODELS[name][2][0]: np.array(predictions)}
    else:
        assert list(document) == ["outputs"]
        outputs = document["outputs"]
        if multi_out:
            assert list(outputs) == MODELS[name][2]
            got = {n: np.array(v) for n, v in outputs.items()}
        else:
            got = {MODELS[name][2][0]: np.array(outputs)}
    for output, value in expected.items():
        assert got[output].shape == value.shape
        np.testing.assert_allclose(got[output], value, atol=ATOL, rtol=ATOL)


def test_integers_are_cast_to_the_float_input(server_url, references):
    x = np.arange(16, dtype=np.int64).reshape(2, 8) % 3
    body = {"inputs": {"left": x.tolist(), "right": (x + 1).tolist()}}
    response = _post(server_url, "/v1/models/hadamard:predict", body)
    assert response.status_code == 200, response.text
    product, total = references["hadamard"].predict(
        [x.astype(np.float32), (x + 1).astype(np.float32)]
    )
    outputs = response.json()["outputs"]
    np.testing.assert_allclose(outputs["hadamard"], product, atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(outputs["hadamard_1"], total, atol=ATOL, rtol=ATOL)


def test_nan_tokens_in_the_request_and_the_response(server_url, references):
    x = _inputs("mlp", references, batch=2)["hidden_1_input"]
    x[0, 5] = np.nan
    response = _post(
        server_url, "/v1/models/mlp:predict", content=json.dumps({"instances": x.tolist()})
    )
    assert b"NaN" in response.content and response.status_code == 200, response.text
    got = np.array(json.loads(response.content)["predictions"], dtype=np.float32)
    expected = references["mlp"].predict(x)
    assert np.isnan(got[0]).all() and np.isfinite(got[1]).all()
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=ATOL, equal_nan=True)


def test_infinity_tokens_in_the_request_and_the_response(server_url, references):
    inputs = _inputs("hadamard", references, batch=2)
    inputs["left"][0, 0] = np.inf
    inputs["right"][1, 3] = -np.inf
    raw = json.dumps({"inputs": {n: a.tolist() for n, a in inputs.items()}})
    assert "-Infinity" in raw
    response = _post(server_url, "/v1/models/hadamard:predict", content=raw)
    assert response.status_code == 200, response.text
    for token in (b"Infinity", b"-Infinity", b"NaN"):
        assert token in response.content
    outputs = json.loads(response.content)["outputs"]
    with np.errstate(invalid="ignore", over="ignore"):
        expected = _expected("hadamard", references, inputs)
    for name, value in expected.items():
        got = np.array(outputs[name], dtype=np.float32)
        assert np.isinf(got).any() or np.isnan(got).any()
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(value))
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(value))
        np.testing.assert_allclose(got, value, atol=ATOL, rtol=ATOL, equal_nan=True)


def test_gzip_request(server_url, references):
    inputs = _inputs("masking_lstm", references, batch=2)
    body = gzip.compress(json.dumps({"inputs": inputs["masking_input"].tolist()}).encode())
    response = _post(
        server_url,
        "/v1/models/masking_lstm:predict",
        content=body,
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    expected = _expected("masking_lstm", references, inputs)["lstm"]
    np.testing.assert_allclose(response.json()["outputs"], expected, atol=ATOL, rtol=ATOL)


def test_concurrent_requests_each_get_their_own_rows(server_url, references):
    """Through DataPlane.infer and its batcher: merged runs return each client's rows."""
    batches = [
        _inputs("mlp", references, batch=1 + i % 3, seed=i)["hidden_1_input"] for i in range(24)
    ]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server_url, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post("/v1/models/mlp:predict", json={"instances": b.tolist()})
                    for b in batches
                )
            )

    responses = asyncio.run(run())
    model = references["mlp"]
    for batch, response in zip(batches, responses, strict=True):
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["predictions"], model.predict(batch), atol=ATOL)


# ---- bytes, integers, booleans and mask outputs (second server) ----------------------
def _b64(raw: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(raw).decode("ascii")}


def test_b64_values_in_and_out_row_format(extra_url):
    words = [["héllo", "wörld"], ["", "tf serving"]]
    instances = [[_b64(w.encode()) for w in words[0]], [words[1][0], _b64(words[1][1].encode())]]
    response = _post(extra_url, "/v1/models/strings:predict", {"instances": instances})
    assert response.status_code == 200, response.text
    # Outputs in model order; `echo_bytes` ends in _bytes, so it is written as b64.
    assert response.json() == {
        "predictions": [
            {"echo_bytes": [_b64(w.encode()) for w in row], "echo": row} for row in words
        ]
    }


def test_b64_values_in_and_out_columnar_format(extra_url):
    body = {"inputs": [[{"b64": "aGk="}, "plain"]], "signature_name": "serving_default"}
    response = _post(extra_url, "/v1/models/strings:predict", body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "outputs": {
            "echo_bytes": [[{"b64": "aGk="}, {"b64": "cGxhaW4="}]],
            "echo": [["hi", "plain"]],
        }
    }


def test_integer_and_boolean_inputs(extra_url):
    body = {
        "instances": [
            {"ids": [1, -2, 2147483647], "flags": [True, False, True]},
            {"ids": [3.0, 0, -2147483648], "flags": [False, False, True]},
        ]
    }
    response = _post(extra_url, "/v1/models/typed:predict", body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "predictions": [
            {"ids_out": [1, -2, 2147483647], "flags_out": [True, False, True]},
            {"ids_out": [3, 0, -2147483648], "flags_out": [False, False, True]},
        ]
    }


INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)


@settings(max_examples=40, deadline=None)
@given(
    i64=st.lists(INT64, min_size=3, max_size=3),
    u64=st.lists(UINT64, min_size=3, max_size=3),
    columnar=st.booleans(),
    as_float=st.integers(0, 2),
)
def test_64_bit_integers_come_back_exact(extra_url, i64, u64, columnar, as_float):
    """Identity over INT64 and UINT64: every integer comes back as it was sent, however
    large, also beside one written as a float (which makes NumPy infer float64 for the
    whole list, the way 2**63 beside 1 does)."""
    i64, u64 = list(i64), list(u64)
    i64[as_float] = float(i64[as_float] % 2**53)
    row = {"i64": i64, "u64": u64}
    body = {"inputs": {k: [v] for k, v in row.items()}} if columnar else {"instances": [row]}
    response = _post(extra_url, "/v1/models/wide:predict", body)
    assert response.status_code == 200, response.text
    answer = response.json()["outputs" if columnar else "predictions"]
    answer = {k: v[0] for k, v in answer.items()} if columnar else answer[0]
    assert answer == {"i64_out": [int(v) for v in i64], "u64_out": u64}


def test_mask_outputs_only_when_asked_for(extra_url):
    """A one-output Keras model with a mask answers plain lists, as TF Serving does; the
    mask comes back when ``output_filter`` names it."""
    x = np.random.default_rng(3).standard_normal((2, 4, 3)).astype(np.float32)
    x[0, 1:] = 0.0
    x[1, 3] = 0.0
    expected = _masked_model().predict(x)
    response = _post(extra_url, "/v1/models/masked:predict", {"instances": x.tolist()})
    assert response.status_code == 200, response.text
    plain = response.json()["predictions"]
    assert np.asarray(plain).shape == (2, 4, 2)
    np.testing.assert_allclose(plain, expected, atol=ATOL)
    body = {"instances": x.tolist(), "output_filter": ["dense", "dense_mask"]}
    response = _post(extra_url, "/v1/models/masked:predict", body)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [list(p) for p in predictions] == [["dense", "dense_mask"]] * 2
    assert [p["dense_mask"] for p in predictions] == [
        [True, False, False, False],
        [True, True, True, False],
    ]
    np.testing.assert_allclose([p["dense"] for p in predictions], expected, atol=ATOL)


# ---- status, metadata and version addressing ----------------------------------------
def _available(*versions: str) -> list[dict]:
    return [
        {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        for v in versions
    ]


@pytest.mark.parametrize(
    ("path", "versions"),
    [
        ("/v1/models/mlp", ["1", "2"]),
        ("/v1/models/mlp/versions/1", ["1"]),
        ("/v1/models/mlp/versions/2", ["2"]),
        # a label's status is its version's alone, as TF Serving answers: the one
        # Predict runs for `latest`
        ("/v1/models/mlp/labels/latest", ["2"]),
        ("/v1/models/hadamard", ["1"]),
    ],
)
def test_model_status(server_url, path, versions):
    response = httpx.get(server_url + path)
    assert response.status_code == 200, response.text
    name = path.split("/")[3]
    assert response.json() == {
        "model_version_status": _available(*versions),
        "name": name,
        "ready": True,
    }


def test_status_of_an_unloaded_model_and_after_reloading(extra_url):
    """TF Serving answers 200 with the state; KServe V1 clients read ``ready``."""
    assert httpx.post(extra_url + "/v2/repository/models/spare/unload").status_code == 200
    try:
        status = httpx.get(extra_url + "/v1/models/spare")
        assert status.status_code == 200, status.text
        assert status.json() == {
            "model_version_status": [
                {
                    "version": "3",
                    "state": "END",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ],
            "name": "spare",
            "ready": False,
        }
        assert "spare" not in httpx.get(extra_url + "/v1/models").json()["models"]
        x = [[[1.0, 2.0, 3.0]] * 4]
        predict = _post(extra_url, "/v1/models/spare:predict", {"instances": x})
        assert predict.status_code == 503, predict.text
        assert predict.headers["retry-after"] and "'spare'" in predict.json()["error"]
    finally:
        assert httpx.post(extra_url + "/v2/repository/models/spare/load").status_code == 200
    status = httpx.get(extra_url + "/v1/models/spare/versions/3")
    assert status.json() == {
        "model_version_status": _available("3"),
        "name": "spare",
        "ready": True,
    }


def test_model_list_for_kserve_v1_clients(server_url):
    response = httpx.get(server_url + "/v1/models")
    assert response.json() == {"models": ["conv_flatten", "hadamard", "masking_lstm", "mlp"]}


def _info(name: str, dtype: str, shape: list[int]) -> dict:
    dims = [{"size": str(d), "name": ""} for d in shape]
    return {"dtype": dtype, "tensor_shape": {"dim": dims, "unknown_rank": False}, "name": name}


@pytest.mark.parametrize(
    ("path", "version"),
    [
        ("/v1/models/mlp/metadata", "2"),
        ("/v1/models/mlp/versions/1/metadata", "1"),
        ("/v1/models/mlp/labels/latest/metadata", "2"),
    ],
)
def test_metadata_of_a_single_input_model(server_url, path, version):
    response = httpx.get(server_url + path)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "model_spec": {"name": "mlp", "signature_name": "", "version": version},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {
                            "hidden_1_input": _info("hidden_1_input", "DT_FLOAT", [-1, 784])
                        },
                        "outputs": {"probabilities": _info("probabilities", "DT_FLOAT", [-1, 10])},
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


@pytest.mark.parametrize(
    ("url_key", "name", "inputs", "outputs"),
    [
        (
            "main",
            "hadamard",
            {"left": ("DT_FLOAT", [-1, 8]), "right": ("DT_FLOAT", [-1, 8])},
            {"hadamard": ("DT_FLOAT", [-1, 32]), "hadamard_1": ("DT_FLOAT", [-1])},
        ),
        (
            "main",
            "conv_flatten",
            {"conv_input": ("DT_FLOAT", [-1, 3, 32, 32])},
            {"flatten": ("DT_FLOAT", [-1, 65536])},
        ),
        (
            "extra",
            "typed",
            {"ids": ("DT_INT32", [-1, 3]), "flags": ("DT_BOOL", [-1, 3])},
            {"ids_out": ("DT_INT32", [-1, 3]), "flags_out": ("DT_BOOL", [-1, 3])},
        ),
        (
            "extra",
            "strings",
            {"text": ("DT_STRING", [-1, 2])},
            {"echo_bytes": ("DT_STRING", [-1, 2]), "echo": ("DT_STRING", [-1, 2])},
        ),
        (
            "extra",
            "masked",
            {"masking_input": ("DT_FLOAT", [-1, 4, 3])},
            {"dense": ("DT_FLOAT", [-1, 4, 2]), "dense_mask": ("DT_BOOL", [-1, 4])},
        ),
    ],
)
def test_metadata_signature(urls, url_key, name, inputs, outputs):
    response = httpx.get(f"{urls[url_key]}/v1/models/{name}/metadata")
    assert response.status_code == 200, response.text
    signature = response.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature == {
        "inputs": {n: _info(n, t, s) for n, (t, s) in inputs.items()},
        "outputs": {n: _info(n, t, s) for n, (t, s) in outputs.items()},
        "method_name": "tensorflow/serving/predict",
    }


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/mlp:predict",
        "/v1/models/mlp/versions/1:predict",
        "/v1/models/mlp/versions/2:predict",
        "/v1/models/mlp/labels/latest:predict",
    ],
)
def test_predict_version_addressing(server_url, references, path):
    x = _inputs("mlp", references, batch=2, seed=7)["hidden_1_input"]
    response = _post(server_url, path, {"instances": x.tolist()})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        response.json()["predictions"], references["mlp"].predict(x), atol=ATOL, rtol=ATOL
    )


# ---- every client mistake: {"error"} and a 4xx/501, never a 500 ----------------------
MLP_ROW = [[0.5] * 784]
HAD_ROW = {"left": [0.5] * 8, "right": [0.25] * 8}
FLAGS = [[True, False, True]]
WIDE_ROW = {"i64": [1, 2, 3], "u64": [1, 2, 3]}


def _nested(depth: int) -> list:
    value: list = [0.5]
    for _ in range(depth):
        value = [value]
    return value


EXTRA_MODELS = ("strings", "typed", "wide")
GZIP = {"Content-Encoding": "gzip"}
TOO_LARGE = b" " * (9 * 1024 * 1024)  # the session server takes at most 8 MiB
# (id, path under /v1/models/, body: None -> GET, dict -> JSON, bytes -> raw; status,
#  fragments the error must contain). Models in EXTRA_MODELS live on the second server.
# fmt: off
ERRORS = [
    ("missing-both-keys", "mlp:predict", {"signature_name": "serving_default"}, 400,
     ["Missing 'inputs' or 'instances' key"]),
    ("both-keys", "mlp:predict", {"instances": MLP_ROW, "inputs": MLP_ROW}, 400,
     ["only one of 'inputs' or 'instances'"]),
    ("ragged-instances", "mlp:predict", {"instances": [[0.5] * 784, [0.5] * 783]}, 400,
     ["hidden_1_input", "ragged", "instances[1]", "[783]", "[784]"]),
    ("ragged-inside-an-instance", "masking_lstm:predict",
     {"instances": [[[0.0] * 8] * 9 + [[0.0] * 7]]}, 400,
     ["masking_input", "ragged", "[7]", "[8]"]),
    ("instances-without-example-dimension", "mlp:predict", {"instances": [0.5] * 784}, 400,
     ["hidden_1_input", "'mlp'", "shape [784]", "[-1, 784]", "got entries of shape []"]),
    ("columnar-without-batch-dimension", "mlp:predict", {"inputs": [0.5] * 784}, 400,
     ["hidden_1_input", "Expected [-1, 784], got [784]", "batch", "[1, 784]"]),
    ("columnar-wrong-width", "mlp:predict", {"inputs": [[0.5] * 783]}, 400,
     ["hidden_1_input", "Expected [-1, 784], got [1, 783]"]),
    ("row-wrong-width", "hadamard:predict",
     {"instances": [{"left": [0.5] * 7, "right": [0.5] * 7}]}, 400,
     ["'left'", "Expected [-1, 8], got [1, 7]"]),
    ("columnar-batch-mismatch", "hadamard:predict",
     {"inputs": {"left": [[0.5] * 8], "right": [[0.5] * 8] * 2}}, 400,
     ["batch size does not match"]),
    ("batch-above-max", "mlp/versions/1:predict", {"instances": MLP_ROW * 65}, 400,
     ["batch-size must be <= 64", "got 65"]),
    ("row-missing-input", "hadamard:predict", {"instances": [{"left": [0.5] * 8}]}, 400,
     ["missing ['right']", "instance 0"]),
    ("row-unknown-input", "hadamard:predict", {"instances": [{**HAD_ROW, "bogus": [1]}]}, 400,
     ["unexpected ['bogus']"]),
    ("row-plain-list-for-two-inputs", "hadamard:predict", {"instances": [[0.5] * 8]}, 400,
     ["plain list", "'left'", "'right'"]),
    ("row-object-then-list", "mlp:predict",
     {"instances": [{"hidden_1_input": [0.5] * 784}, [0.5] * 784]}, 400,
     ["Expecting object but got list at item 1"]),
    ("row-list-then-object", "mlp:predict",
     {"instances": [[0.5] * 784, {"hidden_1_input": [0.5] * 784}]}, 400,
     ["Expecting value/list but got object at item 1"]),
    ("columnar-unknown-input", "hadamard:predict", {"inputs": {**HAD_ROW, "bogus": [1]}}, 400,
     ["unexpected input 'bogus'", "['left', 'right']"]),
    ("columnar-missing-input", "hadamard:predict", {"inputs": {"left": [[0.5] * 8]}}, 400,
     ["Missing named input: 'right'"]),
    ("columnar-empty-object", "mlp:predict", {"inputs": {}}, 400,
     ["Missing named input: 'hidden_1_input'"]),
    ("columnar-plain-for-two-inputs", "hadamard:predict", {"inputs": [[0.5] * 8]}, 400,
     ["plain value/list", "2 inputs"]),
    ("empty-instances", "mlp:predict", {"instances": []}, 400, ["No values in 'instances'"]),
    ("instances-not-a-list", "mlp:predict", {"instances": 3}, 400,
     ["'instances' to be a list"]),
    ("string-for-float", "mlp:predict", {"instances": [["0.5"] * 784]}, 400,
     ["hidden_1_input", '"0.5"', "string", "FP32"]),
    ("null-for-float", "mlp:predict", {"instances": [[None] + [0.5] * 783]}, 400,
     ["null", "FP32"]),
    ("boolean-for-float", "mlp:predict", {"inputs": [[True] * 784]}, 400,
     ["true", "boolean", "FP32"]),
    # NumPy reads [0.5, true] as [0.5, 1.0]: a boolean among numbers is named, not run
    ("boolean-among-floats", "mlp:predict", {"instances": [[0.0, 1.0, 0.5, True] + [0.5] * 780]},
     400, ["true", "boolean", "FP32"]),
    ("boolean-among-ints", "typed:predict",
     {"inputs": {"ids": [[1, False, 2]], "flags": FLAGS}}, 400, ["'ids'", "false", "INT32"]),
    ("b64-for-float", "mlp:predict", {"inputs": [[{"b64": "AA=="}] * 784]}, 400,
     ["b64 object", "FP32"]),
    ("float-overflows-fp32", "mlp:predict", {"inputs": [[1e39] * 784]}, 400,
     ["1e+39", "does not fit FP32"]),
    ("nested-too-deep", "mlp:predict", {"inputs": _nested(150)}, 400,
     ["Expected rank 2 (shape [-1, 784]), got rank 151", "at most 64 dimensions"]),
    ("bad-signature-name", "mlp:predict",
     {"signature_name": "predict_images", "instances": MLP_ROW}, 400,
     ['"predict_images" not found', "serving_default"]),
    ("signature-name-not-a-string", "mlp:predict", {"signature_name": 3, "instances": MLP_ROW},
     400, ["'signature_name' key must be a string"]),
    ("invalid-json", "mlp:predict", b'{"instances": [[0.5,]]}', 400, ["JSON Parse error"]),
    ("invalid-json-with-nan", "mlp:predict", b'{"instances": [[NaN,]]}', 400,
     ["JSON Parse error"]),
    ("empty-body", "mlp:predict", b"", 400, ["JSON Parse error"]),
    ("body-not-an-object", "mlp:predict", b"[1, 2]", 400,
     ["JSON object", "'instances'", "'inputs'"]),
    ("bad-gzip", "mlp:predict", b"not gzip", 400, ["cannot be decompressed"]),
    ("body-too-large", "mlp:predict", TOO_LARGE, 413, ["exceeds the maximum"]),
    ("unknown-model-predict", "nope:predict", {"instances": MLP_ROW}, 404, ["'nope'"]),
    ("unknown-version-predict", "mlp/versions/3:predict", {"instances": MLP_ROW}, 404,
     ["version 3", "['1', '2']"]),
    ("non-numeric-version", "mlp/versions/x:predict", {"instances": MLP_ROW}, 404,
     ["version x"]),
    ("unknown-label-predict", "mlp/labels/stable:predict", {"instances": MLP_ROW}, 404,
     ["label 'stable'", "no version labels"]),
    ("unknown-model-status", "nope", None, 404, ["'nope'"]),
    ("unknown-version-status", "mlp/versions/3", None, 404, ["version 3"]),
    ("unknown-label-status", "mlp/labels/canary", None, 404, ["label 'canary'"]),
    ("unknown-model-metadata", "nope/metadata", None, 404, ["'nope'"]),
    ("unknown-version-metadata", "mlp/versions/9/metadata", None, 404, ["version 9"]),
    ("classify", "mlp:classify", {"examples": [{"x": 1.0}]}, 501,
     [":classify is not supported", "'mlp'"]),
    ("regress", "mlp/versions/1:regress", {"examples": [{"x": 1.0}]}, 501,
     [":regress is not supported"]),
    ("unknown-method", "mlp:explain", {"instances": MLP_ROW}, 400,
     ["Malformed request", ":predict"]),
    ("invalid-b64", "strings:predict", {"instances": [[{"b64": "%%%"}, "a"]]}, 400,
     ["'text'", "base64"]),
    ("b64-not-utf8", "strings:predict", {"instances": [[{"b64": "/w=="}, "a"]]}, 400,
     ["'text'", "UTF-8"]),
    ("number-for-string", "strings:predict", {"inputs": [[1, "a"]]}, 400,
     ["'text'", "number", "BYTES"]),
    ("object-for-string", "strings:predict", {"inputs": [[{"b64": "AA==", "x": 1}, "a"]]}, 400,
     ["'text'", "object", "BYTES"]),
    ("fraction-for-int", "typed:predict", {"inputs": {"ids": [[1.5, 0, 0]], "flags": FLAGS}},
     400, ["'ids'", "1.5", "not an integer", "INT32"]),
    ("int-overflow", "typed:predict", {"inputs": {"ids": [[2**31, 0, 0]], "flags": FLAGS}},
     400, ["'ids'", "2147483648", "does not fit INT32"]),
    ("huge-int", "typed:predict", {"inputs": {"ids": [[2**70, 0, 0]], "flags": FLAGS}}, 400,
     ["'ids'", "1.1805916207174113e+21", "does not fit INT32"]),
    ("int64-past-its-range", "wide:predict", {"instances": [WIDE_ROW | {"i64": [1, 2, 2**63]}]},
     400, ["'i64'", "9223372036854775808", "does not fit INT64"]),
    ("int64-below-its-range", "wide:predict",
     {"inputs": {"i64": [[1, 2, -(2**63) - 1]], "u64": [[1, 2, 3]]}}, 400,
     ["'i64'", "-9.223372036854776e+18", "does not fit INT64 exactly", "JSON integers"]),
    ("uint64-past-its-range", "wide:predict",
     {"instances": [WIDE_ROW | {"u64": [2**64, 1, 2]}]}, 400,
     ["'u64'", "1.8446744073709552e+19", "does not fit UINT64 exactly"]),
    ("uint64-negative", "wide:predict", {"instances": [WIDE_ROW | {"u64": [-1, 2**63, 3]}]},
     400, ["'u64'", "-1", "does not fit UINT64"]),
    ("int64-fraction-beside-a-large-integer", "wide:predict",
     {"instances": [WIDE_ROW | {"i64": [0.5, 2**62 + 1, 3]}]}, 400,
     ["'i64'", "0.5", "not an integer", "INT64"]),
    ("boolean-for-int", "typed:predict",
     {"inputs": {"ids": [[True, False, True]], "flags": FLAGS}}, 400,
     ["'ids'", "boolean", "INT32"]),
    ("number-for-bool", "typed:predict", {"inputs": {"ids": [[1, 0, 0]], "flags": [[1, 0, 1]]}},
     400, ["'flags'", "number", "BOOL"]),
]
# fmt: on


@pytest.mark.parametrize(
    ("path", "body", "status", "fragments"), [pytest.param(*row[1:], id=row[0]) for row in ERRORS]
)
def test_client_mistakes(urls, path, body, status, fragments):
    """Every mistake is a 4xx (or 501) with only {"error"}, naming what was wrong."""
    url = urls["extra" if path.startswith(EXTRA_MODELS) else "main"] + "/v1/models/" + path
    if body is None:
        response = httpx.get(url, timeout=30)
    else:
        content = json.dumps(body).encode() if isinstance(body, dict) else body
        headers = GZIP if body == b"not gzip" else {}
        response = httpx.post(url, content=content, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert list(document) == ["error"]
    for fragment in fragments:
        assert fragment in document["error"], (fragment, document["error"])


def test_no_values_get_no_hint_to_add_a_batch_dimension(server_url):
    """``{"inputs": []}`` holds no values: its shape [0] is refused as it is, with no
    suggestion of a shape [1, 0] to send instead."""
    response = _post(server_url, "/v1/models/mlp:predict", {"inputs": []})
    assert response.status_code == 400
    assert response.json()["error"].endswith("Expected [-1, 784], got [0]")
