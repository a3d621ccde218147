"""A slow model for service tests: a hand-built ONNX graph (a chain of MatMul+Tanh sharing
one weight), so a request is slow in onnxruntime but small on the wire; its expectation is
the same chain computed with NumPy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LAYERS = 80  # 4096 rows take about 0.5 s on one thread of the reference 2-core machine
FEATURES, WIDTH, OUTPUTS = 16, 256, 4


def slow_weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        (rng.standard_normal((FEATURES, WIDTH)) / 4).astype(np.float32),
        (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32),
        (rng.standard_normal((WIDTH, OUTPUTS)) / np.sqrt(WIDTH)).astype(np.float32),
    )


def write_slow_model(root: Path, name: str, config: dict) -> None:
    w_in, w, w_out = slow_weights()
    nodes = [helper.make_node("MatMul", ["x", "w_in"], ["h0"])]
    for i in range(LAYERS):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("MatMul", [f"h{LAYERS}", "w_out"], ["y"]))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUTPUTS])],
        [numpy_helper.from_array(a, n) for a, n in ((w_in, "w_in"), (w, "w"), (w_out, "w_out"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    (root / name / "1").mkdir(parents=True)
    onnx.save(model, root / name / "1" / "model.onnx")
    (root / name / "config.json").write_text(json.dumps(config))


def slow_reference(x: np.ndarray) -> np.ndarray:
    w_in, w, w_out = slow_weights()
    h = x @ w_in
    for _ in range(LAYERS):
        h = np.tanh(h @ w)
    return h @ w_out
