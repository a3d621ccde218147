"""Shape arithmetic shared by the NumPy layers and the ONNX exporter.

Shapes are tuples that include the batch axis; unknown sizes are ``None``. Every
function raises ``ShapeError`` with the Keras wording when a shape cannot work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from layerserve.errors import ShapeError
from layerserve.layers.tensor import Shape


def _fmt(shape: Shape) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def dense_output_shape(input_shape: Shape, units: int) -> Shape:
    if len(input_shape) < 2:
        raise ShapeError(
            f"Dense expects an input of rank >= 2. Received: input_shape={_fmt(input_shape)}"
        )
    if input_shape[-1] is None:
        raise ShapeError(
            "The last dimension of the input to Dense should be defined. Found `None`. "
            f"Received: input_shape={_fmt(input_shape)}"
        )
    return tuple(input_shape[:-1]) + (units,)


def flatten_output_shape(input_shape: Shape, any_rank: bool = False) -> Shape:
    """Flatten's output shape. Keras 2.2 needs every non-batch size known; tf.keras and
    Keras 3 (``any_rank``) flatten unknown sizes to one unknown size, and a rank-1
    input ``(batch,)`` to ``(batch, 1)``."""
    rest = input_shape[1:]
    if any_rank and any(d is None for d in rest):
        return (input_shape[0], None)
    if any(d is None for d in rest):
        raise ShapeError(
            f'The shape of the input to "Flatten" is not fully defined (got {_fmt(rest)}). '
            'Make sure to pass a complete "input_shape" or "batch_input_shape" argument '
            "to the first layer in your model."
        )
    return (input_shape[0], math.prod(rest))


def channels_last_permutation(rank: int) -> tuple[int, ...]:
    """Axis order that moves axis 1 (channels) to the end: ``(0, 2, ..., rank-1, 1)``."""
    return (0, *range(2, rank), 1)


def resolve_reshape_target(input_shape: Shape, target_shape: tuple[int, ...]) -> Shape:
    """Output shape of Reshape, with any -1 resolved when the input is fully known."""
    batch, rest = input_shape[0], input_shape[1:]
    target = tuple(int(d) for d in target_shape)
    if any(d is None for d in rest):
        return (batch, *(None if d < 0 else d for d in target))
    total = math.prod(rest)
    unknown = [i for i, d in enumerate(target) if d < 0]
    if len(unknown) > 1:
        raise ShapeError(
            "Can only specify one unknown dimension (-1) in target_shape. "
            f"Received: target_shape={target}"
        )
    known = math.prod(d for d in target if d >= 0)
    if unknown:
        if known == 0 or total % known != 0:
            raise ShapeError(
                "total size of new array must be unchanged: an input of shape "
                f"{_fmt(input_shape)} cannot be reshaped to {_fmt((batch, *target))}"
            )
        out = list(target)
        out[unknown[0]] = total // known
        return (batch, *out)
    if known != total:
        raise ShapeError(
            "total size of new array must be unchanged: an input of shape "
            f"{_fmt(input_shape)} ({total} values per sample) cannot be reshaped to "
            f"{_fmt((batch, *target))} ({known} values per sample)"
        )
    return (batch, *target)


def permute_output_shape(input_shape: Shape, dims: tuple[int, ...]) -> Shape:
    return (input_shape[0], *(input_shape[d] for d in dims))


def repeat_vector_output_shape(input_shape: Shape, n: int) -> Shape:
    return (input_shape[0], n, input_shape[1])


def dilated_kernel_size(kernel: int, dilation: int) -> int:
    return kernel + (kernel - 1) * (dilation - 1)


def conv_output_length(
    length: int | None, kernel: int, padding: str, stride: int, dilation: int = 1
) -> int | None:
    """Keras ``conv_output_length`` for padding 'valid' or 'same'."""
    if length is None:
        return None
    effective = dilated_kernel_size(kernel, dilation)
    if padding == "same":
        return -(-length // stride)
    return max(0, -(-(length - effective + 1) // stride))


def same_padding(length: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding: the odd extra cell goes after (``SAME_UPPER``)."""
    out = -(-length // stride)
    total = max((out - 1) * stride + dilated_kernel_size(kernel, dilation) - length, 0)
    return total // 2, total - total // 2


def rnn_output_shapes(
    input_shape: Shape, units: int, return_sequences: bool, return_state: bool, state_count: int = 2
) -> Shape | list[Shape]:
    batch, steps = input_shape[0], input_shape[1]
    output = (batch, steps, units) if return_sequences else (batch, units)
    if return_state:
        return [output] + [(batch, units)] * state_count
    return output


def broadcast_shapes(shapes: Sequence[Shape], what: str = "Broadcasting") -> Shape:
    """NumPy broadcasting of static shapes (trailing axes aligned); an unknown size meets
    a known one > 1 as that size."""
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    output: list[int | None] = []
    for sizes in zip(*padded, strict=True):
        known = {d for d in sizes if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError(
                f"Incompatible shapes for broadcasting ({what}): expected shapes that "
                f"broadcast. Received: shapes={[tuple(s) for s in shapes]}"
            )
        if known:
            output.append(known.pop())
        elif any(d is None for d in sizes):
            output.append(None)
        else:
            output.append(1)
    return tuple(output)
