"""Weight and activity regularizers (spec section 5).

``L1L2`` is the Keras 2.2 class: its factors are cast to floatx NumPy scalars, so a
config shows ``0.009999999776482582`` for 0.01. ``L1`` and ``L2`` are the Keras 3
classes, serialized the way Keras 3 does (L1 float32-rounded, L2 exact).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from layerserve import _config
from layerserve.errors import ConfigError, received
from layerserve.serialization import is_keras3, lookup, split_identifier
from layerserve.serialization import serialize as _serialize_object


def _check_factor(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(
            f"Expected `{name}` to be a non-negative finite number. " + received(name, value)
        )
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ConfigError(
            f"Expected `{name}` to be a non-negative finite number. " + received(name, value)
        )
    return number


def _as_float_array(x: Any) -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(_config.floatx())
    return x


class Regularizer:
    """Base class: ``regularizer(weights) -> penalty``."""

    def __call__(self, x: Any) -> float:
        return 0.0

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Regularizer:
        return cls(**config)


class L1L2(Regularizer):
    """``l1 * sum|x| + l2 * sum x^2``, with factors held as floatx scalars."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        floatx = np.dtype(_config.floatx()).type
        self.l1 = floatx(_check_factor("l1", l1))
        self.l2 = floatx(_check_factor("l2", l2))

    def __call__(self, x: Any) -> float:
        x = _as_float_array(x)
        penalty = 0.0
        if self.l1:
            penalty += np.sum(self.l1 * np.abs(x))
        if self.l2:
            penalty += np.sum(self.l2 * np.square(x))
        return float(penalty)

    def get_config(self) -> dict[str, Any]:
        return {"l1": float(self.l1), "l2": float(self.l2)}


class L1(Regularizer):
    """Keras 3 ``l1 * sum|x|``; the factor is stored as float32."""

    def __init__(self, l1: float = 0.01) -> None:
        self.l1 = np.float32(_check_factor("l1", l1))

    def __call__(self, x: Any) -> float:
        x = _as_float_array(x)
        return float(self.l1 * np.sum(np.abs(x)))

    def get_config(self) -> dict[str, Any]:
        return {"l1": float(self.l1)}


class L2(Regularizer):
    """Keras 3 ``l2 * sum x^2``; the factor is stored exactly."""

    def __init__(self, l2: float = 0.01) -> None:
        self.l2 = _check_factor("l2", l2)

    def __call__(self, x: Any) -> float:
        x = _as_float_array(x)
        return float(self.l2 * np.sum(np.square(x)))

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


def l1(l: float = 0.01) -> L1L2:  # noqa: E741
    """Keras 2 factory: ``L1L2(l1=l)``."""
    return L1L2(l1=l)


def l2(l: float = 0.01) -> L1L2:  # noqa: E741
    """Keras 2 factory: ``L1L2(l2=l)``."""
    return L1L2(l2=l)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:
    """Keras 2 factory: ``L1L2(l1, l2)``."""
    return L1L2(l1=l1, l2=l2)


def _keras2_l1(l1: float = 0.01) -> L1L2:
    return L1L2(l1=l1)


def _keras2_l2(l2: float = 0.01) -> L1L2:
    return L1L2(l2=l2)


_KERAS2: dict[str, Callable[..., Regularizer]] = {
    "L1L2": L1L2,
    "l1l2": L1L2,
    "l1": l1,
    "l2": l2,
    "l1_l2": l1_l2,
    "L1": _keras2_l1,
    "L2": _keras2_l2,
}
_KERAS3: dict[str, Callable[..., Regularizer]] = {
    **_KERAS2,
    "L1": L1,
    "L2": L2,
    "l1": L1,
    "l2": L2,
}


def _build(target: Any, config: Mapping[str, Any], registry: Mapping[str, Any]) -> Any:
    if isinstance(target, type) and hasattr(target, "from_config"):
        return target.from_config(config)
    if isinstance(target, type) or target in registry.values() or config:
        return target(**config)
    return target


def get(identifier: Any) -> Any:
    """Resolve None, a name, a serialized dict, an instance or a callable to a regularizer."""
    if identifier is None:
        return None
    registry = _KERAS3 if is_keras3() else _KERAS2
    if isinstance(identifier, str):
        return _build(lookup(identifier, registry, "regularizer"), {}, registry)
    if isinstance(identifier, Mapping):
        name, config = split_identifier(identifier, "regularizer")
        return _build(lookup(name, registry, "regularizer"), config, registry)
    if callable(identifier):
        return identifier
    raise ConfigError(
        "Could not interpret regularizer identifier: expected None, a name, a serialized "
        "dict or a callable. " + received("identifier", identifier)
    )


def serialize(regularizer: Any) -> dict[str, Any] | None:
    """``{"class_name", "config"}`` for a regularizer, None for None."""
    return _serialize_object(regularizer)
