"""Integer division (and np.where) traced into ONNX, at the edges of each type: a
divisor of 0 (NumPy answers 0) and, for the type's minimum, -1 (NumPy wraps the quotient;
onnxruntime's integer Div traps there, a SIGFPE that ends the whole process). Every pair
of edge values runs through the exported graph and must equal NumPy's answer."""

from __future__ import annotations

import itertools

import numpy as np
import onnxruntime as ort
import pytest

from layerserve.export import to_onnx
from layerserve.layers import Input, Lambda
from layerserve.models import Model

DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint32", "uint64"]


def edge_values(dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    values = {info.min, info.min + 1, -3, -2, -1, 0, 1, 2, 3, 7, info.max - 1, info.max}
    return np.array(sorted(v for v in values if info.min <= v <= info.max), dtype)


def divisions(pair: list) -> list:
    a, b = pair
    quotient, remainder = np.divmod(a, b)
    return [a // b, a % b, np.fmod(a, b), quotient, remainder]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_pair_of_edge_values_divides_as_numpy_does(dtype):
    edges = edge_values(np.dtype(dtype))
    pairs = np.array(list(itertools.product(edges, edges)), dtype).T  # (2, pairs)
    a_in, b_in = Input((pairs.shape[1],), dtype=dtype), Input((pairs.shape[1],), dtype=dtype)
    model = Model([a_in, b_in], Lambda(divisions, dtype=dtype)([a_in, b_in]))
    graph = to_onnx(model)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: row[np.newaxis] for i, row in zip(session.get_inputs(), pairs, strict=True)}
    got = session.run(None, feeds)
    with np.errstate(all="ignore"):
        expected = divisions([pairs[0][np.newaxis], pairs[1][np.newaxis]])
        reference = model.predict([pairs[0][np.newaxis], pairs[1][np.newaxis]])
    for name, g, e, r in zip(
        ["//", "%", "fmod", "divmod[0]", "divmod[1]"], got, expected, reference, strict=True
    ):
        np.testing.assert_array_equal(g, e, err_msg=f"{dtype} {name} (onnxruntime)")
        np.testing.assert_array_equal(r, e, err_msg=f"{dtype} {name} (reference)")


@pytest.mark.parametrize("dtype", [*DTYPES, "uint16", "bool"])
def test_where_runs_in_every_type(dtype):
    """onnxruntime has no Where kernel for int16, uint16, uint64 and bool: the graph
    chooses in a type that holds the values, and gives them back in their own."""
    if dtype == "bool":
        edges = np.array([False, True])
    else:
        edges = edge_values(np.dtype(dtype))
    pairs = np.array(list(itertools.product(edges, edges)), dtype).T
    a_in, b_in = Input((pairs.shape[1],), dtype=dtype), Input((pairs.shape[1],), dtype=dtype)
    choose = Lambda(lambda t: np.where(t[0] > t[1], t[0], t[1]), dtype=dtype)
    model = Model([a_in, b_in], choose([a_in, b_in]))
    session = ort.InferenceSession(
        to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    feeds = {i.name: row[np.newaxis] for i, row in zip(session.get_inputs(), pairs, strict=True)}
    (got,) = session.run(None, feeds)
    expected = np.where(pairs[0] > pairs[1], pairs[0], pairs[1])[np.newaxis]
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
