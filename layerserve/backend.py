"""A NumPy stand-in for the Keras backend module, for Lambda functions (``import ... as K``).

Every function works through NumPy's public functions, ufuncs and operators on its
arguments and never converts them with ``np.asarray``, so an array type implementing
``__array_ufunc__``/``__array_function__`` can trace them. Names and defaults follow the
Keras 2.2.4 TensorFlow backend.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from layerserve import activations as _activations
from layerserve._config import (
    epsilon,
    floatx,
    image_data_format,
    reload_settings,
    set_epsilon,
    set_floatx,
    set_image_data_format,
)
from layerserve.errors import ConfigError, ShapeError, received

__all__ = [
    "abs",
    "all",
    "any",
    "argmax",
    "argmin",
    "batch_dot",
    "batch_flatten",
    "cast",
    "clip",
    "concatenate",
    "constant",
    "cos",
    "cumprod",
    "cumsum",
    "dot",
    "dtype",
    "elu",
    "epsilon",
    "equal",
    "exp",
    "expand_dims",
    "eye",
    "flatten",
    "floatx",
    "gather",
    "greater",
    "greater_equal",
    "hard_sigmoid",
    "image_data_format",
    "int_shape",
    "l2_normalize",
    "less",
    "less_equal",
    "log",
    "logsumexp",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "ndim",
    "not_equal",
    "ones",
    "ones_like",
    "permute_dimensions",
    "pow",
    "prod",
    "reload_settings",
    "relu",
    "repeat",
    "repeat_elements",
    "reshape",
    "round",
    "set_epsilon",
    "set_floatx",
    "set_image_data_format",
    "shape",
    "sigmoid",
    "sign",
    "sin",
    "softmax",
    "softplus",
    "softsign",
    "sqrt",
    "square",
    "squeeze",
    "stack",
    "std",
    "sum",
    "switch",
    "tanh",
    "tile",
    "transpose",
    "var",
    "zeros",
    "zeros_like",
]

Tensor = Any
Axis = int | Sequence[int] | None
DType = Any


def _axis(axis: Axis) -> int | tuple[int, ...] | None:
    if axis is None or isinstance(axis, (int, np.integer)):
        return axis
    return tuple(axis)


def _is_bool(x: Tensor) -> bool:
    return np.dtype(getattr(x, "dtype", float)) == np.bool_


def _float_if_bool(x: Tensor) -> Tensor:
    return cast(x, floatx()) if _is_bool(x) else x


def _is_integer(x: Tensor) -> bool:
    return np.issubdtype(np.dtype(getattr(x, "dtype", float)), np.integer)


def _integer_dtype(x: Tensor) -> np.dtype | None:
    """An integer tensor's own dtype, for a reduction to keep (NumPy would widen it)."""
    return np.dtype(x.dtype) if _is_integer(x) else None


# Reductions.


