from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from layerserve import activations
from layerserve.errors import ConfigError, ShapeError, UnknownObjectError
from layerserve.serialization import custom_object_scope, keras_semantics

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GRID = np.linspace(-8.0, 8.0, 161)


def _elu(x: float, alpha: float = 1.0) -> float:
    return x if x > 0 else alpha * (math.exp(x) - 1.0)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


def _relu6(x: float) -> float:
    return min(max(x, 0.0), 6.0)


def _hard_sigmoid_v2(x: float) -> float:
    if x < -2.5:
        return 0.0
    if x > 2.5:
        return 1.0
    return 0.2 * x + 0.5


def _hard_sigmoid_v3(x: float) -> float:
    if x <= -3.0:
        return 0.0
    if x >= 3.0:
        return 1.0
    return x / 6.0 + 0.5


def _sparse_plus(x: float) -> float:
    if x <= -1.0:
        return 0.0
    return x if x >= 1.0 else (x + 1.0) ** 2 / 4.0


def _shrink(x: float, bias: float) -> float:
    if x > 0.5:
        return x - bias
    return x + bias if x < -0.5 else 0.0


SCALAR_REFERENCES = {
    "linear": lambda x: x,
    "exponential": math.exp,
    "tanh": math.tanh,
    "sigmoid": _sigmoid,
    "hard_sigmoid": _hard_sigmoid_v2,
    "hard_sigmoid_v3": _hard_sigmoid_v3,
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + abs(x)),
    "elu": _elu,
    "selu": lambda x: SELU_SCALE * _elu(x, SELU_ALPHA),
    "relu": lambda x: max(x, 0.0),
    "relu6": _relu6,
    "leaky_relu": lambda x: x if x >= 0 else 0.2 * x,
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x / (1.0 + math.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
    "mish": lambda x: x * math.tanh(_softplus(x)),
    "hard_silu": lambda x: x * _relu6(x + 3.0) / 6.0,
    "hard_swish": lambda x: x * _hard_sigmoid_v3(x),
    "celu": lambda x: max(x, 0.0) + math.expm1(min(x, 0.0)),
    "log_sigmoid": lambda x: -math.log1p(math.exp(-x)) if x > -30 else x - math.log1p(math.exp(x)),
    "squareplus": lambda x: (x + math.sqrt(x * x + 4.0)) / 2.0,
    "tanh_shrink": lambda x: x - math.tanh(x),
    "hard_tanh": lambda x: min(max(x, -1.0), 1.0),
    "soft_shrink": lambda x: _shrink(x, 0.5),
    "hard_shrink": lambda x: _shrink(x, 0.0),
    "sparse_plus": _sparse_plus,
    "sparse_sigmoid": lambda x: min(max((x + 1.0) / 2.0, 0.0), 1.0),
}
# The points where the functions above turn, and large magnitudes.
EDGES = np.array(
    [-60, -30, -6, -3, -2.5, -1.0000001, -1, -0.9999999, -0.5000001, -0.5, -0.4999999]
    + [-1e-9, 0, 1e-9, 0.4999999, 0.5, 0.5000001, 0.9999999, 1, 1.0000001, 2.5, 3, 6, 30, 60]
)


@pytest.mark.parametrize("name", sorted(SCALAR_REFERENCES))
def test_activation_matches_scalar_reference(name: str) -> None:
    reference = SCALAR_REFERENCES[name]
    x = np.concatenate([GRID, EDGES])
    expected = np.array([reference(float(v)) for v in x])
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(activations.get(name)(x), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(SCALAR_REFERENCES))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_activation_keeps_float_dtype(name: str, dtype: type) -> None:
    x = GRID.astype(dtype)
    with np.errstate(over="ignore"):
        assert activations.get(name)(x).dtype == dtype


