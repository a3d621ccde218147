"""Helpers of the model upload tests: model files made by real tools, uploads and V2
inference over real HTTP, and byte-exact listings of a repository."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# onnxruntime of this project accepts these; make_model's defaults may be newer.
IR_VERSION, OPSET = 10, 17


def listing(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` (``.staging`` included): the SHA-256 of
    each file, "dir" for each directory."""
    entries = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        entries[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def staging_entries(root: Path) -> list[str]:
    staging = root / ".staging"
    return sorted(p.name for p in staging.iterdir()) if staging.is_dir() else []


def upload(
    url: str,
    name: str,
    path: Path,
    *,
    filename: str | None = None,
    config: Any = None,
    timeout: float = 120,
) -> httpx.Response:
    """POST the file as multipart field ``file``; ``config`` (dict or raw text) as the
    ``config`` field."""
    data = {}
    if config is not None:
        data["config"] = config if isinstance(config, str) else json.dumps(config)
    files = {"file": (filename or path.name, path.read_bytes(), "application/octet-stream")}
    return httpx.post(f"{url}/v1/models/{name}", files=files, data=data, timeout=timeout)


def infer(
    url: str,
    name: str,
    inputs: dict[str, np.ndarray],
    version: str | None = None,
    outputs: list[str] | None = None,
) -> tuple[httpx.Response, dict[str, np.ndarray]]:
    """A V2 JSON inference (asking for ``outputs`` when given); the response and its
    outputs as arrays (empty on failure)."""
    body: dict = {
        "inputs": [
            {
                "name": key,
                "shape": list(value.shape),
                "datatype": "FP32",
                "data": value.reshape(-1).tolist(),
            }
            for key, value in inputs.items()
        ]
    }
    if outputs is not None:
        body["outputs"] = [{"name": output} for output in outputs]
    route = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    response = httpx.post(url + route, json=body, timeout=60)
    if response.status_code != 200:
        return response, {}
    arrays = {
        o["name"]: np.asarray(o["data"], dtype=_numpy(o["datatype"])).reshape(o["shape"])
        for o in response.json()["outputs"]
    }
    return response, arrays


def _numpy(datatype: str) -> Any:
    return {"FP32": np.float32, "BOOL": np.bool_, "INT64": np.int64}[datatype]


# ---- hand-made ONNX graphs ----------------------------------------------------------
HAND_W = np.array([[1.0, -2.0], [0.5, 0.25], [-1.0, 3.0]], dtype=np.float32)
HAND_B = np.array([0.5, -1.0], dtype=np.float32)


def hand_reference(x: np.ndarray) -> np.ndarray:
    """What :func:`hand_onnx` computes: relu(x W + b), written out by hand."""
    rows = []
    for row in x:
        out = [sum(row[i] * HAND_W[i, j] for i in range(3)) + HAND_B[j] for j in range(2)]
        rows.append([max(0.0, v) for v in out])
    return np.asarray(rows, dtype=np.float32)


def _save(graph: onnx.GraphProto, path: Path, opsets: list[Any] | None = None) -> Path:
    model = helper.make_model(
        graph, opset_imports=opsets or [helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    onnx.save_model(model, path)
    return path


def hand_onnx(path: Path) -> Path:
    """y = relu(x W + b) on x: [batch, 3], built node by node."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["pre"]),
            helper.make_node("Relu", ["pre"], ["y"]),
        ],
        "hand_dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(HAND_W, "W"), numpy_helper.from_array(HAND_B, "b")],
    )
    return _save(graph, path)


def slow_onnx(
    path: Path, features: int = 1024, depth: int = 10, copies: int = 512, seed: int = 0
) -> tuple[Path, Any]:
    """A graph that takes a while per request however small the request is: each row is
    repeated ``copies`` times, multiplied ``depth`` times by a signed permutation matrix
    P, and the copies summed again: y = copies * x P^depth. Returns its reference."""
    rng = np.random.default_rng(seed)
    matrix = np.zeros((features, features), dtype=np.float32)
    matrix[np.arange(features), rng.permutation(features)] = rng.choice([-1.0, 1.0], features)
    chain = [helper.make_node("MatMul", [f"h{i}", "P"], [f"h{i + 1}"]) for i in range(depth)]
    graph = helper.make_graph(
        [
            helper.make_node("Tile", ["x", "repeats"], ["h0"]),
            *chain,
            helper.make_node("Reshape", [f"h{depth}", "split"], ["copies"]),
            helper.make_node("ReduceSum", ["copies", "axis0"], ["y"], keepdims=0),
        ],
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features])],
        [
            numpy_helper.from_array(matrix, "P"),
            numpy_helper.from_array(np.array([copies, 1], dtype=np.int64), "repeats"),
            numpy_helper.from_array(np.array([copies, -1, features], dtype=np.int64), "split"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
        ],
    )

    def reference(x: np.ndarray) -> np.ndarray:
        power = np.linalg.matrix_power(matrix.astype(np.float64), depth)
        return (copies * (x.astype(np.float64) @ power)).astype(np.float32)

    return _save(graph, path), reference


def external_data_onnx(directory: Path) -> Path:
    """A valid model whose weights live in a side file (only the .onnx is uploaded)."""
    path = hand_onnx(directory / "external_source.onnx")
    model = onnx.load(path)
    target = directory / "external.onnx"
    onnx.save_model(
        model,
        target,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="external.bin",
        size_threshold=0,
    )
    return target


def custom_domain_onnx(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example.custom")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.example.custom", 1)]
    return _save(graph, path, opsets)


def batch_of_two_onnx(path: Path) -> Path:
    """Valid, and loads, but runs only on batches of exactly two rows (a Reshape to a
    fixed [2, 3]): its one-row warm-up fails."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "two_rows",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "shape")],
    )
    return _save(graph, path)
