"""Real model files for the conversion tests: saved by Keras 3, by layerserve, by the
exporter and by onnx.helper, and zip archives rewritten entry by entry."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import struct
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")
if "keras" not in sys.modules and "KERAS_HOME" not in os.environ:
    _home = tempfile.mkdtemp(prefix="layerserve-keras-home-")
    os.environ["KERAS_HOME"] = _home  # keep Keras's settings file out of the user's home
    atexit.register(shutil.rmtree, _home, ignore_errors=True)

import keras  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

RNG = np.random.default_rng(5)


def randomized(model: Any) -> Any:
    model.set_weights([RNG.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


def keras_mlp() -> Any:
    layers = keras.layers
    return randomized(
        keras.Sequential([keras.Input((5,)), layers.Dense(4, activation="relu"), layers.Dense(3)])
    )


def keras_masked_lstm() -> Any:
    layers = keras.layers
    return randomized(
        keras.Sequential(
            [keras.Input((6, 3)), layers.Masking(), layers.LSTM(4, return_sequences=True)]
        )
    )


def keras_lambda() -> Any:
    layers = keras.layers
    return keras.Sequential([keras.Input((3,)), layers.Lambda(lambda x: x * 2), layers.Dense(2)])


def double(x: Any) -> Any:
    """A named function: Keras 3 stores its name and module, not its code."""
    return x * 2


def keras_named_lambda() -> Any:
    layers = keras.layers
    return keras.Sequential(
        [keras.Input((3,)), layers.Lambda(double, output_shape=(3,)), layers.Dense(2)]
    )


def mc_dropout_archive(path: Path) -> Path:
    """A layerserve archive (Keras 2 semantics) whose Dropout is called with
    training=True: it loads, but a graph that drops units at inference has no ONNX
    export. (Keras 3 files never carry it: Keras 3 replaces a recorded `training` with
    the model call's, and predicts with the Dropout inactive.)"""
    from layerserve.layers import Dense, Dropout, Input
    from layerserve.models import Model

    inputs = Input((3,), name="x")
    hidden = Dense(4, name="dense")(inputs)
    Model(inputs, Dropout(0.5, name="dropout")(hidden, training=True)).save(path)
    return path


def keras_unknown_layers() -> Any:
    """Two layer classes layerserve does not implement, beside one it does."""
    layers = keras.layers
    sequences, values = keras.Input((4, 5, 3)), keras.Input((3,))
    recurrent = layers.ConvLSTM1D(2, 2)(sequences)
    buckets = layers.Discretization(bin_boundaries=[0.0, 1.0])(layers.Dense(3)(values))
    return keras.Model([sequences, values], [recurrent, buckets])


def save_keras(model: Any, path: Path) -> Path:
    """``.keras`` archives, or Keras 3's legacy HDF5 format for a ``.h5`` path."""
    keras.saving.save_model(model, path)
    return path


def matmul_add_onnx(weights: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """``y = x @ weights + bias``, written node by node."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "matmul_add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", weights.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", weights.shape[1]])],
        [onnx.numpy_helper.from_array(weights, "W"), onnx.numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def single_node_onnx(
    node: onnx.NodeProto, inputs: dict[str, list], output: list, **model_kwargs: Any
) -> onnx.ModelProto:
    """One float node with float inputs of the given shapes and one output ``y``."""
    graph = helper.make_graph(
        [node],
        "single",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output)],
    )
    model_kwargs.setdefault("opset_imports", [helper.make_opsetid("", 17)])
    return helper.make_model(graph, ir_version=8, **model_kwargs)


def zip_bytes(entries: list[tuple[str | zipfile.ZipInfo, bytes]], deflate: bool = True) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in entries:
            archive.writestr(name, data, compress_type=method)
    return buffer.getvalue()


def entries_of(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def declare_size(data: bytes, name: str, size: int) -> bytes:
    """The archive with ``name``'s uncompressed size, in its local and central headers,
    replaced by ``size``: a header that lies."""
    patched = bytearray(data)
    encoded = name.encode()
    for signature, name_at, size_at in ((b"PK\x03\x04", 30, 22), (b"PK\x01\x02", 46, 24)):
        start = 0
        while (start := patched.find(signature, start)) >= 0:
            if patched[start + name_at : start + name_at + len(encoded)] == encoded:
                patched[start + size_at : start + size_at + 4] = struct.pack("<L", size)
            start += 4
    return bytes(patched)
