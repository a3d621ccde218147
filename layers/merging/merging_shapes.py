"""Shape, axis and mask-shape rules of the merging layers, written once for the layers
and the ONNX converter (Keras ``base_merge.py``, ``concatenate.py``, ``dot.py``).

Error messages keep Keras's wording; shapes include the batch axis unless named
``...non_batch``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from layerserve.errors import ShapeError
from layerserve.layers.shapes import broadcast_shapes

Shape = tuple[int | None, ...]

MASK_AND, MASK_OR, MASK_DROPPED = "and", "or", "dropped"


def mask_rule(version: tuple[int, int, int]) -> str:
    """How the masks of the inputs combine into the output mask.

    Keras 2 ANDs the masks it has. Keras 3.0-3.3 drop them: the base layer looked for a
    mask on the list of inputs itself, found none, and so never asked ``compute_mask``
    (checked by running Keras 3.3.3). Keras 3.4 (commit 603db8003c) ORs them and also
    uses them in the values of Maximum, Minimum and Multiply.
    """
    if version >= (3, 4, 0):
        return MASK_OR
    if version >= (3, 0, 0):
        return MASK_DROPPED
    return MASK_AND


def min_inputs(version: tuple[int, int, int], concatenate: bool = False) -> int:
    """Keras accepts a single input from 2.9 (merges) and 2.4 (Concatenate); before,
    at least two."""
    return 1 if version >= ((2, 4, 0) if concatenate else (2, 9, 0)) else 2


def dot_norm_floor(version: tuple[int, int, int]) -> float:
    """``Dot(normalize=True)`` divides by ``max(||x||, floor)``. Keras 2's
    ``l2_normalize`` floors the squared norm at 1e-12; Keras 3.0.0-3.0.4 floor the squared
    norm at epsilon=1e-7; from 3.0.5 ``ops.normalize`` floors the norm at 1e-7."""
    if version >= (3, 0, 5):
        return 1e-7
    if version >= (3, 0, 0):
        return math.sqrt(1e-7)
    return 1e-6


def input_shapes(input_shape: object, what: str = "A merge layer") -> list[Shape]:
    """The shapes of a list of inputs; a single shape is refused as Keras refuses it."""
    if (
        not isinstance(input_shape, (list, tuple))
        or not input_shape
        or not all(isinstance(s, (list, tuple)) for s in input_shape)
    ):
        raise ShapeError(
            f"{what} should be called on a list of inputs. "
            f"Received: input_shape={input_shape} (not a list of shapes)"
        )
    return [tuple(s) for s in input_shape]


def check_count(
    shapes: Sequence[Shape], least: int, exactly: int | None = None, what: str = "A merge layer"
) -> None:
    if exactly is not None and len(shapes) != exactly:
        raise ShapeError(
            f"{what} should be called on exactly {exactly} inputs. "
            f"Received: input_shape={list(shapes)}"
        )
    if len(shapes) < least:
        plural = "input" if least == 1 else "inputs"
        raise ShapeError(
            f"{what} should be called on a list of at least {least} {plural}. "
            f"Received {len(shapes)} inputs. Full input_shape received: {list(shapes)}"
        )


def _elementwise_pair(shape1: Shape, shape2: Shape) -> Shape:
    """Keras ``_compute_elemwise_op_output_shape``: trailing axes aligned (the same as
    inserting size-1 axes after the batch axis), unknown sizes stay unknown."""
    if len(shape1) < len(shape2):
        return _elementwise_pair(shape2, shape1)
    if not shape2:
        return shape1
    output = list(shape1[: -len(shape2)])
    for i, j in zip(shape1[-len(shape2) :], shape2, strict=True):
        if i is None or j is None:
            output.append(None)
        elif i == 1:
            output.append(j)
        elif j == 1 or i == j:
            output.append(i)
        else:
            raise ShapeError(
                f"Inputs have incompatible shapes. Received shapes {shape1} and {shape2}"
            )
    return tuple(output)


def _batch_size(shapes: Sequence[Shape]) -> int | None:
    sizes = {s[0] for s in shapes if s} - {None}
    if len(sizes) > 1:
        raise ShapeError(
            "Cannot merge tensors with different batch sizes. "
            f"Received tensors with shapes {list(shapes)}"
        )
    return sizes.pop() if sizes else None


def elementwise_output_shape(shapes: Sequence[Shape]) -> Shape:
    """Add, Subtract, Multiply, Average, Maximum, Minimum."""
    batch = _batch_size(shapes)
    output = tuple(shapes[0][1:])
    for shape in shapes[1:]:
        output = _elementwise_pair(output, tuple(shape[1:]))
    return (batch, *output)


def expanded_shape(shape: Shape, rank: int) -> Shape:
    """``shape`` with size-1 axes inserted at axis 1 until it has ``rank`` axes."""
    return (shape[0], *([1] * (rank - len(shape))), *shape[1:])


def concatenate_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(
            f"Concatenate axis {axis} is out of bounds for inputs of rank {rank}. "
            f"Expected -{rank} <= axis < {rank}."
        )
    return axis % rank


def concatenate_output_shape(shapes: Sequence[Shape], axis: int) -> Shape:
    """Keras's check (equal ranks, equal known sizes off the axis) and output shape."""
    message = (
        "A `Concatenate` layer requires inputs with matching shapes except for the "
        f"concatenation axis. Received: input_shape={list(shapes)}"
    )
    if len({len(s) for s in shapes}) != 1:
        raise ShapeError(message)
    axis = concatenate_axis(axis, len(shapes[0]))
    for index in range(len(shapes[0])):
        known = {s[index] for s in shapes if s[index] is not None}
        if index != axis and len(known) > 1:
            raise ShapeError(message)
    output = list(shapes[0])
    for shape in shapes[1:]:
        if output[axis] is None or shape[axis] is None:
            output[axis] = None
            break
        output[axis] += shape[axis]
    return tuple(output)


