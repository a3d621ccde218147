"""Weight constraints with the Keras 2.2.4 formulas (spec section 6).

Norms are ``sqrt(sum(w**2))`` over ``axis`` with dimensions kept, and
``eps = layerserve._config.epsilon()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from layerserve import _config
from layerserve.errors import ConfigError, received
from layerserve.serialization import lookup, split_identifier
from layerserve.serialization import serialize as _serialize_object

Axis = int | Sequence[int]


def _as_float_array(w: Any) -> np.ndarray:
    w = np.asarray(w)
    if not np.issubdtype(w.dtype, np.floating):
        w = w.astype(_config.floatx())
    return w


def _norms(w: np.ndarray, axis: Axis) -> np.ndarray:
    axes = axis if isinstance(axis, int) else tuple(axis)
    return np.sqrt(np.sum(np.square(w), axis=axes, keepdims=True))


class Constraint:
    """Base class: ``constraint(w) -> projected w``."""

    def __call__(self, w: Any) -> np.ndarray:
        return w

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Constraint:
        return cls(**config)


class MaxNorm(Constraint):
    """Rescale so each norm along ``axis`` is at most ``max_value``."""

    def __init__(self, max_value: float = 2, axis: Axis = 0) -> None:
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w: Any) -> np.ndarray:
        w = _as_float_array(w)
        norms = _norms(w, self.axis)
        desired = np.clip(norms, 0.0, float(self.max_value))
        return w * (desired / (_config.epsilon() + norms))

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Zero the negative weights (multiply by the mask ``w >= 0``)."""

    def __call__(self, w: Any) -> np.ndarray:
        w = _as_float_array(w)
        return w * (w >= 0).astype(w.dtype)


class UnitNorm(Constraint):
    """Rescale to unit norm along ``axis``."""

    def __init__(self, axis: Axis = 0) -> None:
        self.axis = axis

    def __call__(self, w: Any) -> np.ndarray:
        w = _as_float_array(w)
        return w / (_config.epsilon() + _norms(w, self.axis))

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Move each norm along ``axis`` towards ``[min_value, max_value]`` at ``rate``."""

    def __init__(
        self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Axis = 0
    ) -> None:
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w: Any) -> np.ndarray:
        w = _as_float_array(w)
        norms = _norms(w, self.axis)
        clipped = np.clip(norms, float(self.min_value), float(self.max_value))
        rate = float(self.rate)
        desired = rate * clipped + (1.0 - rate) * norms
        return w * (desired / (_config.epsilon() + norms))

    def get_config(self) -> dict[str, Any]:
        return {
            "min_value": self.min_value,
            "max_value": self.max_value,
            "rate": self.rate,
            "axis": self.axis,
        }


max_norm = maxnorm = MaxNorm
non_neg = nonneg = NonNeg
unit_norm = unitnorm = UnitNorm
min_max_norm = MinMaxNorm

_CONSTRAINTS: dict[str, type[Constraint]] = {
    "MaxNorm": MaxNorm,
    "NonNeg": NonNeg,
    "UnitNorm": UnitNorm,
    "MinMaxNorm": MinMaxNorm,
    "max_norm": MaxNorm,
    "maxnorm": MaxNorm,
    "non_neg": NonNeg,
    "nonneg": NonNeg,
    "unit_norm": UnitNorm,
    "unitnorm": UnitNorm,
    "min_max_norm": MinMaxNorm,
}


def _build(target: Any, config: Mapping[str, Any]) -> Any:
    if isinstance(target, type) and hasattr(target, "from_config"):
        return target.from_config(config)
    if isinstance(target, type) or config:
        return target(**config)
    return target


def get(identifier: Any) -> Any:
    """Resolve None, a name, a serialized dict, an instance or a callable to a constraint."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        return _build(lookup(identifier, _CONSTRAINTS, "constraint"), {})
    if isinstance(identifier, Mapping):
        name, config = split_identifier(identifier, "constraint")
        return _build(lookup(name, _CONSTRAINTS, "constraint"), config)
    if callable(identifier):
        return identifier
    raise ConfigError(
        "Could not interpret constraint identifier: expected None, a name, a serialized "
        "dict or a callable. " + received("identifier", identifier)
    )


def serialize(constraint: Any) -> dict[str, Any] | None:
    """``{"class_name", "config"}`` for a constraint, None for None."""
    return _serialize_object(constraint)