@pytest.mark.parametrize(
    ("name", "x", "expected"),
    [
        ("hard_sigmoid", 1.0, 0.7),
        ("hard_sigmoid", -3.0, 0.0),
        ("hard_sigmoid", 2.5, 1.0),
        ("hard_sigmoid_v3", 1.0, 1.0 / 6.0 + 0.5),
        ("elu", -1.0, math.exp(-1.0) - 1.0),
        ("softsign", 3.0, 0.75),
        ("relu6", 7.5, 6.0),
        ("leaky_relu", -5.0, -1.0),
        ("linear", -2.5, -2.5),
    ],
)
def test_hand_values(name: str, x: float, expected: float) -> None:
    assert activations.get(name)(np.array([x]))[0] == pytest.approx(expected, abs=1e-12)


def test_relu_hand_values_from_spec() -> None:
    x = np.array([-2, -1, 0, 0.5, 1, 3, 7], dtype=np.float32)
    expected = np.array([-0.25, -0.15, -0.05, 0, 1, 3, 6], dtype=np.float32)
    for out in (
        activations.relu(x, alpha=0.1, max_value=6, threshold=0.5),
        activations.relu(x, negative_slope=0.1, max_value=6, threshold=0.5),
    ):
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected, atol=1e-7)


def _relu_reference(x: float, alpha: float, max_value: float | None, threshold: float) -> float:
    if alpha != 0 and max_value is None and threshold == 0:
        return x if x >= 0 else alpha * x
    positive = x if x > threshold else 0.0
    if max_value is not None:
        positive = min(max(positive, 0.0), max_value)
    return positive - alpha * max(threshold - x, 0.0)


@settings(max_examples=100, deadline=None)
@given(
    x=hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-50, 50)),
    alpha=st.sampled_from([0.0, 0.1, 0.3, 1.0, 2.0]),
    max_value=st.one_of(st.none(), st.sampled_from([0.5, 1.0, 6.0, 10.0])),
    threshold=st.sampled_from([0.0, 0.5, -1.0, 2.0]),
)
def test_relu_matches_piecewise_reference(
    x: np.ndarray, alpha: float, max_value: float | None, threshold: float
) -> None:
    expected = [_relu_reference(float(v), alpha, max_value, threshold) for v in x]
    out = activations.relu(x, alpha, max_value, threshold)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "x", "expected"),
    [
        ({"threshold": 0.5}, 0.5, 0.0),
        ({"threshold": -1.0}, -0.5, -0.5),
        ({"threshold": -1.0, "max_value": 3.0}, -0.5, 0.0),
        ({"alpha": 2.0}, -1.0, -2.0),
    ],
)
def test_relu_documented_corner_cases(kwargs: dict, x: float, expected: float) -> None:
    assert activations.relu(np.array([x]), **kwargs)[0] == pytest.approx(expected)


def test_relu_rejects_conflicting_slopes() -> None:
    with pytest.raises(ConfigError, match=r"Received: alpha=0.1, .*negative_slope=0.2"):
        activations.relu(np.zeros(2), alpha=0.1, negative_slope=0.2)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5),
        elements=st.floats(-60, 60, width=32),
    )
)
def test_softmax_is_a_distribution_over_the_last_axis(x: np.ndarray) -> None:
    out = activations.softmax(x)
    assert out.dtype == np.float32
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(activations.softmax(x + np.float32(3.0)), out, atol=1e-5)


def test_softmax_matches_closed_form() -> None:
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, math.log(2.0)]])
    e = math.e
    first = [1 / (1 + e + e * e), e / (1 + e + e * e), e * e / (1 + e + e * e)]
    np.testing.assert_allclose(activations.softmax(x), [first, [0.25, 0.25, 0.5]])


def test_softmax_rejects_1d_under_keras2() -> None:
    with pytest.raises(ShapeError) as info:
        activations.softmax(np.zeros(3))
    message = str(info.value)
    assert "Cannot apply softmax to a tensor that is 1D" in message
    assert "Received: input shape=(3,)" in message


