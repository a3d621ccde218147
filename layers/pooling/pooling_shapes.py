"""The shape rules of the pooling layers, written once.

Used by the layers (``compute_output_shape`` and ``call``) and by the ONNX converter
(explicit pads, reduction axes). Shapes include the batch axis; unknown sizes are None.
Keras pools use TensorFlow's rules on every backend: 'valid' gives
``floor((n - k) / s) + 1``, 'same' gives ``ceil(n / s)`` with the odd padding cell at the
end, and there is no ceil mode.
"""

from __future__ import annotations

from layerserve.errors import ShapeError
from layerserve.layers import shapes
from layerserve.layers.tensor import Shape


def spatial_axes(rank: int, data_format: str) -> tuple[int, ...]:
    """The axes pooled over in a tensor of ``rank`` dimensions (batch and channels excluded)."""
    return tuple(range(2, rank)) if data_format == "channels_first" else tuple(range(1, rank - 1))


def to_channels_first(rank: int) -> tuple[int, ...]:
    """The permutation ``(0, rank-1, 1, ..., rank-2)``: channels_last to channels_first."""
    return (0, rank - 1, *range(1, rank - 1))


def pool_pads(length: int | None, pool: int, stride: int, padding: str) -> tuple[int, int] | None:
    """Cells added before and after one spatial axis; None when they depend on an unknown
    length. A pool of 1 never pads: SAME's total ``(ceil(n/s)-1)*s + 1 - n`` is never
    positive."""
    if padding == "valid" or pool == 1:
        return (0, 0)
    if length is None:
        return None
    return shapes.same_padding(length, pool, stride)


def pool_output_shape(
    layer: str,
    input_shape: Shape,
    pool_size: tuple[int, ...],
    strides: tuple[int, ...],
    padding: str,
    data_format: str,
) -> Shape:
    """Output shape of a windowed pool; ShapeError when a 'valid' window does not fit."""
    input_shape = tuple(input_shape)
    axes = spatial_axes(len(input_shape), data_format)
    out = list(input_shape)
    for axis, pool, stride in zip(axes, pool_size, strides, strict=True):
        length = shapes.conv_output_length(input_shape[axis], pool, padding, stride)
        if length is not None and length <= 0 and padding == "valid":
            raise ShapeError(
                f"{layer}: computed output size would be zero or negative, the input is "
                f"smaller than the pool window. Received: input_shape={_fmt(input_shape)}, "
                f"pool_size={tuple(pool_size)}, strides={tuple(strides)}, padding='valid'"
            )
        out[axis] = length
    return tuple(out)


def global_pool_output_shape(input_shape: Shape, data_format: str, keepdims: bool) -> Shape:
    input_shape = tuple(input_shape)
    axes = spatial_axes(len(input_shape), data_format)
    if keepdims:
        return tuple(1 if axis in axes else d for axis, d in enumerate(input_shape))
    return tuple(d for axis, d in enumerate(input_shape) if axis not in axes)


def check_reduction_axes(input_shape: Shape, data_format: str) -> None:
    """tf.keras refuses, at build time, a global pool over an axis known to be empty."""
    input_shape = tuple(input_shape)
    for axis in spatial_axes(len(input_shape), data_format):
        if input_shape[axis] == 0:
            raise ShapeError(
                f"Incorrect input shape {_fmt(input_shape)} with dimension 0 at reduction "
                f"axis {axis}."
            )


def _fmt(shape: Shape) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"
