"""An empty batch never reaches an onnxruntime recurrent op: onnxruntime aborts the whole
process (SIGABRT) when an LSTM, GRU or RNN op gets zero rows, so a graph holding one runs
an empty request on one row of zeros and answers zero rows. The graph here is one another
exporter would write (no guard of its own); the server runs in a subprocess, so that a
regression kills that process and fails the test, not the test run."""

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
from workers import fresh, serving

pytestmark = pytest.mark.parallel_safe

STEPS, FEATURES, UNITS = 3, 2, 4


def unguarded_gru(path: Path) -> None:
    """(N, 3, 2) -> Transpose -> GRU -> Y_h squeezed: (N, 4), no batch-size guard."""
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
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", STEPS, FEATURES])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", UNITS])],
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


def test_empty_batch_through_an_unguarded_recurrent_op(tmp_path):
    repository = tmp_path / "models"
    graph = repository / "gru" / "1" / "model.onnx"
    unguarded_gru(graph)
    (repository / "gru" / "config.json").write_text(json.dumps({"max_batch_size": 8}))
    x = np.random.default_rng(0).normal(size=(3, STEPS, FEATURES)).astype("float32")
    expected = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    with serving(repository, tmp_path, 2) as served:
        # fresh connections, so that the kernel hands them to both workers
        for _ in range(8):
            with fresh(served.url) as client:
                response = client.post(
                    "/v2/models/gru/infer",
                    json={
                        "inputs": [
                            {
                                "name": "x",
                                "shape": [0, STEPS, FEATURES],
                                "datatype": "FP32",
                                "data": [],
                            }
                        ]
                    },
                )
            assert response.status_code == 200, response.text
            (output,) = response.json()["outputs"]
            assert output["shape"] == [0, UNITS] and output["data"] == []
        assert served.process.poll() is None
        response, outputs = infer(served.url, "gru", {"x": x})
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(outputs["h"], expected, rtol=1e-5, atol=1e-6)
        metrics = httpx.get(served.url + "/metrics").text
        assert "\nlayerserve_worker_restarts 0\n" in metrics, "a worker died"
