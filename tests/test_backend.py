from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from layerserve import _config
from layerserve import backend as K
from layerserve.errors import ShapeError

X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
LSE_TAIL = math.log(1 + math.exp(-1) + math.exp(-2))


class Traced(np.lib.mixins.NDArrayOperatorsMixin):
    """An array stand-in that only works through NumPy's dispatch protocols."""

    def __init__(self, value: Any) -> None:
        self.value = np.asarray(value)

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise AssertionError("a traced tensor was converted with np.asarray")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs)))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, Traced):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(item) for item in obj)
    if isinstance(obj, dict):
        return {key: _unwrap(value) for key, value in obj.items()}
    return obj


def _wrap(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return Traced(obj)
    if isinstance(obj, tuple):
        return tuple(_wrap(item) for item in obj)
    return obj


@pytest.mark.parametrize(
    ("fn", "kwargs", "expected"),
    [
        (K.sum, {"axis": 0}, [5.0, 7.0, 9.0]),
        (K.sum, {}, 21.0),
        (K.mean, {"axis": 1}, [2.0, 5.0]),
        (K.mean, {"axis": [0, 1]}, 3.5),
        (K.max, {}, 6.0),
        (K.min, {"axis": 1, "keepdims": True}, [[1.0], [4.0]]),
        (K.prod, {"axis": 1}, [6.0, 120.0]),
        (K.var, {}, 35.0 / 12.0),
        (K.std, {"axis": 0}, [1.5, 1.5, 1.5]),
        (K.argmax, {}, [2, 2]),
        (K.argmin, {"axis": 0}, [0, 0, 0]),
        (K.logsumexp, {"axis": 1}, [3 + LSE_TAIL, 6 + LSE_TAIL]),
        (K.cumsum, {}, [[1.0, 2.0, 3.0], [5.0, 7.0, 9.0]]),
        (K.cumprod, {"axis": 1}, [[1.0, 2.0, 6.0], [4.0, 20.0, 120.0]]),
    ],
)
def test_reductions_hand_values(fn: Callable, kwargs: dict, expected: Any) -> None:
    np.testing.assert_allclose(fn(X, **kwargs), expected, rtol=1e-9)


def test_logical_reductions_and_boolean_mean() -> None:
    mask = np.array([[True, False], [True, True]])
    assert K.any(mask, axis=1).tolist() == [True, True]
    assert K.all(mask, axis=1).tolist() == [False, True]
    assert K.all(mask, axis=0, keepdims=True).tolist() == [[True, False]]
    mean = K.mean(mask)
    assert mean == 0.75 and mean.dtype == np.float32


@pytest.mark.parametrize(
    ("fn", "args", "expected"),
    [
        (K.abs, ([-2.0, 3.0],), [2.0, 3.0]),
        (K.square, ([-3.0, 0.5],), [9.0, 0.25]),
        (K.sqrt, ([-4.0, 4.0, 2.25],), [0.0, 2.0, 1.5]),
        (K.exp, ([0.0, 1.0],), [1.0, math.e]),
        (K.log, ([1.0, math.e],), [0.0, 1.0]),
        (K.pow, ([2.0, 3.0], 3), [8.0, 27.0]),
        (K.sign, ([-2.0, 0.0, 5.0],), [-1.0, 0.0, 1.0]),
        (K.round, ([0.5, 1.5, 2.5, -0.5, 2.6],), [0.0, 2.0, 2.0, -0.0, 3.0]),
        (K.sin, ([0.0, math.pi / 2],), [0.0, 1.0]),
        (K.cos, ([0.0, math.pi],), [1.0, -1.0]),
        (K.clip, ([1.0, 5.0, 9.0], 2.0, 6.0), [2.0, 5.0, 6.0]),
        (K.clip, ([1.0, 5.0, 9.0], 4.0, 2.0), [4.0, 4.0, 4.0]),
        (K.clip, ([1.0, 5.0, 9.0], 4.0, None), [4.0, 5.0, 9.0]),
        (K.maximum, ([1.0, 5.0], [3.0, 2.0]), [3.0, 5.0]),
        (K.minimum, ([1.0, 5.0], [3.0, 2.0]), [1.0, 2.0]),
        (K.equal, ([1.0, 2.0], [1.0, 3.0]), [True, False]),
        (K.not_equal, ([1.0, 2.0], [1.0, 3.0]), [False, True]),
        (K.greater, ([1.0, 4.0], [2.0, 2.0]), [False, True]),
        (K.greater_equal, ([2.0, 1.0], [2.0, 2.0]), [True, False]),
        (K.less, ([1.0, 4.0], [2.0, 2.0]), [True, False]),
        (K.less_equal, ([2.0, 3.0], [2.0, 2.0]), [True, False]),
        (K.sigmoid, ([0.0],), [0.5]),
        (K.hard_sigmoid, ([1.0, 3.0],), [0.7, 1.0]),
        (K.tanh, ([0.0],), [0.0]),
        (K.softplus, ([0.0],), [math.log(2.0)]),
        (K.softsign, ([1.0, -3.0],), [0.5, -0.75]),
        (K.elu, ([-1.0, 2.0], 0.5), [0.5 * (math.exp(-1) - 1), 2.0]),
    ],
)
def test_elementwise_hand_values(fn: Callable, args: tuple, expected: list) -> None:
    arrays = tuple(np.array(a) if isinstance(a, list) else a for a in args)
    np.testing.assert_allclose(fn(*arrays), expected, rtol=1e-12, atol=1e-15)


def test_relu_hand_values_from_spec() -> None:
    x = np.array([-2, -1, 0, 0.5, 1, 3, 7], dtype=np.float32)
    out = K.relu(x, alpha=0.1, max_value=6, threshold=0.5)
    np.testing.assert_allclose(out, [-0.25, -0.15, -0.05, 0, 1, 3, 6], atol=1e-7)


def test_softmax_honours_axis_at_every_rank() -> None:
    np.testing.assert_allclose(K.softmax(np.array([0.0, math.log(3.0)])), [0.25, 0.75])
    x = np.array([[0.0, 1.0], [math.log(3.0), 1.0]])
    np.testing.assert_allclose(K.softmax(x, axis=0), [[0.25, 0.5], [0.75, 0.5]])


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
        elements=st.floats(-1e3, 1e3),
    ),
    st.integers(-1, 0),
)
def test_l2_normalize_gives_unit_norms(x: np.ndarray, axis: int) -> None:
    out = K.l2_normalize(x, axis=axis)
    norms = np.sqrt((x * x).sum(axis=axis, keepdims=True))
    expected = x / np.maximum(norms, 1e-6)
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-12)


