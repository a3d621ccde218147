"""The parity report itself: outputs that are inputs, and NaN disagreements."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from layerserve.export import to_onnx
from layerserve.export.parity import compare, sample_inputs
from layerserve.layers import Dense, Input
from layerserve.models import Model


def _dense_model() -> Model:
    x = Input((4,), name="x")
    return Model(x, Dense(3, name="dense")(x))


def test_an_output_that_is_also_an_input_is_compared_under_its_exported_name():
    x = Input((4,), name="x")
    model = Model(x, [Dense(3, name="dense")(x), x])
    graph_outputs = [o.name for o in to_onnx(model).graph.output]
    assert "x_output" in graph_outputs
    report = compare(model, to_onnx(model))
    assert report.masks_equal and report.max_abs_error < 1e-5


def _with_kernel(onnx_model: onnx.ModelProto, kernel: np.ndarray) -> onnx.ModelProto:
    changed = onnx.ModelProto()
    changed.CopyFrom(onnx_model)
    for index, tensor in enumerate(changed.graph.initializer):
        if numpy_helper.to_array(tensor).shape == kernel.shape:
            changed.graph.initializer[index].CopyFrom(numpy_helper.from_array(kernel, tensor.name))
            return changed
    raise AssertionError("no initializer of the kernel's shape")


def test_nan_against_a_number_is_an_infinite_error():
    model = _dense_model()
    kernel = model.get_weights()[0].copy()
    kernel[0, 0] = np.nan
    assert compare(model, _with_kernel(to_onnx(model), kernel)).max_abs_error == np.inf


def test_a_changed_weight_shows_as_the_difference_it_makes():
    model = _dense_model()
    kernel = model.get_weights()[0].copy()
    kernel[:, 0] += 0.5  # output 0 moves by 0.5 * sum(x)
    report = compare(model, _with_kernel(to_onnx(model), kernel), batch_sizes=(3,))
    x = sample_inputs(model, 3, seed=3)[0]  # compare() draws batch b with seed + b
    expected = np.abs(0.5 * x.astype(np.float64).sum(axis=1)).max()
    assert np.isclose(report.max_abs_error, expected, rtol=1e-5)