def mean(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (booleans counted as floatx). An integer tensor's mean stays of
    its type, truncated toward zero, as TensorFlow's ``reduce_mean`` gives it."""
    x = _float_if_bool(x)
    if not _is_integer(x):
        return np.mean(x, axis=_axis(axis), keepdims=keepdims)
    # NumPy operations only, so that the ONNX tracer follows them (np.asarray would not)
    total = np.sum(x, axis=_axis(axis), keepdims=keepdims, dtype=x.dtype)
    count = np.sum(np.ones_like(x), axis=_axis(axis), keepdims=keepdims, dtype=x.dtype)
    count = np.maximum(count, 1)  # an empty reduction: a mean of 0, not a division by 0
    quotient = total // count
    # floor division rounds toward minus infinity; TensorFlow's integer division truncates
    return np.where((total % count != 0) & (total < 0), quotient + 1, quotient)


def sum(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Sum over ``axis``; an integer tensor's sum stays of its type (wrapping on overflow,
    as TensorFlow's ``reduce_sum`` does)."""
    return np.sum(x, axis=_axis(axis), keepdims=keepdims, dtype=_integer_dtype(x))


def max(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Maximum over ``axis``."""
    return np.max(x, axis=_axis(axis), keepdims=keepdims)


def min(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Minimum over ``axis``."""
    return np.min(x, axis=_axis(axis), keepdims=keepdims)


def prod(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Product over ``axis``; an integer tensor's product stays of its type."""
    return np.prod(x, axis=_axis(axis), keepdims=keepdims, dtype=_integer_dtype(x))


def var(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Population variance over ``axis``. An integer tensor is refused: tf.keras refuses
    it, and Keras 2.2 computes it in integers, truncating; cast it to a float first."""
    if _is_integer(x):
        raise ShapeError(
            "var and std expect a float or boolean tensor: Keras versions disagree on an "
            f"integer one. Received: dtype={np.asarray(x).dtype}"
        )
    return np.var(_float_if_bool(x), axis=_axis(axis), keepdims=keepdims)


def std(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Population standard deviation over ``axis``."""
    return np.sqrt(var(x, axis=axis, keepdims=keepdims))


def any(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Logical OR over ``axis``."""
    return np.any(x, axis=_axis(axis), keepdims=keepdims)


def all(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Logical AND over ``axis``."""
    return np.all(x, axis=_axis(axis), keepdims=keepdims)


def argmax(x: Tensor, axis: int = -1) -> Tensor:
    """Index of the maximum along ``axis``."""
    return np.argmax(x, axis=axis)


def argmin(x: Tensor, axis: int = -1) -> Tensor:
    """Index of the minimum along ``axis``."""
    return np.argmin(x, axis=axis)


def logsumexp(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """``log(sum(exp(x)))`` over ``axis``, computed stably."""
    axes = _axis(axis)
    peak = np.max(x, axis=axes, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    out = np.log(np.sum(np.exp(x - peak), axis=axes, keepdims=True)) + peak
    return out if keepdims else np.squeeze(out, axis=axes)


# Element-wise.


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


def cast(x: Tensor, dtype: DType) -> Tensor:
    """``x`` converted to ``dtype``."""
    target = np.dtype(dtype)
    if isinstance(x, (bool, int, float, complex)):
        return np.asarray(x, dtype=target)
    astype = getattr(np, "astype", None)
    return astype(x, target) if astype is not None else x.astype(target)


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
    axes = _axis(axis)
    e = np.exp(x - np.max(x, axis=axes, keepdims=True))
    return e / np.sum(e, axis=axes, keepdims=True)


def l2_normalize(x: Tensor, axis: Axis = None) -> Tensor:
    """``x / sqrt(max(sum(x ** 2, axis), 1e-12))``."""
    axes = _axis(axis)
    square_sum = np.sum(np.square(x), axis=axes, keepdims=True)
    return x / np.sqrt(np.maximum(square_sum, 1e-12))


# Shapes and layout.


def shape(x: Tensor) -> np.ndarray:
    """The shape as an int32 vector (the Keras symbolic shape)."""
    return np.array(np.shape(x), dtype=np.int32)


def int_shape(x: Tensor) -> tuple[int | None, ...]:
    """The shape as a tuple of ints (None for an unknown dimension)."""
    return tuple(None if d is None else int(d) for d in np.shape(x))


def ndim(x: Tensor) -> int:
    """Number of axes."""
    return int(np.ndim(x))


def dtype(x: Tensor) -> str:
    """The dtype's name, e.g. ``'float32'``."""
    return np.dtype(x.dtype).name


def reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Reshape (one entry may be -1)."""
    return np.reshape(x, tuple(int(d) for d in shape))


def permute_dimensions(x: Tensor, pattern: Sequence[int]) -> Tensor:
    """Reorder axes by ``pattern``."""
    return np.transpose(x, tuple(pattern))


def transpose(x: Tensor) -> Tensor:
    """Reverse the axes."""
    return np.transpose(x)


def expand_dims(x: Tensor, axis: int = -1) -> Tensor:
    """Insert a length-1 axis at ``axis``."""
    return np.expand_dims(x, axis)


def squeeze(x: Tensor, axis: int) -> Tensor:
    """Remove the length-1 axis ``axis``."""
    return np.squeeze(x, axis=axis)


def flatten(x: Tensor) -> Tensor:
    """Flatten to 1-D."""
    return np.reshape(x, (-1,))


def batch_flatten(x: Tensor) -> Tensor:
    """Flatten all but the first axis: ``(N, ...) -> (N, prod(...))``."""
    return np.reshape(x, (-1, math.prod(np.shape(x)[1:])))


def concatenate(tensors: Sequence[Tensor], axis: int = -1) -> Tensor:
    """Join tensors along ``axis``."""
    return np.concatenate(list(tensors), axis=axis)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Stack tensors along a new ``axis``."""
    return np.stack(list(tensors), axis=axis)


def repeat(x: Tensor, n: int) -> Tensor:
    """``(N, F) -> (N, n, F)``."""
    if np.ndim(x) != 2:
        raise ShapeError(
            "K.repeat expects a 2D tensor (batch, features). "
            + received("input shape", tuple(np.shape(x)))
        )
    return np.repeat(np.expand_dims(x, 1), n, axis=1)


def repeat_elements(x: Tensor, rep: int, axis: int) -> Tensor:
    """Repeat each element ``rep`` times along ``axis``."""
    return np.repeat(x, rep, axis=axis)


def tile(x: Tensor, n: int | Sequence[int]) -> Tensor:
    """Tile ``x`` by the repetitions ``n``."""
    return np.tile(x, n)


def gather(reference: Tensor, indices: Any) -> Tensor:
    """Rows of ``reference`` selected by ``indices``."""
    return np.take(reference, indices, axis=0)


def cumsum(x: Tensor, axis: int = 0) -> Tensor:
    """Cumulative sum along ``axis``."""
    return np.cumsum(x, axis=axis)


def cumprod(x: Tensor, axis: int = 0) -> Tensor:
    """Cumulative product along ``axis``."""
    return np.cumprod(x, axis=axis)


# Products.


def dot(x: Tensor, y: Tensor) -> Tensor:
    """Contract the last axis of ``x`` with the second-to-last of ``y`` (Keras ``dot``)."""
    if np.ndim(x) <= 2 and np.ndim(y) <= 2 or np.ndim(y) < 2:
        return np.matmul(x, y)
    x_shape = tuple(np.shape(x))
    y_shape = tuple(np.shape(y))
    y_axes = list(range(len(y_shape)))
    y_axes = [y_axes.pop(-2), *y_axes]
    xt = np.reshape(x, (-1, x_shape[-1]))
    yt = np.reshape(np.transpose(y, y_axes), (y_shape[-2], -1))
    return np.reshape(np.matmul(xt, yt), x_shape[:-1] + y_shape[:-2] + y_shape[-1:])


def _batch_dot_axes(axes: Any, x_ndim: int, y_ndim: int) -> tuple[int, int]:
    if axes is None:
        return x_ndim - 1, y_ndim - (1 if y_ndim == 2 else 2)
    if isinstance(axes, (int, np.integer)):
        axes = (axes, axes)
    if builtins.any(isinstance(a, (list, tuple)) for a in axes) or len(axes) != 2:
        raise ConfigError(
            "batch_dot expects `axes` to be None, an int or a pair of ints. "
            + received("axes", axes)
        )
    return int(axes[0]) % x_ndim, int(axes[1]) % y_ndim


def batch_dot(x: Tensor, y: Tensor, axes: int | Sequence[int] | None = None) -> Tensor:
    """Per-sample dot product along ``axes`` (the Keras 2.2.4 algorithm), for inputs of
    rank 2 and 3. Inputs of higher rank are refused: there Keras 2.2 broadcasts the axes
    before the last two, while tf.keras 2.x keeps every axis not summed over of both
    inputs, so the same file gives another shape in each."""
    x_ndim, y_ndim = int(np.ndim(x)), int(np.ndim(y))
    if not (2 <= x_ndim <= 3 and 2 <= y_ndim <= 3):
        raise ShapeError(
            "batch_dot expects inputs of rank 2 or 3 (Keras 2.2 and tf.keras 2.x give other "
            "results for higher ranks). "
            + received("shapes", (tuple(np.shape(x)), tuple(np.shape(y))))
        )
    ax_x, ax_y = _batch_dot_axes(axes, x_ndim, y_ndim)
    diff = builtins.abs(x_ndim - y_ndim)
    if x_ndim > y_ndim:
        y = np.reshape(y, tuple(np.shape(y)) + (1,) * diff)
    elif y_ndim > x_ndim:
        x = np.reshape(x, tuple(np.shape(x)) + (1,) * diff)
    rank = np.ndim(x)
    if rank == 2:
        if ax_x == ax_y:
            out = np.sum(x * y, axis=ax_x)
        else:
            out = np.sum(np.transpose(x) * y, axis=ax_y)
    else:
        if ax_x != rank - 1:
            x = np.swapaxes(x, -1, -2)
        if ax_y == rank - 1:
            y = np.swapaxes(y, -1, -2)
        out = np.matmul(x, y)
    if diff:
        start = x_ndim + y_ndim - 3 if x_ndim > y_ndim else x_ndim - 1
        out = np.squeeze(out, axis=tuple(range(start, start + diff)))
    if np.ndim(out) == 1:
        out = np.expand_dims(out, 1)
    return out


# Selection.


def switch(
    condition: Tensor,
    then_expression: Tensor | Callable[[], Tensor],
    else_expression: Tensor | Callable[[], Tensor],
) -> Tensor:
    """``then_expression`` where ``condition`` holds, else ``else_expression``."""
    then_value = then_expression() if callable(then_expression) else then_expression
    else_value = else_expression() if callable(else_expression) else else_expression
    cond_ndim = int(np.ndim(condition))
    expr_ndim = int(np.ndim(then_value))
    if cond_ndim > expr_ndim:
        raise ShapeError(
            "Rank of `condition` should be less than or equal to rank of `then_expression` "
            f"and `else_expression`. Received: ndim(condition)={cond_ndim}, "
            f"ndim(then_expression)={expr_ndim}"
        )
    if 0 < cond_ndim < expr_ndim:
        condition = np.reshape(
            condition, tuple(np.shape(condition)) + (1,) * (expr_ndim - cond_ndim)
        )
    return np.where(condition, then_value, else_value)


# Constants.


def _dtype_or_floatx(dtype: DType) -> np.dtype:
    return np.dtype(floatx() if dtype is None else dtype)


def constant(value: Any, dtype: DType = None, shape: Sequence[int] | None = None) -> np.ndarray:
    """A constant array, broadcast to ``shape`` when given."""
    array = np.array(value, dtype=_dtype_or_floatx(dtype))
    if shape is None:
        return array
    dims = tuple(int(d) for d in shape)
    if array.size == math.prod(dims) and array.ndim > 0:
        return array.reshape(dims)
    return np.broadcast_to(array, dims).copy()


def zeros(shape: Sequence[int], dtype: DType = None) -> np.ndarray:
    """An array of zeros."""
    return np.zeros(tuple(shape), dtype=_dtype_or_floatx(dtype))


def ones(shape: Sequence[int], dtype: DType = None) -> np.ndarray:
    """An array of ones."""
    return np.ones(tuple(shape), dtype=_dtype_or_floatx(dtype))


def eye(size: int, dtype: DType = None) -> np.ndarray:
    """An identity matrix."""
    return np.eye(size, dtype=_dtype_or_floatx(dtype))


def zeros_like(x: Tensor, dtype: DType = None) -> Tensor:
    """Zeros with the shape (and by default the dtype) of ``x``."""
    return np.zeros_like(x, dtype=dtype)


def ones_like(x: Tensor, dtype: DType = None) -> Tensor:
    """Ones with the shape (and by default the dtype) of ``x``."""
    return np.ones_like(x, dtype=dtype)