def dot_axes(axes: int | Sequence[int], shape1: Shape, shape2: Shape) -> tuple[int, int]:
    """Positive contraction axes, checked as Keras's ``Dot.build`` and ``batch_dot`` do."""
    if len(shape1) < 2 or len(shape2) < 2:
        raise ShapeError(
            "Cannot do batch_dot on inputs with rank < 2. "
            f"Received inputs with shapes {shape1} and {shape2}."
        )
    pair = (axes, axes) if isinstance(axes, int) else tuple(axes)
    resolved = []
    for axis, shape in zip(pair, (shape1, shape2), strict=True):
        if not -len(shape) <= axis < len(shape):
            raise ShapeError(
                f"Dot axis {axis} is out of bounds for an input of shape {shape}. "
                f"Received: axes={axes}"
            )
        resolved.append(axis % len(shape))
    a1, a2 = resolved
    if 0 in resolved:
        raise ShapeError(
            "Cannot perform batch_dot over axis 0. If your inputs are not batched, add a "
            "dummy batch dimension to your inputs using keras.ops.expand_dims(x, 0). "
            f"Received: axes={axes}"
        )
    if shape1[a1] != shape2[a2]:
        raise ShapeError(
            f"Incompatible input shapes: axis values {shape1[a1]} (at axis {a1}) != "
            f"{shape2[a2]} (at axis {a2}). Full input shapes: {shape1}, {shape2}"
        )
    return a1, a2


def dot_output_shape(shape1: Shape, shape2: Shape, axes: tuple[int, int]) -> Shape:
    """``x``'s axes without its contraction axis, then ``y``'s without batch and
    contraction axes; a lone batch axis becomes ``(N, 1)``."""
    first = [d for i, d in enumerate(shape1) if i != axes[0]]
    second = [d for i, d in enumerate(shape2) if i not in (0, axes[1])]
    output = first + second
    if len(output) == 1:
        output.append(1)
    return tuple(output)


def same_shape(shapes: Sequence[Shape], what: str) -> Shape:
    """Keras 2 stacks masks (or concatenates them off one axis): ranks and known sizes
    must agree, or the model cannot be built."""
    if len({len(s) for s in shapes}) != 1:
        raise ShapeError(f"{what} have different ranks. Received shapes: {list(shapes)}")
    output: list[int | None] = []
    for sizes in zip(*shapes, strict=True):
        known = {d for d in sizes if d is not None}
        if len(known) > 1:
            raise ShapeError(f"{what} have incompatible shapes. Received shapes: {list(shapes)}")
        output.append(known.pop() if known else None)
    return tuple(output)


def concatenate_mask_piece(input_shape: Shape, mask_shape: Shape | None, rule: str) -> Shape:
    """The shape each input contributes to the concatenated mask: its input's shape when
    unmasked, the mask with a last axis of 1 (Keras 2) or broadcast to the input
    (Keras 3) when the mask has fewer axes than the input, else the mask itself."""
    if mask_shape is None:
        return input_shape
    if len(mask_shape) < len(input_shape):
        expanded = (*mask_shape, 1)
        return broadcast_shapes([expanded, input_shape]) if rule == MASK_OR else expanded
    return mask_shape


def concatenate_mask_shape(
    input_shapes: Sequence[Shape], mask_shapes: Sequence[Shape | None], axis: int, rule: str
) -> Shape:
    pieces = [
        concatenate_mask_piece(s, m, rule) for s, m in zip(input_shapes, mask_shapes, strict=True)
    ]
    if len({len(p) for p in pieces}) != 1:
        raise ShapeError(f"The masks of a Concatenate layer have different ranks: {pieces}")
    position = concatenate_axis(axis, len(pieces[0]))
    rest = same_shape(
        [p[:position] + p[position + 1 :] for p in pieces], "The masks of a Concatenate layer"
    )
    sizes = [p[position] for p in pieces]
    total = None if None in sizes else sum(sizes)
    return (*rest[:position], total, *rest[position:])[:-1]
