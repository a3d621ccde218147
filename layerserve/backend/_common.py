"""What the backend functions share: type aliases and dtype tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from layerserve._config import floatx

Tensor = Any
Axis = int | Sequence[int] | None
DType = Any


def axis_argument(axis: Axis) -> int | tuple[int, ...] | None:
    """``axis`` as NumPy takes it (a tuple for a list of axes)."""
    if axis is None or isinstance(axis, (int, np.integer)):
        return axis
    return tuple(axis)


def is_bool(x: Tensor) -> bool:
    return np.dtype(getattr(x, "dtype", float)) == np.bool_


def is_integer(x: Tensor) -> bool:
    return np.issubdtype(np.dtype(getattr(x, "dtype", float)), np.integer)


def integer_dtype(x: Tensor) -> np.dtype | None:
    """An integer tensor's own dtype, for a reduction to keep (NumPy would widen it)."""
    return np.dtype(x.dtype) if is_integer(x) else None


def dtype_or_floatx(dtype: DType) -> np.dtype:
    return np.dtype(floatx() if dtype is None else dtype)


def cast(x: Tensor, dtype: DType) -> Tensor:
    """``x`` converted to ``dtype``."""
    target = np.dtype(dtype)
    if isinstance(x, (bool, int, float, complex)):
        return np.asarray(x, dtype=target)
    astype = getattr(np, "astype", None)
    return astype(x, target) if astype is not None else x.astype(target)


def float_if_bool(x: Tensor) -> Tensor:
    return cast(x, floatx()) if is_bool(x) else x
