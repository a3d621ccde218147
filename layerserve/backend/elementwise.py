"""Element-wise functions and the activations (``K.abs``, ``K.relu``, ...)."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations as _activations
from layerserve.backend._common import Axis, Tensor, axis_argument


def abs(x: Tensor) -> Tensor:
    """Absolute value."""
    return np.abs(x)


def square(x: Tensor) -> Tensor:
    """``x ** 2``."""
    return np.square(x)


def sqrt(x: Tensor) -> Tensor:
    """Square root, with negative inputs clipped to 0 first (as Keras does)."""
    return np.sqrt(np.clip(x, 0.0, np.inf))


def exp(x: Tensor) -> Tensor:
    """``e ** x``."""
    return np.exp(x)


def log(x: Tensor) -> Tensor:
    """Natural logarithm."""
    return np.log(x)


def pow(x: Tensor, a: Any) -> Tensor:
    """``x ** a``."""
    return np.power(x, a)


def sign(x: Tensor) -> Tensor:
    """-1, 0 or 1 by the sign of ``x``."""
    return np.sign(x)


def round(x: Tensor) -> Tensor:
    """Round to the nearest integer, halves to even."""
    return np.round(x)


def sin(x: Tensor) -> Tensor:
    """Sine."""
    return np.sin(x)


def cos(x: Tensor) -> Tensor:
    """Cosine."""
    return np.cos(x)


def clip(x: Tensor, min_value: Any, max_value: Any) -> Tensor:
    """Clip to ``[min_value, max_value]``; a max below the min is raised to the min."""
    if min_value is None:
        min_value = -np.inf
    if max_value is None:
        max_value = np.inf
    elif max_value < min_value:
        max_value = min_value
    return np.clip(x, min_value, max_value)


def maximum(x: Tensor, y: Tensor) -> Tensor:
    """Element-wise maximum."""
    return np.maximum(x, y)


def minimum(x: Tensor, y: Tensor) -> Tensor:
    """Element-wise minimum."""
    return np.minimum(x, y)


def equal(x: Tensor, y: Tensor) -> Tensor:
    """Element-wise ``x == y``."""
    return np.equal(x, y)


def not_equal(x: Tensor, y: Tensor) -> Tensor:
    """Element-wise ``x != y``."""
    return np.not_equal(x, y)


def greater(x: Tensor, y: Tensor) -> Tensor:
    """Element-wise ``x > y``."""
    return np.greater(x, y)


def greater_equal(x: Tensor, y: Tensor) -> Tensor:
    """Element-wise ``x >= y``."""
    return np.greater_equal(x, y)


def less(x: Tensor, y: Tensor) -> Tensor:
    """Element-wise ``x < y``."""
    return np.less(x, y)


def less_equal(x: Tensor, y: Tensor) -> Tensor:
    """Element-wise ``x <= y``."""
    return np.less_equal(x, y)


# Activations.


def relu(
    x: Tensor, alpha: float = 0.0, max_value: float | None = None, threshold: float = 0.0
) -> Tensor:
    """Keras rectifier (see ``layerserve.activations.relu``)."""
    return _activations.relu(x, alpha=alpha, max_value=max_value, threshold=threshold)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """Exponential linear unit."""
    return _activations.elu(x, alpha)


def sigmoid(x: Tensor) -> Tensor:
    """Logistic sigmoid."""
    return _activations.sigmoid(x)


def hard_sigmoid(x: Tensor) -> Tensor:
    """``clip(0.2 x + 0.5, 0, 1)``."""
    return _activations.hard_sigmoid(x)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return _activations.tanh(x)


def softplus(x: Tensor) -> Tensor:
    """``log(1 + e^x)``."""
    return _activations.softplus(x)


def softsign(x: Tensor) -> Tensor:
    """``x / (1 + |x|)``."""
    return _activations.softsign(x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax over ``axis`` at any rank (the backend op, unlike the activation)."""
    axes = axis_argument(axis)
    e = np.exp(x - np.max(x, axis=axes, keepdims=True))
    return e / np.sum(e, axis=axes, keepdims=True)


def l2_normalize(x: Tensor, axis: Axis = None) -> Tensor:
    """``x / sqrt(max(sum(x ** 2, axis), 1e-12))``."""
    axes = axis_argument(axis)
    square_sum = np.sum(np.square(x), axis=axes, keepdims=True)
    return x / np.sqrt(np.maximum(square_sum, 1e-12))
