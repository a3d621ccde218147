"""The warm-up run of a model load: a graph that never finishes, or that declares
inputs too large to allocate, fails the load with a typed error instead of holding a
thread (and with it every later upload) for ever."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from layerserve.service import runtime
from layerserve.service.errors import ModelLoadError
from layerserve.service.model_config import ModelConfig
from layerserve.service.runtime import LoadedModel
from layerserve.service.settings import Settings


def _save(graph: onnx.GraphProto, path) -> object:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, path)
    return path


def endless_loop(path, steps: int):
    """y = x after ``steps`` iterations of an Identity body."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["v_in"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1]),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["steps", "go", "x"], ["y"], body=body)],
        "loop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [
            numpy_helper.from_array(np.array(steps, np.int64), "steps"),
            numpy_helper.from_array(np.array(True), "go"),
        ],
    )
    return _save(graph, path)


def huge_static_input(path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1 << 40])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1 << 40])],
    )
    return _save(graph, path)


def _load(path):
    config = ModelConfig().resolved(Settings())
    return LoadedModel.load("m", "1", path, config)


def test_a_loop_that_ends_loads(tmp_path):
    model = _load(endless_loop(tmp_path / "short.onnx", steps=3))
    x = np.array([2.5], np.float32)
    np.testing.assert_array_equal(model.run({"x": x})["y"], x)  # Identity body: y == x


def test_a_run_that_does_not_end_fails_the_load_at_the_time_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "WARMUP_SECONDS", 0.5)
    path = endless_loop(tmp_path / "endless.onnx", steps=10**15)
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match=r"warm-up run .*at most 0\.5 s"):
        _load(path)
    assert time.monotonic() - started < 20  # stopped, not run to the end


def test_inputs_too_large_to_allocate_fail_the_load_naming_the_size(tmp_path):
    with pytest.raises(ModelLoadError, match=f"declares inputs of {4 << 40} bytes"):
        _load(huge_static_input(tmp_path / "huge.onnx"))
