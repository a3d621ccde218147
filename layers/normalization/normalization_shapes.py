"""The axis rules of the normalization layers, written once.

Used by the layers (``build``, ``call``, ``compute_output_shape``) and by their ONNX
converters. Shapes include the batch axis; unknown sizes are None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from layerserve.errors import ConfigError, ShapeError, received
from layerserve.layers.tensor import Shape


def validate_axis(axis: Any, layer: str, allow_list: bool = True) -> int | list[int]:
    """``axis`` as Keras takes it: an int, or (where allowed) a non-empty list of ints."""
    if _is_int(axis):
        return int(axis)
    if allow_list and isinstance(axis, (list, tuple)) and axis and all(_is_int(a) for a in axis):
        values = [int(a) for a in axis]
        if len(set(values)) != len(values):
            raise ConfigError(f"{layer}: expected distinct axes. " + received("axis", axis))
        return values
    expected = "an int or a non-empty list of ints" if allow_list else "an int"
    raise ConfigError(f"{layer}: expected `axis` to be {expected}. " + received("axis", axis))


def resolve_axes(axis: int | Sequence[int], rank: int, layer: str) -> tuple[int, ...]:
    """Positive indices of ``axis`` for an input of ``rank``, in the order given."""
    values = [axis] if isinstance(axis, int) else list(axis)
    for value in values:
        if not -rank <= value < rank:
            raise ShapeError(
                f"{layer}: axis {value} is out of bounds for an input of rank {rank}. "
                + received("axis", axis)
            )
    resolved = tuple(v % rank for v in values)
    if len(set(resolved)) != len(resolved):
        raise ShapeError(
            f"{layer}: axis {axis} names the same axis twice for an input of rank {rank}. "
            + received("axis", axis)
        )
    return resolved


def weight_axes(axis: int | Sequence[int], rank: int, layer: str, keras3: bool) -> tuple[int, ...]:
    """The axes a weight spans, in its stored order: Keras 3 sorts the ``axis`` list as
    given (so ``[-1, 1]`` stays ``[-1, 1]``), tf.keras keeps the order given."""
    values = [axis] if isinstance(axis, int) else list(axis)
    return resolve_axes(sorted(values) if keras3 else values, rank, layer)


def normalization_output_shape(input_shape: Shape, axis: int | Sequence[int], layer: str) -> Shape:
    """Every normalization layer keeps the shape; the axes must exist."""
    resolve_axes(axis, len(input_shape), layer)
    return tuple(input_shape)


def defined_sizes(input_shape: Shape, axes: Sequence[int], layer: str) -> tuple[int, ...]:
    """The sizes of ``axes``, which weights span and so must be known."""
    sizes = tuple(input_shape[a] for a in axes)
    if any(size is None for size in sizes):
        raise ShapeError(
            f"{layer}: the normalized axes {tuple(axes)} of the input must have a defined "
            f"size. Received: input_shape={tuple(input_shape)}"
        )
    return sizes  # type: ignore[return-value]


def broadcast_shape(input_shape: Shape, axes: Sequence[int]) -> tuple[int, ...]:
    """``input_shape`` with 1 on every axis not in ``axes`` (the batch axis included)."""
    return tuple(
        int(size) if index in axes else 1  # type: ignore[arg-type]
        for index, size in enumerate(input_shape)
    )


def group_count(groups: int, channels: int, layer: str) -> int:
    """``groups`` resolved (-1: one group per channel) and checked against ``channels``."""
    resolved = channels if groups == -1 else groups
    if channels < resolved:
        raise ShapeError(
            f"{layer}: the number of groups ({resolved}) cannot be more than the number of "
            f"channels ({channels}). " + received("groups", groups)
        )
    if channels % resolved:
        raise ShapeError(
            f"{layer}: the number of channels ({channels}) must be a multiple of the number "
            f"of groups ({resolved}). " + received("groups", groups)
        )
    return resolved


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