def test_l2_normalize_hand_values() -> None:
    np.testing.assert_allclose(K.l2_normalize(np.array([3.0, 4.0])), [0.6, 0.8])
    np.testing.assert_array_equal(K.l2_normalize(np.zeros(3)), [0.0, 0.0, 0.0])


def test_layout_functions() -> None:
    a = np.arange(6.0).reshape(2, 3)
    assert K.concatenate([a, a]).shape == (2, 6)
    assert K.concatenate([a, a], axis=0).tolist() == [[0, 1, 2], [3, 4, 5], [0, 1, 2], [3, 4, 5]]
    assert K.stack([a, a]).shape == (2, 2, 3)
    assert K.stack([a, a], axis=-1)[1, 2].tolist() == [5.0, 5.0]
    assert K.reshape(a, (3, -1)).tolist() == [[0, 1], [2, 3], [4, 5]]
    assert K.permute_dimensions(a, (1, 0)).tolist() == [[0, 3], [1, 4], [2, 5]]
    assert K.transpose(a).shape == (3, 2)
    assert K.expand_dims(a).shape == (2, 3, 1)
    assert K.expand_dims(a, 0).shape == (1, 2, 3)
    assert K.squeeze(np.zeros((2, 1, 3)), 1).shape == (2, 3)
    assert K.flatten(a).tolist() == [0, 1, 2, 3, 4, 5]
    assert K.batch_flatten(np.zeros((4, 2, 3))).shape == (4, 6)
    assert K.repeat_elements(np.array([[1, 2]]), 2, axis=1).tolist() == [[1, 1, 2, 2]]
    assert K.tile(np.array([[1, 2]]), (2, 2)).tolist() == [[1, 2, 1, 2], [1, 2, 1, 2]]
    assert K.gather(a, np.array([1, 1, 0])).tolist() == [[3, 4, 5], [3, 4, 5], [0, 1, 2]]


def test_repeat_adds_a_time_axis() -> None:
    a = np.arange(6.0).reshape(2, 3)
    out = K.repeat(a, 4)
    assert out.shape == (2, 4, 3)
    for step in range(4):
        np.testing.assert_array_equal(out[:, step, :], a)
    with pytest.raises(ShapeError, match=r"2D tensor.*Received: input shape=\(2, 3, 1\)"):
        K.repeat(np.zeros((2, 3, 1)), 2)


