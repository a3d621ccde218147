"""Output masks of the merging layers, on arrays (eager) or KerasTensors (model graphs).

Keras 2 stacks the masks present and reduces with ``all`` (so they must have one
shape); Keras >= 3.4 ORs them with NumPy broadcasting and gives no mask when an input
has none; Keras 3.0-3.3 give no mask (see :func:`merging_shapes.mask_rule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from layerserve.errors import ShapeError
from layerserve.layers.merging import merging_shapes as ms
from layerserve.layers.shapes import broadcast_shapes
from layerserve.layers.tensor import KerasTensor


def _symbolic(values: Sequence[Any]) -> bool:
    return any(isinstance(v, KerasTensor) for v in values)


def _shape(value: Any) -> ms.Shape:
    return tuple(value.shape)


def mask_list(inputs: Any, mask: Any) -> list[Any]:
    """The masks as a list, one per input (Keras's checks of ``compute_mask``)."""
    if not isinstance(mask, (list, tuple)):
        raise ShapeError(f"`mask` should be a list. Received: mask={mask!r}"[:300])
    if not isinstance(inputs, (list, tuple)):
        raise ShapeError("`inputs` should be a list. Received a single input.")
    if len(mask) != len(inputs):
        raise ShapeError(
            "The lists `inputs` and `mask` should have the same length. Received: "
            f"{len(inputs)} inputs and {len(mask)} masks"
        )
    return list(mask)


def combine_masks(masks: Sequence[Any], rule: str) -> Any:
    """The output mask of the element-wise merges (Add ... Minimum)."""
    if rule == ms.MASK_DROPPED or all(m is None for m in masks):
        return None
    if rule == ms.MASK_OR:
        if any(m is None for m in masks):
            return None
        if _symbolic(masks):
            return KerasTensor(broadcast_shapes([_shape(m) for m in masks]), "bool")
        broadcast_shapes([_shape(m) for m in masks])  # Keras's error when they don't fit
        output = np.asarray(masks[0], dtype=bool)
        for mask in masks[1:]:
            output = np.logical_or(output, np.asarray(mask, dtype=bool))
        return output
    present = [m for m in masks if m is not None]
    shape = ms.same_shape([_shape(m) for m in present], "The masks of a merge layer")
    if _symbolic(present):
        return KerasTensor(shape, "bool")
    return np.all(np.stack([np.asarray(m, dtype=bool) for m in present]), axis=0)


def concatenate_mask(inputs: Sequence[Any], masks: Sequence[Any], axis: int, rule: str) -> Any:
    """Keras's Concatenate mask: per input all-True (no mask), the mask expanded on a
    last axis (Keras 2) or broadcast to the input (Keras 3), concatenated along ``axis``,
    then reduced over the last axis with ``all`` (Keras 2) or ``any`` (Keras 3)."""
    if rule == ms.MASK_DROPPED or all(m is None for m in masks):
        return None
    input_shapes = [_shape(x) for x in inputs]
    mask_shapes = [None if m is None else _shape(m) for m in masks]
    shape = ms.concatenate_mask_shape(input_shapes, mask_shapes, axis, rule)
    if _symbolic([*inputs, *masks]):
        return KerasTensor(shape, "bool")
    pieces = []
    for x_shape, mask in zip(input_shapes, masks, strict=True):
        if mask is None:
            pieces.append(np.ones(x_shape, dtype=bool))
        elif np.ndim(mask) < len(x_shape):
            expanded = np.asarray(mask, dtype=bool)[..., np.newaxis]
            if rule == ms.MASK_OR:  # Keras 3.15: logical_or with zeros_like(input)
                expanded = np.logical_or(expanded, np.zeros(x_shape, dtype=bool))
            pieces.append(expanded)
        else:
            pieces.append(np.asarray(mask, dtype=bool))
    joined = np.concatenate(pieces, axis=axis)
    return joined.any(axis=-1) if rule == ms.MASK_OR else joined.all(axis=-1)
