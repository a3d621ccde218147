"""Shapes and layout (``K.shape``, ``K.reshape``, ``K.concatenate``, ...)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from layerserve.backend._common import Tensor
from layerserve.errors import ShapeError, received


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
