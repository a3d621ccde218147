"""Concatenate's other sizes checked at run time: onnxruntime's Concat checks no size of
an empty input, so (1, 0, 3) beside (1, 2, 3) came out (1, 2, 6), a third of it zeros no
client sent, where Keras and the reference refuse. Every pair of shapes must give the
reference's answer, or fail in onnxruntime where the reference refuses."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx_checks import OPSETS

from layerserve.errors import LayerserveError
from layerserve.export import to_onnx
from layerserve.export.parity import session
from layerserve.layers import Concatenate, Input
from layerserve.models import Model

SHAPES = [(1, 0, 3), (1, 2, 3), (0, 2, 3), (0, 0, 3), (2, 2, 3)]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("axis", [-1, 1])
def test_every_pair_of_shapes_answers_as_the_reference_or_fails(opset, axis):
    a, b = Input((None, 3)), Input((None, 3))
    model = Model([a, b], Concatenate(axis=axis)([a, b]))
    runner = session(to_onnx(model, opset=opset))
    names = [i.name for i in runner.get_inputs()]
    rng = np.random.default_rng(0)
    for left, right in itertools.product(SHAPES, repeat=2):
        x = [rng.normal(size=left).astype(np.float32), rng.normal(size=right).astype(np.float32)]
        try:
            expected = model.predict(x)
        except LayerserveError:
            with pytest.raises(Exception, match="needs_matching_sizes"):
                runner.run(None, dict(zip(names, x, strict=True)))
            continue
        (got,) = runner.run(None, dict(zip(names, x, strict=True)))
        assert got.shape == expected.shape, (left, right)
        np.testing.assert_array_equal(got, expected)
