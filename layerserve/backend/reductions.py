"""Reductions over axes (``K.mean``, ``K.sum``, ...)."""

from __future__ import annotations

import numpy as np

from layerserve.backend._common import (
    Axis,
    Tensor,
    axis_argument,
    float_if_bool,
    integer_dtype,
    is_integer,
)
from layerserve.errors import ShapeError


def mean(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (booleans counted as floatx). An integer tensor's mean stays of
    its type, truncated toward zero, as TensorFlow's ``reduce_mean`` gives it."""
    x = float_if_bool(x)
    if not is_integer(x):
        return np.mean(x, axis=axis_argument(axis), keepdims=keepdims)
    # NumPy operations only, so that the ONNX tracer follows them (np.asarray would not)
    total = np.sum(x, axis=axis_argument(axis), keepdims=keepdims, dtype=x.dtype)
    count = np.sum(np.ones_like(x), axis=axis_argument(axis), keepdims=keepdims, dtype=x.dtype)
    count = np.maximum(count, 1)  # an empty reduction: a mean of 0, not a division by 0
    quotient = total // count
    # floor division rounds toward minus infinity; TensorFlow's integer division truncates
    return np.where((total % count != 0) & (total < 0), quotient + 1, quotient)


def sum(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Sum over ``axis``; an integer tensor's sum stays of its type (wrapping on overflow,
    as TensorFlow's ``reduce_sum`` does)."""
    return np.sum(x, axis=axis_argument(axis), keepdims=keepdims, dtype=integer_dtype(x))


def max(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Maximum over ``axis``."""
    return np.max(x, axis=axis_argument(axis), keepdims=keepdims)


def min(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Minimum over ``axis``."""
    return np.min(x, axis=axis_argument(axis), keepdims=keepdims)


def prod(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Product over ``axis``; an integer tensor's product stays of its type."""
    return np.prod(x, axis=axis_argument(axis), keepdims=keepdims, dtype=integer_dtype(x))


def var(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Population variance over ``axis``. An integer tensor is refused: tf.keras refuses
    it, and Keras 2.2 computes it in integers, truncating; cast it to a float first."""
    if is_integer(x):
        raise ShapeError(
            "var and std expect a float or boolean tensor: Keras versions disagree on an "
            f"integer one. Received: dtype={np.asarray(x).dtype}"
        )
    return np.var(float_if_bool(x), axis=axis_argument(axis), keepdims=keepdims)


def std(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Population standard deviation over ``axis``."""
    return np.sqrt(var(x, axis=axis, keepdims=keepdims))


def any(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Logical OR over ``axis``."""
    return np.any(x, axis=axis_argument(axis), keepdims=keepdims)


def all(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Logical AND over ``axis``."""
    return np.all(x, axis=axis_argument(axis), keepdims=keepdims)


def argmax(x: Tensor, axis: int = -1) -> Tensor:
    """Index of the maximum along ``axis``."""
    return np.argmax(x, axis=axis)


def argmin(x: Tensor, axis: int = -1) -> Tensor:
    """Index of the minimum along ``axis``."""
    return np.argmin(x, axis=axis)


def logsumexp(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """``log(sum(exp(x)))`` over ``axis``, computed stably."""
    axes = axis_argument(axis)
    peak = np.max(x, axis=axes, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    out = np.log(np.sum(np.exp(x - peak), axis=axes, keepdims=True)) + peak
    return out if keepdims else np.squeeze(out, axis=axes)
