"""Constant arrays (``K.constant``, ``K.zeros``, ``K.eye``, ...)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from layerserve.backend._common import DType, Tensor, dtype_or_floatx


def constant(value: Any, dtype: DType = None, shape: Sequence[int] | None = None) -> np.ndarray:
    """A constant array, broadcast to ``shape`` when given."""
    array = np.array(value, dtype=dtype_or_floatx(dtype))
    if shape is None:
        return array
    dims = tuple(int(d) for d in shape)
    if array.size == math.prod(dims) and array.ndim > 0:
        return array.reshape(dims)
    return np.broadcast_to(array, dims).copy()


def zeros(shape: Sequence[int], dtype: DType = None) -> np.ndarray:
    """An array of zeros."""
    return np.zeros(tuple(shape), dtype=dtype_or_floatx(dtype))


def ones(shape: Sequence[int], dtype: DType = None) -> np.ndarray:
    """An array of ones."""
    return np.ones(tuple(shape), dtype=dtype_or_floatx(dtype))


def eye(size: int, dtype: DType = None) -> np.ndarray:
    """An identity matrix."""
    return np.eye(size, dtype=dtype_or_floatx(dtype))


def zeros_like(x: Tensor, dtype: DType = None) -> Tensor:
    """Zeros with the shape (and by default the dtype) of ``x``."""
    return np.zeros_like(x, dtype=dtype)


def ones_like(x: Tensor, dtype: DType = None) -> Tensor:
    """Ones with the shape (and by default the dtype) of ``x``."""
    return np.ones_like(x, dtype=dtype)