def test_dot_contracts_last_with_second_to_last() -> None:
    rng = np.random.default_rng(0)
    a2, b2 = rng.normal(size=(2, 3)), rng.normal(size=(3, 4))
    expected2 = [[sum(a2[i, k] * b2[k, j] for k in range(3)) for j in range(4)] for i in range(2)]
    np.testing.assert_allclose(K.dot(a2, b2), expected2)
    x, y = rng.normal(size=(2, 3, 4)), rng.normal(size=(5, 4, 6))
    np.testing.assert_allclose(K.dot(x, y), np.einsum("abk,ckd->abcd", x, y))
    w = rng.normal(size=(4, 6))
    np.testing.assert_allclose(K.dot(x, w), np.einsum("abk,kd->abd", x, w))


def test_batch_dot_examples() -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = np.array([[5.0, 6.0], [7.0, 8.0]])
    np.testing.assert_array_equal(K.batch_dot(x, y, axes=1), [[17.0], [53.0]])
    np.testing.assert_array_equal(K.batch_dot(x, y), [[17.0], [53.0]])
    assert K.batch_dot(np.ones((32, 20, 1)), np.ones((32, 30, 20)), axes=[1, 2]).shape == (
        32,
        1,
        30,
    )


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "axes", "subscripts"),
    [
        ((4, 2, 3), (4, 3, 5), None, "bij,bjk->bik"),
        ((4, 2, 3), (4, 5, 3), (2, 2), "bij,bkj->bik"),
        ((4, 3, 2), (4, 3, 5), (1, 1), "bji,bjk->bik"),
        ((4, 3), (4, 3, 5), None, "bj,bjk->bk"),
        ((4, 2, 3), (4, 3), None, "bij,bj->bi"),
        ((4, 2, 3), (4, 5, 3), (-1, -1), "bij,bkj->bik"),
    ],
)
def test_batch_dot_against_einsum(
    x_shape: tuple, y_shape: tuple, axes: Any, subscripts: str
) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=x_shape), rng.normal(size=y_shape)
    np.testing.assert_allclose(K.batch_dot(x, y, axes=axes), np.einsum(subscripts, x, y))


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "axes"),
    [((2, 3, 4, 5), (2, 3, 5, 6), (3, 2)), ((2, 3, 4), (2, 3, 2, 4), (1, 1)), ((2,), (2, 3), 0)],
)
def test_batch_dot_refuses_ranks_where_keras_versions_disagree(x_shape, y_shape, axes) -> None:
    """For (2, 3, 4, 5) . (2, 3, 5, 6) over (3, 2) Keras 2.2 gives (2, 3, 4, 6) and tf.keras
    2.x (2, 3, 4, 3, 6): a Lambda calling it is refused rather than given either."""
    with pytest.raises(ShapeError, match="rank 2 or 3") as raised:
        K.batch_dot(np.ones(x_shape), np.ones(y_shape), axes=axes)
    assert f"{x_shape}, {y_shape}" in str(raised.value)


def truncated_mean(values: list[int], bits: int) -> int:
    """TensorFlow's reduce_mean of integers: the sum wrapped to the type, then divided
    with the quotient truncated toward zero (Python's // floors, hence the sign dance)."""
    total = (sum(values) + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)
    quotient = abs(total) // len(values)
    return quotient if total >= 0 else -quotient


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([np.int8, np.int32, np.int64]).flatmap(
        lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1))
    )
)
def test_integer_means_are_truncated_in_their_type(x: np.ndarray) -> None:
    """tf.keras's K.mean of an int32 tensor is an int32 tensor: [1, 2, 3, 0, 2] -> 1,
    [-5, -4, -5, -3, 6] -> -2 (a float mean would give 1.6 and -2.2)."""
    bits = x.dtype.itemsize * 8
    got = K.mean(x, axis=1, keepdims=True)
    assert got.dtype == x.dtype and got.shape == (x.shape[0], 1)
    assert got[:, 0].tolist() == [truncated_mean(row.tolist(), bits) for row in x]
    whole = K.mean(x)
    assert whole.dtype == x.dtype and int(whole) == truncated_mean(x.ravel().tolist(), bits)


def test_integer_reductions_keep_their_type() -> None:
    x = np.array([[1, 2, 3, 0, 2], [-5, -4, -5, -3, 6]], np.int32)
    np.testing.assert_array_equal(K.mean(x, axis=1, keepdims=True), [[1], [-2]])
    for reduce, expected in ((K.sum, [8, -11]), (K.prod, [0, 1800])):
        got = reduce(x, axis=1)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, expected)
    big = np.array([2**30, 2**30], np.int32)
    assert K.sum(big) == -(2**31)  # wraps in int32, as TensorFlow's reduce_sum does
    for refused in (K.var, K.std):
        with pytest.raises(ShapeError, match="Received: dtype=int32"):
            refused(x, axis=1)
    assert K.mean(np.array([True, False, False, False])) == pytest.approx(0.25)


