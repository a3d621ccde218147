from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from layerserve import regularizers
from layerserve.errors import ConfigError, UnknownObjectError
from layerserve.serialization import custom_object_scope, keras_semantics

F32_001 = 0.009999999776482582


def test_l2_factory_config_shows_float32_rounding() -> None:
    assert regularizers.serialize(regularizers.l2(0.01)) == {
        "class_name": "L1L2",
        "config": {"l1": 0.0, "l2": F32_001},
    }


@pytest.mark.parametrize(
    ("identifier", "config"),
    [
        ("l1", {"l1": F32_001, "l2": 0.0}),
        ("l2", {"l1": 0.0, "l2": F32_001}),
        ("l1_l2", {"l1": F32_001, "l2": F32_001}),
        ("L1L2", {"l1": 0.0, "l2": 0.0}),
        ("l1l2", {"l1": 0.0, "l2": 0.0}),
        ({"class_name": "L1L2", "config": {"l1": 0.5, "l2": 0.25}}, {"l1": 0.5, "l2": 0.25}),
        ({"class_name": "L1", "config": {"l1": 0.5}}, {"l1": 0.5, "l2": 0.0}),
        ({"class_name": "L2", "config": {"l2": 0.5}}, {"l1": 0.0, "l2": 0.5}),
        (
            {
                "module": "keras.regularizers",
                "class_name": "L1L2",
                "config": {"l1": 0.01, "l2": 0.0},
                "registered_name": None,
            },
            {"l1": F32_001, "l2": 0.0},
        ),
    ],
)
def test_get_under_keras2(identifier: object, config: dict) -> None:
    regularizer = regularizers.get(identifier)
    assert type(regularizer) is regularizers.L1L2
    assert regularizer.get_config() == config


@pytest.mark.parametrize(
    ("identifier", "cls", "config"),
    [
        ("l1", regularizers.L1, {"l1": F32_001}),
        ("l2", regularizers.L2, {"l2": 0.01}),
        ({"class_name": "L1", "config": {"l1": 0.01}}, regularizers.L1, {"l1": F32_001}),
        ({"class_name": "L2", "config": {"l2": 0.01}}, regularizers.L2, {"l2": 0.01}),
        ("L1L2", regularizers.L1L2, {"l1": 0.0, "l2": 0.0}),
    ],
)
def test_get_under_keras3(identifier: object, cls: type, config: dict) -> None:
    with keras_semantics("3.15.1"):
        regularizer = regularizers.get(identifier)
    assert type(regularizer) is cls
    assert regularizer.get_config() == config


@settings(max_examples=80, deadline=None)
@given(
    x=hnp.arrays(np.float32, st.integers(1, 40), elements=st.floats(-100, 100, width=32)),
    l1=st.floats(0, 10),
    l2=st.floats(0, 10),
)
def test_l1l2_penalty(x: np.ndarray, l1: float, l2: float) -> None:
    values = [float(v) for v in x]
    expected = float(np.float32(l1)) * math.fsum(abs(v) for v in values) + float(
        np.float32(l2)
    ) * math.fsum(v * v for v in values)
    penalty = regularizers.L1L2(l1, l2)(x)
    assert isinstance(penalty, float)
    assert penalty == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_hand_penalties() -> None:
    w = np.array([[1.0, -2.0], [0.5, 0.0]], dtype=np.float32)
    assert regularizers.L1L2(0.5, 0.25)(w) == pytest.approx(0.5 * 3.5 + 0.25 * 5.25)
    assert regularizers.L1(0.5)(w) == pytest.approx(1.75)
    assert regularizers.L2(2.0)(w) == pytest.approx(10.5)
    assert regularizers.L1L2()(w) == 0.0


@pytest.mark.parametrize("cls", [regularizers.L1L2, regularizers.L1])
@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "a"])
def test_invalid_l1_factor(cls: type, bad: object) -> None:
    with pytest.raises(ConfigError, match=rf"non-negative finite number. Received: l1={bad!r}"):
        cls(l1=bad)


def test_invalid_l2_factor() -> None:
    with pytest.raises(ConfigError, match=r"Received: l2=-0.5"):
        regularizers.L2(-0.5)


def test_factory_defaults() -> None:
    assert regularizers.l1().get_config() == {"l1": F32_001, "l2": 0.0}
    assert regularizers.l1_l2().get_config() == {"l1": F32_001, "l2": F32_001}
    assert regularizers.L1L2().get_config() == {"l1": 0.0, "l2": 0.0}
    assert regularizers.L1().get_config() == {"l1": F32_001}
    assert regularizers.L2().get_config() == {"l2": 0.01}


def test_none_callables_and_round_trip() -> None:
    assert regularizers.get(None) is None
    assert regularizers.serialize(None) is None

    def penalty(w: np.ndarray) -> float:
        return 0.0

    assert regularizers.get(penalty) is penalty
    original = regularizers.l1_l2(0.2, 0.3)
    restored = regularizers.get(regularizers.serialize(original))
    assert restored.get_config() == original.get_config()


def test_custom_objects() -> None:
    class Scaled(regularizers.Regularizer):
        def __init__(self, factor: float = 1.0) -> None:
            self.factor = factor

        def __call__(self, x: np.ndarray) -> float:
            return self.factor * float(np.sum(x))

        def get_config(self) -> dict:
            return {"factor": self.factor}

    with custom_object_scope({"Scaled": Scaled}):
        restored = regularizers.get({"class_name": "Scaled", "config": {"factor": 3.0}})
    assert restored(np.ones(2)) == 6.0


def test_unknown_and_uninterpretable() -> None:
    with pytest.raises(UnknownObjectError, match=r"Unknown regularizer: 'l3'"):
        regularizers.get("l3")
    with pytest.raises(ConfigError, match=r"Received: identifier=1.5"):
        regularizers.get(1.5)
