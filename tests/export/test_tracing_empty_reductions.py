"""Means traced into ONNX over axes that may be empty: onnxruntime's ReduceMean answers 0
over an empty axis, where NumPy (and so the reference) answers 0/0 = NaN. np.mean, np.var
and np.std over an axis of unknown size must give NumPy's numbers at every length, 0
included."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from layerserve.export import to_onnx
from layerserve.layers import Input, Lambda
from layerserve.models import Model

FUNCTIONS = {
    "mean": lambda t: np.mean(t, axis=1),
    "mean_keepdims": lambda t: np.mean(t, axis=-1, keepdims=True),
    "var": lambda t: np.var(t, axis=1),
    "std": lambda t: np.std(t, axis=(1, 2)),
    "int_mean": lambda t: np.mean(t.astype(np.int32), axis=1),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_mean_over_an_empty_axis_is_nan_as_in_numpy(name):
    x = Input((None, None))
    model = Model(x, Lambda(FUNCTIONS[name])(x))
    session = ort.InferenceSession(
        to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    for shape in [(2, 0, 3), (2, 3, 0), (2, 0, 0), (0, 3, 2), (2, 4, 3)]:
        a = rng.normal(size=shape).astype(np.float32)
        (got,) = session.run(None, {session.get_inputs()[0].name: a})
        with np.errstate(all="ignore"):
            expected = FUNCTIONS[name](a)
            reference = model.predict(a)
        assert got.shape == expected.shape, (shape, got.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-5, equal_nan=True, err_msg=str(shape))
        np.testing.assert_allclose(reference, expected, rtol=1e-5, equal_nan=True)
