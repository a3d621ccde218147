from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from layerserve import _config, constraints
from layerserve.errors import ConfigError, UnknownObjectError
from layerserve.serialization import custom_object_scope

EPS = 1e-7

weights = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=6),
    elements=st.floats(-20, 20),
)


def _column_norms(w: np.ndarray) -> np.ndarray:
    return np.sqrt((w * w).sum(axis=0))


def test_max_norm_hand_values() -> None:
    w = np.array([[3.0, 0.0], [4.0, 0.5]])
    expected = np.array(
        [[3.0 * 2 / (5 + EPS), 0.0], [4.0 * 2 / (5 + EPS), 0.5 * 0.5 / (0.5 + EPS)]]
    )
    np.testing.assert_allclose(constraints.MaxNorm(2)(w), expected, rtol=1e-15)


def test_unit_norm_and_min_max_norm_hand_values() -> None:
    w = np.array([[3.0], [4.0]])
    np.testing.assert_allclose(constraints.UnitNorm()(w), [[0.6], [0.8]], rtol=1e-7)
    half_way = constraints.MinMaxNorm(min_value=0.0, max_value=1.0, rate=0.5)(w)
    np.testing.assert_allclose(half_way, w * (0.5 * 1.0 + 0.5 * 5.0) / (EPS + 5.0))


@settings(max_examples=80, deadline=None)
@given(w=weights, max_value=st.floats(0.1, 10))
def test_max_norm_caps_each_column(w: np.ndarray, max_value: float) -> None:
    norms = _column_norms(w)
    out = constraints.MaxNorm(max_value)(w)
    np.testing.assert_allclose(
        _column_norms(out), np.minimum(norms, max_value), rtol=1e-6, atol=1e-6
    )
    assert np.all(out * w >= 0)


@settings(max_examples=80, deadline=None)
@given(w=weights)
def test_unit_norm_gives_unit_columns(w: np.ndarray) -> None:
    norms = _column_norms(w)
    out_norms = _column_norms(constraints.UnitNorm()(w))
    big = norms > 1e-3
    np.testing.assert_allclose(out_norms[big], 1.0, rtol=1e-4)
    # atol: squaring norms below ~1e-154 underflows to 0 in the reference itself.
    np.testing.assert_allclose(
        out_norms[~big], norms[~big] / (norms[~big] + EPS), rtol=1e-7, atol=1e-12
    )


@settings(max_examples=80, deadline=None)
@given(w=weights, low=st.floats(0, 2), width=st.floats(0.1, 3), rate=st.floats(0, 1))
def test_min_max_norm_moves_norms_towards_range(
    w: np.ndarray, low: float, width: float, rate: float
) -> None:
    high = low + width
    norms = _column_norms(w)
    out_norms = _column_norms(constraints.MinMaxNorm(low, high, rate)(w))
    target = rate * np.clip(norms, low, high) + (1 - rate) * norms
    big = norms > 1e-3
    np.testing.assert_allclose(out_norms[big], target[big], rtol=1e-4)


@settings(max_examples=80, deadline=None)
@given(w=weights)
def test_non_neg_zeroes_negatives(w: np.ndarray) -> None:
    out = constraints.NonNeg()(w)
    assert np.all(out >= 0)
    np.testing.assert_array_equal(out.ravel(), [max(float(v), 0.0) for v in w.ravel()])


def test_axis_list_for_conv_kernels() -> None:
    kernel = np.arange(1, 2 * 2 * 3 * 4 + 1, dtype=np.float32).reshape(2, 2, 3, 4)
    out = constraints.UnitNorm(axis=[0, 1, 2])(kernel)
    assert out.dtype == np.float32
    per_filter = np.sqrt((out.astype(np.float64) ** 2).reshape(12, 4).sum(axis=0))
    np.testing.assert_allclose(per_filter, 1.0, rtol=1e-6)


def test_epsilon_comes_from_settings() -> None:
    previous = _config.epsilon()
    _config.set_epsilon(1.0)
    try:
        out = constraints.UnitNorm()(np.array([[3.0], [4.0]]))
    finally:
        _config.set_epsilon(previous)
    np.testing.assert_allclose(out, [[0.5], [4.0 / 6.0]])


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("max_norm", constraints.MaxNorm),
        ("maxnorm", constraints.MaxNorm),
        ("MaxNorm", constraints.MaxNorm),
        ("non_neg", constraints.NonNeg),
        ("nonneg", constraints.NonNeg),
        ("unit_norm", constraints.UnitNorm),
        ("unitnorm", constraints.UnitNorm),
        ("min_max_norm", constraints.MinMaxNorm),
        ("MinMaxNorm", constraints.MinMaxNorm),
    ],
)
def test_get_by_name(name: str, cls: type) -> None:
    assert type(constraints.get(name)) is cls


@pytest.mark.parametrize(
    ("constraint", "serialized"),
    [
        (constraints.MaxNorm(), {"class_name": "MaxNorm", "config": {"max_value": 2, "axis": 0}}),
        (constraints.NonNeg(), {"class_name": "NonNeg", "config": {}}),
        (constraints.UnitNorm(axis=[0, 1]), {"class_name": "UnitNorm", "config": {"axis": [0, 1]}}),
        (
            constraints.MinMaxNorm(),
            {
                "class_name": "MinMaxNorm",
                "config": {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0},
            },
        ),
    ],
)
def test_serialize_and_round_trip(constraint: constraints.Constraint, serialized: dict) -> None:
    assert constraints.serialize(constraint) == serialized
    restored = constraints.get(serialized)
    assert type(restored) is type(constraint)
    assert restored.get_config() == constraint.get_config()


def test_keras3_dict() -> None:
    identifier = {
        "module": "keras.constraints",
        "class_name": "MaxNorm",
        "config": {"max_value": 3, "axis": 1},
        "registered_name": None,
    }
    assert constraints.get(identifier).get_config() == {"max_value": 3, "axis": 1}


def test_none_callables_custom_and_errors() -> None:
    assert constraints.get(None) is None

    def clamp(w: np.ndarray) -> np.ndarray:
        return np.clip(w, -1, 1)

    assert constraints.get(clamp) is clamp
    with custom_object_scope({"clamp": clamp}):
        assert constraints.get("clamp") is clamp
    with pytest.raises(UnknownObjectError, match=r"Unknown constraint: 'max'"):
        constraints.get("max")
    with pytest.raises(ConfigError, match=r"Received: identifier=2"):
        constraints.get(2)