def test_softmax_2d_ignores_axis_under_keras2_but_not_keras3() -> None:
    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    by_row = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    by_column = np.exp(x) / np.exp(x).sum(axis=0, keepdims=True)
    np.testing.assert_allclose(activations.softmax(x, axis=0), by_row)
    with keras_semantics("2.15.0"):  # tf.keras honours the axis at rank 2
        np.testing.assert_allclose(activations.softmax(x, axis=0), by_column)
    with keras_semantics("3.15.1"):
        np.testing.assert_allclose(activations.softmax(x, axis=0), by_column)
        np.testing.assert_allclose(
            activations.softmax(np.array([0.0, math.log(3.0)])), [0.25, 0.75]
        )


def test_softmax_honours_axis_for_rank_3_under_keras2() -> None:
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7.0
    expected = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(activations.softmax(x, axis=1), expected)


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
        elements=st.floats(-30, 30),
    )
)
def test_log_softmax_is_log_of_softmax(x: np.ndarray) -> None:
    with keras_semantics("3.15.1"):
        expected = np.log(activations.softmax(x))
    np.testing.assert_allclose(activations.log_softmax(x), expected, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.floats(-40, 40))
def test_erf_matches_math_erf(x: float) -> None:
    assert float(activations.erf(np.array([x]))[0]) == pytest.approx(math.erf(x), abs=1e-15)


def test_erf_limits_and_nan() -> None:
    out = activations.erf(np.array([np.inf, -np.inf, 0.0, np.nan]))
    assert out[:3].tolist() == [1.0, -1.0, 0.0]
    assert np.isnan(out[3])


