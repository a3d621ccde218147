"""How ``layerserve bench`` turns a model's V2 metadata into request shapes and random
inputs (the runs themselves are in test_cli_bench.py, against a real server)."""

from __future__ import annotations

import numpy as np
import pytest

from layerserve.bench import random_inputs, request_shapes
from layerserve.errors import ConfigError, ShapeError

MLP = [{"name": "x", "datatype": "FP32", "shape": [-1, 784]}]
SEQUENCE = [{"name": "steps", "datatype": "FP32", "shape": [-1, -1, 4]}]
TWO = [
    {"name": "left", "datatype": "INT64", "shape": [-1, -1]},
    {"name": "right", "datatype": "BOOL", "shape": [2, 3]},
]


@pytest.mark.parametrize(
    ("inputs", "batch", "shapes", "expected"),
    [
        (MLP, 5, [], {"x": [5, 784]}),
        (MLP, 1, ["784"], {"x": [1, 784]}),
        (SEQUENCE, 3, ["steps=7,4"], {"steps": [3, 7, 4]}),
        (SEQUENCE, 2, ["9,4"], {"steps": [2, 9, 4]}),
        (TWO, 4, ["left=6"], {"left": [4, 6], "right": [2, 3]}),  # fixed first dimension kept
        ([{"name": "s", "datatype": "FP32", "shape": []}], 8, [], {"s": []}),
    ],
)
def test_request_shapes(inputs, batch, shapes, expected):
    assert request_shapes(inputs, batch, shapes) == expected


@pytest.mark.parametrize(
    ("inputs", "shapes", "error", "message"),
    [
        (SEQUENCE, [], ShapeError, "--shape steps=8,4"),
        (SEQUENCE, ["steps=7"], ShapeError, "gives 1 dimensions [7], but the model's input has 2"),
        (
            SEQUENCE,
            ["steps=7,5"],
            ShapeError,
            "dimension 2 must be 4 (fixed by the model), received 5",
        ),
        (SEQUENCE, ["other=7,4"], ConfigError, "no input 'other'; its inputs are steps"),
        (SEQUENCE, ["steps=7,x"], ConfigError, "expected positive integers"),
        (SEQUENCE, ["steps=0,4"], ConfigError, "expected positive integers"),
        (TWO, ["6"], ConfigError, "names no input, but the model has 2: left, right"),
    ],
)
def test_request_shapes_refusals(inputs, shapes, error, message):
    with pytest.raises(error) as caught:
        request_shapes(inputs, 1, shapes)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("datatype", "dtype", "low", "high"),
    [
        ("FP32", np.float32, 0, 1),
        ("FP16", np.float16, 0, 1),
        ("FP64", np.float64, 0, 1),
        ("INT64", np.int64, 0, 9),
        ("UINT8", np.uint8, 0, 9),
        ("INT32", np.int32, 0, 9),
        ("BOOL", np.bool_, 0, 1),
    ],
)
def test_random_inputs_have_the_datatype_and_shape(datatype, dtype, low, high):
    spec = [{"name": "x", "datatype": datatype, "shape": [-1, 5]}]
    (x,) = random_inputs(spec, {"x": [64, 5]}).values()
    assert x.dtype == np.dtype(dtype) and x.shape == (64, 5)
    assert low <= x.min() and x.max() <= high
    assert len(np.unique(x)) > 1


def test_random_text_inputs_are_strings():
    (x,) = random_inputs([{"name": "t", "datatype": "BYTES", "shape": [-1]}], {"t": [4]}).values()
    assert x.shape == (4,) and all(isinstance(v, str) and len(v) == 8 for v in x)
