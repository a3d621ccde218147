"""The model repository of the gRPC tests: the demo models, a masking LSTM whose mask is
an output, identity models of every datatype, and models whose config makes queue
behaviour deterministic (as in test_v2_queue_errors)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from live_server import free_port, running_server, write_model
from onnx import TensorProto, helper

from layerserve import examples, initializers
from layerserve.layers import LSTM, Input, Masking
from layerserve.models import Model
from layerserve.service.settings import Settings

ONNX = {
    "FP32": TensorProto.FLOAT,
    "FP16": TensorProto.FLOAT16,
    "INT8": TensorProto.INT8,
    "UINT64": TensorProto.UINT64,
    "BOOL": TensorProto.BOOL,
    "BYTES": TensorProto.STRING,
}
# Every datatype an identity model may have (the repository above holds ONNX's).
ELEMENTS = {**ONNX, "FP64": TensorProto.DOUBLE, "INT64": TensorProto.INT64}
# A sample input [2, 3] of each datatype, with values at the ends of its range.
DATATYPES = {
    "FP32": np.array([[0.5, -1.25, 3e38], [0.0, -0.0, 1e-38]], np.float32),
    "FP16": np.array([[0.5, -1.25, 65504], [0.0, 1e-4, -2]], np.float16),
    "INT8": np.array([[-128, 0, 127], [1, -1, 5]], np.int8),
    "UINT64": np.array([[0, 2**64 - 1, 2**63], [1, 2, 3]], np.uint64),
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "BYTES": np.array([["a", "", "ünï"], ["xyz", "0", "long " * 5]], dtype=object),
}
NUMPY = {name: array.dtype for name, array in DATATYPES.items() if name != "BYTES"}
QUEUES = {
    "delayed": {"max_batch_size": 8, "max_queue_delay_us": 200_000},
    "tiny_queue": {"max_batch_size": 8, "max_queue_delay_us": 600_000, "max_queue_size": 1},
}


def identity_name(datatype: str) -> str:
    return f"identity_{datatype.lower()}"


def write_identity(
    root: Path,
    name: str,
    datatype: str,
    config: dict | None = None,
    version: str = "1",
    shape: tuple[str | int, ...] = ("batch", 3),
) -> None:
    """``y = Identity(x)``, x of ``shape`` ([batch, 3]), as ``version`` of ``name``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        name,
        [helper.make_tensor_value_info("x", ELEMENTS[datatype], list(shape))],
        [helper.make_tensor_value_info("y", ELEMENTS[datatype], list(shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (root / name / version).mkdir(parents=True)
    onnx.save(model, root / name / version / "model.onnx")
    if config is not None:
        (root / name / "config.json").write_text(json.dumps(config))


def mask_model() -> Model:
    """Masking(0) then LSTM(return_sequences=True): the output carries the input's mask."""
    seq = Input((6, 3), name="seq")
    masked = Masking(0.0, name="masking")(seq)
    lstm = LSTM(
        4,
        return_sequences=True,
        kernel_initializer=initializers.glorot_uniform(seed=1),
        recurrent_initializer=initializers.Orthogonal(seed=2),
        name="lstm",
    )
    out = lstm(masked)
    return Model(seq, out, name="seq_lstm")


def mask_model_input() -> np.ndarray:
    """5 rows of 6 timesteps: zero timesteps first, inside, last, none and all."""
    x = np.random.default_rng(7).uniform(0.5, 1.5, (5, 6, 3)).astype(np.float32)
    for row, steps in enumerate([[0], [2, 5], [1, 2, 3], [], [0, 1, 2, 3, 4, 5]]):
        x[row, steps] = 0.0
    return x


def write_models(root: Path, large_identity: bool = False) -> Path:
    """The repository; with ``large_identity``, ``identity_large`` too: FP32 [batch, 3]
    without a batch limit (any number of rows: messages of any size)."""
    write_model(root, "mlp", examples.mlp(), "1", {"max_batch_size": 64})
    write_model(root, "mlp", examples.mlp(), "2")
    write_model(root, "limited", examples.mlp(), "1", {"max_batch_size": 4})
    write_model(root, "conv_flatten", examples.conv_flatten())
    write_model(root, "hadamard", examples.hadamard_model())
    write_model(root, "seq_lstm", mask_model())
    for datatype in ONNX:
        write_identity(root, identity_name(datatype), datatype)
    for name, config in QUEUES.items():
        write_identity(root, name, "FP32", config)
    if large_identity:
        write_identity(root, "identity_large", "FP32", {"max_batch_size": 0})
    return root


@contextlib.contextmanager
def grpc_server(root: Path, **settings: Any) -> Iterator[tuple[str, str]]:
    """A server on ``root`` with its gRPC port (and ``settings``): its HTTP URL and its
    gRPC target."""
    port = free_port()
    with running_server(Settings(model_repository=root, grpc_port=port, **settings)) as url:
        yield url, f"127.0.0.1:{port}"


def decode_raw(raw: bytes, datatype: str, shape: list[int]) -> np.ndarray:
    """A raw_output_contents entry: little-endian values, or 4-byte-length-prefixed
    BYTES elements."""
    if datatype != "BYTES":
        return np.frombuffer(raw, NUMPY[datatype].newbyteorder("<")).reshape(shape)
    items, offset = [], 0
    while offset < len(raw):
        length = int.from_bytes(raw[offset : offset + 4], "little")
        items.append(raw[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return np.array(items, dtype=object).reshape(shape)
