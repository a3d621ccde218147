"""Models served unbatched (``max_batch_size: 0``) whose inputs do not share a first
dimension, as ONNX graphs often have them: a bias beside the rows, a scalar factor. Each
is answered on V2 and TF Serving REST with the values a hand formula gives, checked by
:validate, and counted as one inference a request, as Triton counts it."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from live_server import running_server
from onnx import TensorProto, helper, save_model

from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe


def _unbatched(root, name: str, op: str, second: list) -> None:
    """``y = op(x, second)``, x of shape [N, 3]: a model served without batching."""
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "b"], ["y"])],
        name,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, second),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    (root / name / "1").mkdir(parents=True)
    save_model(model, str(root / name / "1" / "model.onnx"))
    (root / name / "config.json").write_text(json.dumps({"max_batch_size": 0}))


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("unbatched_repository")
    _unbatched(root, "bias", "Add", [3])  # b: 3 values beside any number of rows
    _unbatched(root, "scale", "Mul", [])  # b: a scalar
    with running_server(Settings(model_repository=root)) as served:
        yield served


X = np.array([[1, 2, 3], [4, 5, 6]], np.float32)


def tensor(name: str, array: np.ndarray) -> dict:
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": "FP32",
        "data": array.ravel().tolist(),
    }


def test_inputs_need_not_share_a_first_dimension(url):
    b = np.array([10, 20, 30], np.float32)
    inputs = [tensor("x", X), tensor("b", b)]
    assert httpx.post(f"{url}/v1/models/bias:validate", json={"inputs": inputs}).status_code == 200
    answer = httpx.post(f"{url}/v2/models/bias/infer", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    np.testing.assert_array_equal(np.reshape(answer.json()["outputs"][0]["data"], (2, 3)), X + b)
    columns = {"inputs": {"x": X.tolist(), "b": b.tolist()}}
    predicted = httpx.post(f"{url}/v1/models/bias:predict", json=columns)
    assert predicted.status_code == 200, predicted.text
    np.testing.assert_array_equal(predicted.json()["outputs"], X + b)
    stats = httpx.get(f"{url}/v2/models/bias/stats").json()["model_stats"][0]
    assert stats["inference_count"] == stats["inference_stats"]["success"]["count"] == 2


def test_a_scalar_input_is_given_in_columns_and_refused_in_rows(url):
    columns = {"inputs": {"x": X.tolist(), "b": 10.0}}
    answer = httpx.post(f"{url}/v1/models/scale:predict", json=columns)
    assert answer.status_code == 200, answer.text
    np.testing.assert_array_equal(answer.json()["outputs"], X * 10)
    rows = {"instances": [{"x": row, "b": 10.0} for row in X.tolist()]}
    refused = httpx.post(f"{url}/v1/models/scale:predict", json=rows)
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "input 'b' of model 'scale' is a scalar (shape []), which the row format "
        """('instances') cannot give; send it in the columnar format, {"inputs": {"b": 5}}"""
    )
