"""Tracing NumPy / layerserve.backend functions into ONNX graphs, checked against NumPy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from layerserve import backend as K
from layerserve import examples
from layerserve.errors import NotSupportedError
from layerserve.export.builder import BATCH_DIM, GraphBuilder, Value
from layerserve.export.opsets import MIN_OPSET, max_runtime_opset
from layerserve.export.tracing import TracedArray, supported, trace_function

OPSETS = sorted({MIN_OPSET, max_runtime_opset()})
BATCHES = (1, 7, 0)
W = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
W3 = np.random.default_rng(2).standard_normal((2, 4, 3)).astype(np.float32)

Spec = tuple[tuple[int, ...], str]


def _inputs(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, kind: str) -> Any:
    if kind == "positive":
        return rng.uniform(0.5, 3.0, shape).astype(dtype)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-5, 6, shape).astype(dtype)
    array = (rng.standard_normal(shape) * 2.0).astype(dtype)
    if kind == "special" and array.size:
        flat = array.reshape(-1)
        flat[::5] = np.nan
        flat[1::7] = np.inf
        flat[2::11] = -np.inf
    return array


def _export(
    function: Callable, specs: Sequence[Spec], structure: str, opset: int
) -> tuple[onnx.ModelProto, list[Value]]:
    builder = GraphBuilder(opset)
    values = []
    for index, (shape, dtype) in enumerate(specs):
        name = f"input_{index}"
        builder.add_input(name, dtype, (BATCH_DIM, *shape))
        values.append(Value(name, (None, *shape), dtype))
    outputs = trace_function(builder, function, values, "lam", structure)
    taken = {v.name for v in values}
    for value in outputs:
        name = value.name
        if name in taken:
            name = builder.op("Identity", [value.name], "lam_output")
        taken.add(name)
        builder.add_output(name, value.dtype, value.shape)
    model = builder.model()
    onnx.checker.check_model(model, full_check=True)
    return model, outputs


def _call(function: Callable, arrays: list[Any], structure: str) -> list[Any]:
    copies = [a.copy() for a in arrays]
    with np.errstate(all="ignore"):
        result = function(copies if structure == "list" else copies[0])
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _assert_same(got: np.ndarray, expected: Any, value: Value) -> None:
    expected = np.asarray(expected)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert len(value.shape) == got.ndim
    assert all(s is None or s == d for s, d in zip(value.shape, got.shape, strict=True))
    assert value.dtype == got.dtype.name
    if got.dtype.kind in "fc":
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, expected)


def check(
    function: Callable,
    specs: Sequence[Spec],
    opset: int,
    structure: str = "single",
    kind: str = "normal",
    batches: Sequence[int] = BATCHES,
) -> None:
    model, values = _export(function, specs, structure, opset)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in batches:
        arrays = [_inputs(rng, (batch, *shape), dtype, kind) for shape, dtype in specs]
        expected = _call(function, arrays, structure)
        got = session.run(None, {f"input_{i}": a for i, a in enumerate(arrays)})
        assert len(got) == len(expected) == len(values)
        for g, e, v in zip(got, expected, values, strict=True):
            _assert_same(g, e, v)


def case(
    name: str,
    function: Callable,
    *shapes: tuple[int, ...],
    dtype: str = "float32",
    kind: str = "normal",
    structure: str = "single",
    zero: bool = True,
) -> Any:
    """A table row; ``zero=False`` skips batch 0 where NumPy itself raises on it."""
    specs = tuple((shape, dtype) for shape in (shapes or ((4,),)))
    return pytest.param(function, specs, structure, kind, zero, id=name)


def _in_place(x: Any) -> Any:
    x += 1.0
    x *= 2
    x /= 3
    return x


def _alias(x: Any) -> Any:
    y = x
    x -= 1.0
    return y


def _update_view(x: Any) -> Any:
    x -= x[:, :1]
    view = x[:, 1:]
    view *= 2.0
    return [view, view.T]


def _split(x: Any) -> Any:
    return np.split(x, [1, 3], axis=1)


CASES = [
    case("antirectifier", examples.antirectifier, (8,)),
    case("hadamard", examples.hadamard_product_sum, (8,), (8,), structure="list"),
    case("identity", lambda x: x),
    case("square_op", lambda x: x**2),
    case("pow_float", lambda x: K.pow(x, 1.5), kind="positive"),
    case("pow_int", lambda x: K.pow(x, 3)),
    case("l2_normalize", lambda x: K.l2_normalize(x, axis=-1), (3, 5)),
    case("concatenate", lambda x: K.concatenate([x, 2 * x, x[:, :1]], axis=-1)),
    case("concatenate_axis1", lambda x: K.concatenate([x, -x], axis=1), (2, 3)),
    case("stack", lambda x: K.stack([x, x + 1], axis=1)),
    case("sum_last", lambda x: K.sum(x, axis=-1), (3, 4)),
    case("sum_all", lambda x: [K.sum(x), K.sum(x) * 2.0 + np.float32(1)]),
    case("mean_keepdims", lambda x: K.mean(x, axis=1, keepdims=True), (3, 4)),
    case("mean_axes", lambda x: K.mean(x, axis=[1, 2]), (3, 4)),
    case("max_min", lambda x: K.max(x, axis=1) - K.min(x, axis=-1)),
    case("max_nan", lambda x: K.max(x, axis=1), kind="special"),
    case("prod", lambda x: K.prod(x, axis=1), (3,)),
    case("var_std", lambda x: [K.var(x, axis=1), K.std(x, axis=-1, keepdims=True)]),
    case("var_ddof", lambda x: np.var(x, axis=1, ddof=1), (5,)),
    case("logsumexp", lambda x: K.logsumexp(x, axis=1), (3, 4)),
    case("argmax", lambda x: [K.argmax(x), K.argmin(x, axis=1)], (3, 4)),
    case("any_all", lambda x: [K.any(x > 0, axis=1), K.all(x > -1, axis=1, keepdims=True)]),
    case("cumsum", lambda x: K.cumsum(x, axis=1)),
    case("cumprod", lambda x: K.cumprod(x, axis=1)),
    case("slice", lambda x: x[:, 1:3], (5,)),
    case("slice_step", lambda x: x[:, ::-2, 1:], (5, 3)),
    case("ellipsis_int", lambda x: x[..., 0], (3, 4)),
    case("int_last", lambda x: x[:, -1]),
    case("newaxis", lambda x: x[:, None, 1:, np.newaxis], (3,)),
    case("batch_slice", lambda x: x[1:]),
    case("fancy", lambda x: x[:, [2, 0, 2]]),
    case("take", lambda x: np.take(x, [[1, 0], [3, 3]], axis=1)),
    case(
        "traced_index",
        lambda x: [np.take(x[0], np.argmax(x, axis=1)), x[0][K.argmin(x, 1)]],
        zero=False,
    ),
    case("softmax", lambda x: K.softmax(x), (3, 4)),
    case("leaky_where", lambda x: np.where(x > 0, x, 0.1 * x)),
    case("switch", lambda x: K.switch(x > 0, x, lambda: -x)),
    case("clip", lambda x: K.clip(x, -0.5, 0.5)),
    case("clip_nan", lambda x: np.clip(x, 0.0, 1.0), kind="special"),
    case("clip_arrays", lambda x: np.clip(x, -np.ones(4, np.float32), 0.5)),
    case("repeat", lambda x: K.repeat(x, 3)),
    case("repeat_elements", lambda x: K.repeat_elements(x, 2, axis=1), (2, 3)),
    case("repeat_flat", lambda x: np.repeat(x, 2)),
    case("tile", lambda x: K.tile(x, (1, 2, 3)), (2,)),
    case("permute", lambda x: K.permute_dimensions(x, (0, 2, 1)), (3, 4)),
    case("transpose_T", lambda x: x.T),
    case("swap_move", lambda x: [np.swapaxes(x, 1, 2), np.moveaxis(x, 0, -1)], (2, 3)),
    case("flip", lambda x: np.flip(x, axis=(1, 2)), (2, 3)),
    case("reshape", lambda x: K.reshape(x, (-1, 2, 2))),
    case("reshape_method", lambda x: x.reshape(-1, 3, 2).reshape((-1, 6)), (6,)),
    case("batch_flatten", lambda x: K.batch_flatten(x), (2, 3)),
    case("flatten", lambda x: K.flatten(x), (2, 3)),
    case(
        "expand_squeeze",
        lambda x: K.squeeze(K.expand_dims(x, 1), 1) + np.squeeze(x[:, None], axis=1),
    ),
    case("broadcast_to", lambda x: np.broadcast_to(x[:, :1], x.shape)),
    case("pad", lambda x: np.pad(x, ((0, 0), (1, 2)), constant_values=0.5)),
    case("split", _split, (5,)),
    case("matmul_const", lambda x: x @ W),
    # onnxruntime's MatMul cannot broadcast a constant over a batch of 0.
    case("matmul_reflected", lambda x: W.T @ x[:, :, None], zero=False),
    case("dot", lambda x: K.dot(x, W)),
    case("dot_3d", lambda x: K.dot(x, W), (2, 4)),
    case("dot_w3", lambda x: K.dot(x, W3)),
    case("np_dot_w3", lambda x: np.dot(x, W3)),
    case("batch_dot", lambda xs: K.batch_dot(xs[0], xs[1]), (3, 4), (4, 2), structure="list"),
    case(
        "batch_dot_2d", lambda xs: K.batch_dot(xs[0], xs[1], axes=1), (4,), (4,), structure="list"
    ),
    case("eye", lambda x: x @ K.eye(4)),
    case("maximum", lambda x: K.maximum(x, 0.0)),
    case(
        "maximum_nan",
        lambda x: [np.maximum(x, 0.0), np.fmax(x, 0.0), np.fmin(0.0, x)],
        kind="special",
    ),
    case("isnan_isinf", lambda x: [np.isnan(x), np.isinf(x), np.isfinite(x)], kind="special"),
    case(
        "elementwise",
        lambda x: [
            K.abs(x),
            K.square(x),
            K.sqrt(x),
            K.exp(x),
            K.sign(x),
            K.round(x),
            K.sin(x),
            K.cos(x),
            np.floor(x),
            np.ceil(x),
            np.trunc(x),
            np.arctan(x),
            np.tanh(x),
            np.expm1(x),
        ],
    ),
    case(
        "logs",
        lambda x: [
            K.log(x),
            np.log1p(x),
            np.log2(x),
            np.log10(x),
            np.sqrt(x),
            np.reciprocal(x),
            np.cbrt(-x),
        ],
        kind="positive",
    ),
    case("logaddexp", lambda x: np.logaddexp(x, x[:, ::-1])),
    case(
        "activations",
        lambda x: [
            K.sigmoid(x),
            K.softplus(x),
            K.softsign(x),
            K.elu(x),
            K.hard_sigmoid(x),
            K.tanh(x),
        ],
    ),
    case(
        "relu_options",
        lambda x: [
            K.relu(x, alpha=0.1, max_value=1.0),
            K.relu(x, threshold=0.5),
            K.relu(x, max_value=6),
        ],
    ),
    case(
        "comparisons",
        lambda x: [
            K.equal(x, x[:, ::-1]),
            K.not_equal(x, 0.5),
            K.less(x, 0),
            K.less_equal(x, 0),
            K.greater(x, 0),
            K.greater_equal(x, 0),
        ],
    ),
    case("cast", lambda x: [K.cast(x > 0, "float32"), x.astype("float64"), x.astype(np.int32)]),
    case("like", lambda x: [K.zeros_like(x), K.ones_like(x, dtype="int64"), np.full_like(x, 2.5)]),
    case("float_divmod", lambda x: [x // 0.7, x % -0.7, np.fmod(x, 0.7), x // (x - 0.5)]),
    case("divide_by_zero", lambda x: [x // 0.0, x % 0.0, x / 0.0]),
    case("round_decimals", lambda x: [np.round(x, 1), np.round(x * 100, -1)]),
    case("norm", lambda x: [np.linalg.norm(x, axis=1), np.linalg.norm(x, axis=1, keepdims=True)]),
    case("float64_promotion", lambda x: x * np.float64(2.0) + np.ones(4)),
    case("scalar_promotion", lambda x: 1 - x * 2.5 / 3),
    case("in_place", _in_place),
    case("in_place_alias", _alias),
    case("in_place_view", _update_view),
    case(
        "reductions_by_ufunc",
        lambda x: [np.add.reduce(x, axis=1), np.maximum.reduce(x, 1), np.add.accumulate(x, axis=1)],
    ),
    case(
        "int_ops",
        lambda x: [
            x // 3,
            x % 3,
            x // (x - 1),
            x % (x - 1),
            np.fmod(x, -3),
            x / 2,
            -x,
            abs(x),
            x * 2.5,
        ],
        dtype="int32",
    ),
    case(
        "keras_int_reductions",  # TensorFlow's: in the input's type, means truncated
        lambda x: [
            K.mean(x, axis=1),
            K.mean(x, axis=-1, keepdims=True),
            K.mean(x),
            K.sum(x, axis=1),
            K.prod(x, axis=1),
        ],
        (5,),
        dtype="int32",
    ),
    case(
        "int_reductions",
        lambda x: [np.sum(x, axis=1), np.mean(x, axis=1), np.max(x, axis=1), np.cumsum(x, axis=1)],
        dtype="int32",
    ),
    case(
        "bools",
        lambda x: [
            np.logical_and(x, ~x[:, ::-1]),
            x & x[:, ::-1] | ~x,
            x.sum(axis=1),
            np.any(x, axis=1),
            np.max(x, axis=1),
            np.where(x, 1.0, -1.0),
            x + x,
            x < x[:, ::-1],
        ],
        dtype="bool",
    ),
    case("batch_int_index", lambda x: x[0], zero=False),
    case(
        "reflected",
        lambda x: [np.float32(2) * x, 2**x, 1 / (x + 10), 3 - x, [1, 2, 3, 4] + x, *divmod(x, 0.7)],
    ),
    case("argmax_nan", lambda x: [np.argmax(x, axis=1), np.argmin(x, axis=1)], kind="special"),
    case(
        "float64",
        lambda x: [
            np.tan(x),
            np.sinh(x),
            np.cosh(x),
            np.arcsinh(x),
            np.arccosh(x + 3),
            np.arctanh(x / 4),
            K.softmax(x),
            x @ W.astype(np.float64),
        ],
        dtype="float64",
    ),
    case(
        "float16",
        lambda x: [x * 2 + 1, np.maximum(x, 0), np.isinf(x), np.exp(x), x > 1, -x],
        dtype="float16",
        kind="positive",
    ),
    case(
        "int8",
        lambda x: [np.square(x), x + x, x * 3, -x, x // 2, np.maximum(x, 0), x == 2],
        dtype="int8",
    ),
    case("uint8", lambda x: [-x, x + 250, x - 3], dtype="uint8"),
    case("sum_over_batch", lambda x: np.sum(x, axis=0)),
]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize(("function", "specs", "structure", "kind", "zero"), CASES)
def test_traced_function_matches_numpy(
    function: Callable,
    specs: Sequence[Spec],
    structure: str,
    kind: str,
    zero: bool,
    opset: int,
) -> None:
    batches = BATCHES if zero else tuple(b for b in BATCHES if b)
    check(function, specs, opset, structure, kind, batches)


def _view_in_place(x: Any) -> Any:
    view = x[:, :2]
    view += 1.0
    return x


def _stale_transpose(x: Any) -> Any:
    y = x.T
    x += 1.0
    return y


def _control_flow(x: Any) -> Any:
    if x.sum() > 0:
        return x
    return -x


def _set_item(x: Any) -> Any:
    x[:, 0] = 1.0
    return x


ERRORS = [
    pytest.param(lambda x: np.fft.fft(x), "np.fft.fft", id="fft"),
    pytest.param(lambda x: np.sort(x, axis=1), "np.sort", id="sort"),
    pytest.param(lambda x: np.einsum("bi,ij->bj", x, W), "np.einsum", id="einsum"),
    pytest.param(lambda x: x * float(x[0, 0]), r"float\(\)", id="python_float"),
    pytest.param(
        lambda x: np.add(x, 1.0, out=np.empty((2, 4))), r"np\.add\(\.\.\., out=", id="ufunc_out"
    ),
    pytest.param(
        lambda x: np.sum(x, axis=1, out=np.empty(2)), r"np\.sum\(\.\.\., out=", id="function_out"
    ),
    pytest.param(lambda x: np.arctan2(x, 1.0), "np.arctan2", id="arctan2"),
    pytest.param(lambda x: np.asarray(x), "np.asarray", id="asarray"),
    pytest.param(_control_flow, r"bool\(\)", id="control_flow"),
    pytest.param(lambda x: x[x > 0], "boolean-mask", id="mask_index"),
    pytest.param(_set_item, "item assignment", id="setitem"),
    pytest.param(_view_in_place, "in-place", id="view_in_place"),
    pytest.param(_stale_transpose, "in-place", id="stale_transpose"),
    pytest.param(lambda x: np.ones(4, np.float32), "does not depend", id="constant_output"),
    pytest.param(lambda x: np.add.outer(x, x), r"np\.add\.outer", id="ufunc_outer"),
    pytest.param(lambda x: len(x), r"len\(\)", id="len_batch"),
    pytest.param(lambda x: np.left_shift(x.astype(np.int32), 1), "np.left_shift", id="left_shift"),
]


@pytest.mark.parametrize(("function", "match"), ERRORS)
def test_untraceable_operations_are_named(function: Callable, match: str) -> None:
    builder = GraphBuilder(MIN_OPSET)
    builder.add_input("x", "float32", (BATCH_DIM, 4))
    with pytest.raises(NotSupportedError, match=match) as info:
        trace_function(builder, function, [Value("x", (None, 4))], "my_lambda")
    message = str(info.value)
    assert "my_lambda" in message
    assert "layerserve.backend" in message


def test_traced_array_attributes_and_names() -> None:
    builder = GraphBuilder(MIN_OPSET)
    x = TracedArray(builder, "x", (None, 3, 4), np.float32, prefix="antirectifier")
    assert (x.shape, x.ndim, x.dtype, x.size) == ((None, 3, 4), 3, np.dtype("float32"), None)
    assert x.T.shape == (4, 3, None)
    assert len(x[0]) == 3
    assert [row.shape for row in x[0]] == [(4,)] * 3
    assert x.astype(np.float32, copy=False) is x
    assert np.shape(x) == (None, 3, 4) and np.ndim(x) == 3
    assert TracedArray(builder, "c", (2, 3), "int32").size == 6
    y = x.sum(axis=-1)
    assert y.name.startswith("antirectifier_")
    assert all(node.name.startswith("antirectifier_") for node in builder.nodes)
    assert (x * 2.0).dtype == np.float32
    assert (x > 0).dtype == bool
    assert np.mean(x.astype(np.int32)).dtype == np.float64


def test_supported_lists_name_the_dispatch_tables() -> None:
    names = supported()
    assert {"add", "matmul", "exp", "maximum", "isnan"} <= set(names["ufuncs"])
    assert {"np.mean", "np.concatenate", "np.where", "np.linalg.norm"} <= set(names["functions"])


def test_structure_must_match_inputs() -> None:
    builder = GraphBuilder(MIN_OPSET)
    value = Value("x", (None, 4))
    with pytest.raises(ValueError, match="one input"):
        trace_function(builder, lambda x: x, [value, value], "f")
    with pytest.raises(ValueError, match="structure"):
        trace_function(builder, lambda x: x, [value], "f", structure="dict")


def trace_kwargs_target(x: Any, scale: float = 3.0) -> Any:
    return x * scale


def test_trace_function_forwards_kwargs() -> None:
    builder = GraphBuilder(MIN_OPSET)
    outputs = trace_function(
        builder, trace_kwargs_target, [Value("x", (None, 4))], "f", kwargs={"scale": 2.0}
    )
    constants = [onnx.numpy_helper.to_array(t) for t in builder.initializers]
    assert outputs[0].shape == (None, 4)
    assert any(np.array_equal(c, np.float32(2.0)) for c in constants)


# Random shapes.

BINARY = [
    np.add,
    np.subtract,
    np.multiply,
    np.maximum,
    np.minimum,
    np.true_divide,
    lambda a, b: np.where(a > b, a, 0.5 * b),
    lambda a, b: a * 2.0 - b / 3.0,
]

small_shapes = hnp.mutually_broadcastable_shapes(
    num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=4
)


def _pad_rank(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    return (1,) * (rank - len(shape)) + shape


@settings(max_examples=25, deadline=None)
@given(shapes=small_shapes, function=st.sampled_from(BINARY), opset=st.sampled_from(OPSETS))
def test_broadcasting_two_inputs(shapes: Any, function: Callable, opset: int) -> None:
    rank = max(len(s) for s in shapes.input_shapes)
    specs = [(_pad_rank(s, rank), "float32") for s in shapes.input_shapes]
    check(lambda xs: function(xs[0], xs[1]), specs, opset, structure="list")


@settings(max_examples=25, deadline=None)
@given(
    shapes=small_shapes,
    function=st.sampled_from(BINARY),
    opset=st.sampled_from(OPSETS),
    reflected=st.booleans(),
)
def test_broadcasting_with_a_constant(
    shapes: Any, function: Callable, opset: int, reflected: bool
) -> None:
    x_shape, c_shape = shapes.input_shapes
    c_shape = c_shape[max(len(c_shape) - len(x_shape), 0) :]
    constant = np.random.default_rng(3).uniform(0.5, 2.0, c_shape).astype(np.float32)

    def traced(x: Any) -> Any:
        return function(constant, x) if reflected else function(x, constant)

    check(traced, [(x_shape, "float32")], opset)


@settings(max_examples=25, deadline=None)
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
    reduction=st.sampled_from([np.sum, np.mean, np.max, np.min, np.prod, np.var, np.any]),
    data=st.data(),
    keepdims=st.booleans(),
    opset=st.sampled_from(OPSETS),
)
def test_reductions_over_random_axes(
    shape: tuple[int, ...], reduction: Callable, data: Any, keepdims: bool, opset: int
) -> None:
    rank = len(shape) + 1
    axes = data.draw(st.lists(st.integers(1, rank - 1), min_size=1, max_size=rank - 1, unique=True))
    check(lambda x: reduction(x, axis=tuple(axes), keepdims=keepdims), [(shape, "float32")], opset)


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, 6),
    start=st.none() | st.integers(-7, 7),
    stop=st.none() | st.integers(-7, 7),
    step=st.none() | st.integers(-3, 3).filter(bool),
    opset=st.sampled_from(OPSETS),
)
def test_random_slices(
    length: int, start: int | None, stop: int | None, step: int | None, opset: int
) -> None:
    check(lambda x: x[:, start:stop:step], [((length,), "float32")], opset)
