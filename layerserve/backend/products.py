"""Products and selection (``K.dot``, ``K.batch_dot``, ``K.switch``)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from layerserve.backend._common import Tensor
from layerserve.errors import ConfigError, ShapeError, received


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