def test_switch() -> None:
    then, other = np.ones((3, 2)), np.zeros((3, 2))
    rows = K.switch(np.array([True, False, True]), then, other)
    assert rows.tolist() == [[1, 1], [0, 0], [1, 1]]
    assert K.switch(np.array(False), lambda: then, lambda: other).tolist() == other.tolist()
    with pytest.raises(
        ShapeError, match=r"Received: ndim\(condition\)=2, ndim\(then_expression\)=1"
    ):
        K.switch(np.ones((2, 2), dtype=bool), np.ones(2), np.zeros(2))


def test_shapes_dtypes_and_constants() -> None:
    a = np.zeros((2, 3), dtype=np.float32)
    assert K.shape(a).tolist() == [2, 3] and K.shape(a).dtype == np.int32
    assert K.int_shape(a) == (2, 3)
    assert K.ndim(a) == 2
    assert K.dtype(a) == "float32"
    assert K.cast(np.array([1.7, -1.2]), "int32").tolist() == [1, -1]
    assert K.cast(np.array([1, 0]), "bool").tolist() == [True, False]
    assert K.constant(2.5).dtype == np.float32
    assert K.constant(1, dtype="int64", shape=(2, 2)).tolist() == [[1, 1], [1, 1]]
    assert K.constant([1, 2, 3, 4], shape=(2, 2)).tolist() == [[1, 2], [3, 4]]
    assert K.zeros((2,)).tolist() == [0.0, 0.0] and K.zeros((2,)).dtype == np.float32
    assert K.ones((1, 2), dtype="float64").dtype == np.float64
    assert K.eye(2).tolist() == [[1, 0], [0, 1]]
    assert K.zeros_like(np.ones(2, dtype=np.int8)).dtype == np.int8
    assert K.ones_like(np.zeros(2), dtype="float32").tolist() == [1.0, 1.0]


def test_settings_reexports() -> None:
    assert K.floatx() == _config.floatx()
    assert K.epsilon() == _config.epsilon()
    assert K.image_data_format() in ("channels_last", "channels_first")
    previous = K.floatx()
    K.set_floatx("float16")
    try:
        assert _config.floatx() == "float16"
        assert K.zeros((1,)).dtype == np.float16
    finally:
        K.set_floatx(previous)


