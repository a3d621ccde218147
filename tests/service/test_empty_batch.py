"""An empty axis never reaches an onnxruntime recurrent op: onnxruntime aborts the whole
process (SIGABRT) when an LSTM, GRU or RNN op gets zero rows, or a GRU zero timesteps.
A batched graph holding one runs an empty request on one row of zeros and answers zero
rows; any other empty axis is refused with a 400, and an input declared with one keeps
the model from loading. The graphs here are ones another exporter would write (no guard
of their own); the server runs in a subprocess, so that a regression kills that process
and fails the test, not the test run."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from model_uploads import infer
from onnx import TensorProto, helper
from workers import eventually, fresh, serving

pytestmark = pytest.mark.parallel_safe

STEPS, FEATURES, UNITS = 3, 2, 4


def unguarded_gru(path: Path, batch: int | str = "batch", steps: int | str = STEPS) -> None:
    """(N, T, 2) -> Transpose -> GRU -> Y_h squeezed: (N, 4), no guard of any axis."""
    rng = np.random.default_rng(7)
    weights = {
        "W": rng.normal(size=(1, 3 * UNITS, FEATURES)),
        "R": rng.normal(size=(1, 3 * UNITS, UNITS)),
        "B": rng.normal(size=(1, 6 * UNITS)),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["x"], ["time_major"], perm=[1, 0, 2]),
            helper.make_node("GRU", ["time_major", "W", "R", "B"], ["", "y_h"], hidden_size=UNITS),
            helper.make_node("Squeeze", ["y_h", "axis0"], ["h"]),
        ],
        "unguarded_gru",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, steps, FEATURES])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [batch, UNITS])],
        [
            *(
                helper.make_tensor(name, TensorProto.FLOAT, value.shape, value.ravel())
                for name, value in weights.items()
            ),
            helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True)
    onnx.save(model, path)


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """gru: fixed steps, batched; gru_steps: any steps, batched; gru_unbatched: any batch
    and steps, not batched."""
    repository = tmp_path_factory.mktemp("empty_axes") / "models"
    for name, batch_size, steps in [
        ("gru", 8, STEPS),
        ("gru_steps", 8, "steps"),
        ("gru_unbatched", 0, "steps"),
    ]:
        unguarded_gru(repository / name / "1" / "model.onnx", steps=steps)
        config = {"max_batch_size": batch_size}
        (repository / name / "config.json").write_text(json.dumps(config))
    return repository


@pytest.fixture(scope="module")
def served(repository):
    with serving(repository, repository.parent, 2) as server:
        yield server


def expected_h(repository: Path, name: str, x: np.ndarray) -> np.ndarray:
    graph = str(repository / name / "1" / "model.onnx")
    return ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def fp32(shape: list[int]) -> dict:
    return {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": []}]}


def test_empty_batch_through_an_unguarded_recurrent_op(repository, served):
    x = np.random.default_rng(0).normal(size=(3, STEPS, FEATURES)).astype("float32")
    # fresh connections, so that the kernel hands them to both workers
    for _ in range(8):
        with fresh(served.url) as client:
            response = client.post("/v2/models/gru/infer", json=fp32([0, STEPS, FEATURES]))
        assert response.status_code == 200, response.text
        (output,) = response.json()["outputs"]
        assert output["shape"] == [0, UNITS] and output["data"] == []
    assert served.process.poll() is None
    response, outputs = infer(served.url, "gru", {"x": x})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(outputs["h"], expected_h(repository, "gru", x), rtol=1e-5, atol=1e-6)
    metrics = httpx.get(served.url + "/metrics").text
    assert "\nlayerserve_worker_restarts 0\n" in metrics, "a worker died"


@pytest.mark.parametrize(
    ("model", "shape", "past"),
    [
        ("gru_steps", [1, 0, FEATURES], " past the batch"),
        ("gru_steps", [0, 0, FEATURES], " past the batch"),
        ("gru_unbatched", [1, 0, FEATURES], ""),
        ("gru_unbatched", [0, STEPS, FEATURES], ""),
    ],
)
def test_other_empty_axes_are_refused_and_every_worker_lives(
    repository, served, model, shape, past
):
    for _ in range(4):  # fresh connections: both workers
        with fresh(served.url) as client:
            response = client.post(f"/v2/models/{model}/infer", json=fp32(shape))
        assert response.status_code == 400, response.text
        message = response.json()["error"]
        assert f"model '{model}' holds a recurrent op" in message, message
        assert f"input 'x'{past} to be at least 1. Received: shape {shape}" in message, message
    x = np.random.default_rng(1).normal(size=(2, 5, FEATURES)).astype("float32")
    response, outputs = infer(served.url, model, {"x": x})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(outputs["h"], expected_h(repository, model, x), rtol=1e-5, atol=1e-6)
    metrics = httpx.get(served.url + "/metrics").text
    assert "\nlayerserve_worker_restarts 0\n" in metrics, "a worker died"


def test_an_input_declared_with_an_empty_axis_is_never_loaded(repository, served):
    """Published into the served repository (written beside it, renamed in): its load
    fails before the warm-up would run the graph, and every worker lives."""
    staging = repository.parent / "staging" / "gru_no_steps"
    unguarded_gru(staging / "1" / "model.onnx", steps=0)
    (staging / "config.json").write_text(json.dumps({"max_batch_size": 8}))
    staging.rename(repository / "gru_no_steps")

    def refused() -> dict | None:
        index = httpx.post(served.url + "/v2/repository/index").json()
        entry = next((e for e in index if e["name"] == "gru_no_steps"), None)
        tried = entry is not None and entry.get("reason") != "not loaded"  # polled, not yet tried
        return entry if tried and entry["state"] == "UNAVAILABLE" else None

    entry = eventually(refused, "the model refused by the poll")
    assert "holds a recurrent op" in entry["reason"], entry
    assert "Declared: shape [-1, 0, 2]" in entry["reason"], entry
    metrics = httpx.get(served.url + "/metrics").text
    assert "\nlayerserve_worker_restarts 0\n" in metrics, "a worker died"
    assert served.process.poll() is None