def test_gelu_approximate_uses_tanh_form() -> None:
    x = np.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
    expected = 0.5 * x * (1 + np.tanh(inner))
    np.testing.assert_allclose(activations.gelu(x, approximate=True), expected, rtol=1e-12)


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "elu", "selu", "mish", "silu"])
def test_extreme_inputs_do_not_overflow(name: str) -> None:
    x = np.array([-1000.0, 1000.0], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = activations.get(name)(x)
    assert np.all(np.isfinite(out))


def test_get_resolves_none_names_and_callables() -> None:
    def mine(x: np.ndarray) -> np.ndarray:
        return x

    assert activations.get(None) is activations.linear
    assert activations.get("relu") is activations.relu
    assert activations.get(mine) is mine
    assert activations.get("swish") is activations.silu
    assert activations.get("hard_swish") is activations.hard_silu


def test_hard_sigmoid_name_follows_keras_semantics() -> None:
    x = np.array([1.0], dtype=np.float32)
    assert activations.get("hard_sigmoid")(x)[0] == pytest.approx(0.7)
    with keras_semantics("3.15.1"):
        fn = activations.get("hard_sigmoid")
        assert fn is activations.hard_sigmoid_v3
        assert activations.serialize(fn) == "hard_sigmoid_v3"
        assert fn(x)[0] == pytest.approx(2.0 / 3.0)


@pytest.mark.parametrize(
    "identifier",
    [
        {"module": "keras.activations", "class_name": "relu", "config": None},
        {
            "module": "builtins",
            "class_name": "function",
            "config": "relu",
            "registered_name": "function",
        },
        {"class_name": "relu", "config": {}},
    ],
)
def test_get_reads_serialized_dicts(identifier: dict) -> None:
    assert activations.get(identifier) is activations.relu


def test_get_finds_custom_objects() -> None:
    def scaled(x: np.ndarray) -> np.ndarray:
        return 2 * x

    with custom_object_scope({"scaled": scaled}):
        assert activations.get("scaled") is scaled
        keras3 = {"module": "builtins", "class_name": "function", "config": "scaled"}
        assert activations.get(keras3) is scaled
    with pytest.raises(UnknownObjectError):
        activations.get("scaled")


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(UnknownObjectError) as info:
        activations.get("nope")
    message = str(info.value)
    assert "Unknown activation function" in message
    assert "'nope'" in message
    assert "relu" in message and "softmax" in message


def test_uninterpretable_identifier() -> None:
    with pytest.raises(ConfigError, match=r"Received: identifier=3"):
        activations.get(3)


@pytest.mark.parametrize(
    ("name", "stored"),
    [(name, name) for name in sorted(SCALAR_REFERENCES) if name not in ("swish", "hard_swish")]
    + [("swish", "silu"), ("hard_swish", "hard_silu"), ("softmax", "softmax")]
    + [("log_softmax", "log_softmax")],
)
def test_serialize_gives_registered_name(name: str, stored: str) -> None:
    assert activations.serialize(activations.get(name)) == stored


def test_serialize_user_function_and_bad_object() -> None:
    def my_act(x: np.ndarray) -> np.ndarray:
        return x

    assert activations.serialize(my_act) == "my_act"
    with pytest.raises(ConfigError, match="Received: activation=3"):
        activations.serialize(3)


@pytest.fixture(scope="module")
def keras_activations():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras  # a test dependency: the second implementation

    return keras.activations


KERAS3_PAIRS = [
    pytest.param("gelu", {}, activations.gelu, id="gelu"),
    pytest.param(
        "gelu",
        {"approximate": True},
        lambda x: activations.gelu(x, approximate=True),
        id="gelu-approximate",
    ),
    pytest.param("silu", {}, activations.silu, id="silu"),
    pytest.param("mish", {}, activations.mish, id="mish"),
    pytest.param("log_softmax", {}, activations.log_softmax, id="log_softmax"),
    pytest.param("hard_silu", {}, activations.hard_silu, id="hard_silu"),
    pytest.param("hard_sigmoid", {}, activations.hard_sigmoid_v3, id="hard_sigmoid-v3"),
    pytest.param("elu", {}, activations.elu, id="elu"),
    pytest.param("selu", {}, activations.selu, id="selu"),
    pytest.param("softplus", {}, activations.softplus, id="softplus"),
    pytest.param("relu6", {}, activations.relu6, id="relu6"),
    pytest.param("leaky_relu", {}, activations.leaky_relu, id="leaky_relu"),
    pytest.param("sigmoid", {}, activations.sigmoid, id="sigmoid"),
    pytest.param("softsign", {}, activations.softsign, id="softsign"),
    *(
        pytest.param(name, {}, getattr(activations, name), id=name)
        for name in (
            "celu", "glu", "hard_shrink", "hard_tanh", "log_sigmoid", "soft_shrink",
            "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "tanh_shrink",
            "hard_swish", "swish", "exponential", "tanh", "relu", "linear", "softmax",
        )
    ),
    pytest.param("celu", {"alpha": 0.5}, lambda x: activations.celu(x, 0.5), id="celu-alpha"),
    pytest.param(
        "threshold",
        {"threshold": 0.5, "default_value": -2.0},
        lambda x: activations.threshold(x, 0.5, -2.0),
        id="threshold",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs", "ours"), KERAS3_PAIRS)
def test_matches_keras3(keras_activations, name: str, kwargs: dict, ours) -> None:
    x = np.concatenate([np.linspace(-7, 7, 63), EDGES[2:-2]]).astype(np.float32).reshape(6, 14)
    expected = np.asarray(getattr(keras_activations, name)(x, **kwargs))
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(ours(x), expected, rtol=1e-6, atol=1e-6)


def test_softmax_axis_matches_keras3(keras_activations) -> None:
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    expected = np.asarray(keras_activations.softmax(x, axis=0))
    with keras_semantics("3.15.1"):
        np.testing.assert_allclose(activations.softmax(x, axis=0), expected, atol=1e-6)


def test_relu_matches_keras3(keras_activations) -> None:
    x = np.linspace(-3, 8, 45, dtype=np.float32)
    expected = np.asarray(
        keras_activations.relu(x, negative_slope=0.2, max_value=4.0, threshold=-0.5)
    )
    out = activations.relu(x, negative_slope=0.2, max_value=4.0, threshold=-0.5)
    np.testing.assert_allclose(out, expected, atol=1e-6)