A = np.array([[-1.5, 0.5, 2.0], [3.0, -0.25, 1.0]])
B = np.array([[0.5, 1.0, -2.0], [1.0, 2.0, 0.75]])
TRACEABLE = [
    ("sum", lambda k, a, b: k.sum(a, axis=1)),
    ("mean", lambda k, a, b: k.mean(a, axis=[0, 1], keepdims=True)),
    ("mean-bool", lambda k, a, b: k.mean(k.greater(a, 0.0), axis=1)),
    ("max", lambda k, a, b: k.max(a, axis=0)),
    ("min", lambda k, a, b: k.min(a)),
    ("prod", lambda k, a, b: k.prod(a, axis=1)),
    ("std", lambda k, a, b: k.std(a, axis=1)),
    ("var", lambda k, a, b: k.var(a)),
    ("any", lambda k, a, b: k.any(k.greater(a, 2.5), axis=1)),
    ("all", lambda k, a, b: k.all(k.greater(a, -2.0))),
    ("argmax", lambda k, a, b: k.argmax(a)),
    ("argmin", lambda k, a, b: k.argmin(a, axis=0)),
    ("logsumexp", lambda k, a, b: k.logsumexp(a, axis=1)),
    ("abs", lambda k, a, b: k.abs(a)),
    ("square", lambda k, a, b: k.square(a)),
    ("sqrt", lambda k, a, b: k.sqrt(a)),
    ("exp", lambda k, a, b: k.exp(a)),
    ("log", lambda k, a, b: k.log(k.abs(a))),
    ("pow", lambda k, a, b: k.pow(a, 2)),
    ("sign", lambda k, a, b: k.sign(a)),
    ("round", lambda k, a, b: k.round(a)),
    ("sin", lambda k, a, b: k.sin(a)),
    ("cos", lambda k, a, b: k.cos(a)),
    ("clip", lambda k, a, b: k.clip(a, -1.0, 1.0)),
    ("maximum", lambda k, a, b: k.maximum(a, b)),
    ("minimum", lambda k, a, b: k.minimum(a, b)),
    ("equal", lambda k, a, b: k.equal(a, b)),
    ("not_equal", lambda k, a, b: k.not_equal(a, b)),
    ("greater_equal", lambda k, a, b: k.greater_equal(a, b)),
    ("less", lambda k, a, b: k.less(a, b)),
    ("less_equal", lambda k, a, b: k.less_equal(a, b)),
    ("cast", lambda k, a, b: k.cast(a, "int32")),
    ("relu", lambda k, a, b: k.relu(a, alpha=0.1, max_value=2.0, threshold=0.5)),
    ("relu-leaky", lambda k, a, b: k.relu(a, alpha=0.1)),
    ("relu-6", lambda k, a, b: k.relu(a, max_value=6)),
    ("elu", lambda k, a, b: k.elu(a, 0.5)),
    ("sigmoid", lambda k, a, b: k.sigmoid(a)),
    ("hard_sigmoid", lambda k, a, b: k.hard_sigmoid(a)),
    ("tanh", lambda k, a, b: k.tanh(a)),
    ("softmax", lambda k, a, b: k.softmax(a, axis=0)),
    ("softplus", lambda k, a, b: k.softplus(a)),
    ("softsign", lambda k, a, b: k.softsign(a)),
    ("l2_normalize", lambda k, a, b: k.l2_normalize(a, axis=1)),
    ("concatenate", lambda k, a, b: k.concatenate([a, b], axis=0)),
    ("stack", lambda k, a, b: k.stack([a, b], axis=1)),
    ("reshape", lambda k, a, b: k.reshape(a, (3, 2))),
    ("permute_dimensions", lambda k, a, b: k.permute_dimensions(a, (1, 0))),
    ("transpose", lambda k, a, b: k.transpose(a)),
    ("expand_dims", lambda k, a, b: k.expand_dims(a, 1)),
    ("squeeze", lambda k, a, b: k.squeeze(k.expand_dims(a, 0), 0)),
    ("repeat", lambda k, a, b: k.repeat(a, 3)),
    ("repeat_elements", lambda k, a, b: k.repeat_elements(a, 2, axis=0)),
    ("tile", lambda k, a, b: k.tile(a, (2, 1))),
    ("flatten", lambda k, a, b: k.flatten(a)),
    ("batch_flatten", lambda k, a, b: k.batch_flatten(k.expand_dims(a))),
    ("dot", lambda k, a, b: k.dot(a, k.transpose(b))),
    ("dot-3d", lambda k, a, b: k.dot(k.stack([a, b]), k.stack([k.transpose(b)] * 2))),
    ("batch_dot", lambda k, a, b: k.batch_dot(a, b, axes=1)),
    ("batch_dot-3d", lambda k, a, b: k.batch_dot(k.expand_dims(a), k.expand_dims(b, 1))),
    ("zeros_like", lambda k, a, b: k.zeros_like(a)),
    ("ones_like", lambda k, a, b: k.ones_like(a)),
    ("cumsum", lambda k, a, b: k.cumsum(a, axis=1)),
    ("cumprod", lambda k, a, b: k.cumprod(a)),
    ("gather", lambda k, a, b: k.gather(a, np.array([1, 0, 1]))),
    ("switch", lambda k, a, b: k.switch(k.greater(a, 0.0), a, b)),
    ("switch-rows", lambda k, a, b: k.switch(np.array([True, False]), a, b)),
    ("shape", lambda k, a, b: k.shape(a)),
    ("int_shape", lambda k, a, b: k.int_shape(a)),
    ("ndim", lambda k, a, b: k.ndim(a)),
    ("dtype", lambda k, a, b: k.dtype(a)),
]


@pytest.mark.parametrize(("name", "call"), TRACEABLE, ids=[name for name, _ in TRACEABLE])
def test_functions_work_through_numpy_dispatch(name: str, call: Callable) -> None:
    expected = call(K, A, B)
    traced = _unwrap(call(K, Traced(A), Traced(B)))
    if isinstance(expected, np.ndarray):
        assert isinstance(traced, np.ndarray)
        assert traced.dtype == expected.dtype
    np.testing.assert_array_equal(traced, expected)


def test_every_public_function_is_typed_and_documented() -> None:
    for name in K.__all__:
        fn = getattr(K, name)
        if fn.__module__ != K.__name__:
            continue
        assert inspect.getdoc(fn), name
        assert "return" in fn.__annotations__, name
