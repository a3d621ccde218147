"""The N-d shape rules of every convolution layer, written once.

Used by the layers (``compute_output_shape`` and ``call``) and by the ONNX converter
(explicit pads and crops). Shapes include the batch axis; unknown sizes are None.
"""

from __future__ import annotations

from layerserve.errors import ShapeError
from layerserve.layers import shapes
from layerserve.layers.tensor import Shape


def spatial_dims(shape: Shape, data_format: str) -> tuple[int | None, ...]:
    return tuple(shape[2:]) if data_format == "channels_first" else tuple(shape[1:-1])


def channel_dim(shape: Shape, data_format: str) -> int | None:
    return shape[1] if data_format == "channels_first" else shape[-1]


def with_channels(
    batch: int | None, spatial: tuple[int | None, ...], channels: int | None, data_format: str
) -> Shape:
    if data_format == "channels_first":
        return (batch, channels, *spatial)
    return (batch, *spatial, channels)


def conv_output_length(
    length: int | None, kernel: int, padding: str, stride: int, dilation: int
) -> int | None:
    """TF's rule: 'same' and 'causal' give ceil(n/s), 'valid' floor((n-keff)/s)+1."""
    return shapes.conv_output_length(
        length, kernel, "same" if padding == "causal" else padding, stride, dilation
    )


def conv_pads(
    length: int | None, kernel: int, padding: str, stride: int, dilation: int
) -> tuple[int, int] | None:
    """The zeros added before and after one spatial axis; None when they depend on an
    unknown length (padding 'same' with stride > 1)."""
    if padding == "valid":
        return (0, 0)
    effective = shapes.dilated_kernel_size(kernel, dilation)
    if padding == "causal":
        return (effective - 1, 0)
    if length is None:
        if stride != 1:
            return None
        # With stride 1 the SAME total is keff - 1 whatever the length.
        return ((effective - 1) // 2, effective - 1 - (effective - 1) // 2)
    return shapes.same_padding(length, kernel, stride, dilation)


def _fmt(shape: tuple) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def _check_positive(layer: str, out: tuple, input_shape: Shape, details: str) -> None:
    if any(length is not None and length <= 0 for length in out):
        raise ShapeError(
            f"{layer}: computed output size would be {_fmt(out)}, the input is smaller than "
            f"the (dilated) kernel. Received: input_shape={_fmt(tuple(input_shape))}, " + details
        )


def conv_output_shape(
    layer: str,
    input_shape: Shape,
    channels_out: int | None,
    kernel_size: tuple[int, ...],
    strides: tuple[int, ...],
    padding: str,
    dilation_rate: tuple[int, ...],
    data_format: str,
) -> Shape:
    """Output shape of Conv, DepthwiseConv and SeparableConv (``channels_out`` filters)."""
    spatial = spatial_dims(input_shape, data_format)
    out = tuple(
        conv_output_length(n, k, padding, s, d)
        for n, k, s, d in zip(spatial, kernel_size, strides, dilation_rate, strict=True)
    )
    _check_positive(
        layer,
        out,
        input_shape,
        f"kernel_size={tuple(kernel_size)}, dilation_rate={tuple(dilation_rate)}, "
        f"padding={padding!r}",
    )
    return with_channels(input_shape[0], out, channels_out, data_format)


def transpose_output_length(
    length: int | None,
    kernel: int,
    padding: str,
    output_padding: int | None,
    stride: int,
    dilation: int,
) -> int | None:
    """Keras's ``deconv_output_length`` (the same in Keras 3, tf.keras and Keras 2.2)."""
    if length is None:
        return None
    effective = shapes.dilated_kernel_size(kernel, dilation)
    if output_padding is None:
        if padding == "valid":
            return (length - 1) * stride + max(effective, stride)
        return length * stride
    base = effective if padding == "valid" else effective % 2
    return (length - 1) * stride + base + output_padding


def transpose_crops(
    kernel: int, padding: str, output_padding: int | None, stride: int, dilation: int
) -> tuple[int, int, int]:
    """``(crop_before, crop_after, extend_after)`` turning the full transposed output
    ``(n-1)*s + keff`` into Keras's size: with ``T = full - O``, crop floor(T/2) first and
    the rest last, or append -T bias-only positions at the end. T does not depend on n."""
    effective = shapes.dilated_kernel_size(kernel, dilation)
    if output_padding is None:
        total = effective - (max(effective, stride) if padding == "valid" else stride)
    elif padding == "valid":
        total = -output_padding
    else:
        total = effective - effective % 2 - output_padding
    if total >= 0:
        return total // 2, total - total // 2, 0
    return 0, 0, -total


def conv_transpose_output_shape(
    layer: str,
    input_shape: Shape,
    filters: int,
    kernel_size: tuple[int, ...],
    strides: tuple[int, ...],
    padding: str,
    output_padding: tuple[int, ...] | None,
    dilation_rate: tuple[int, ...],
    data_format: str,
) -> Shape:
    spatial = spatial_dims(input_shape, data_format)
    pads = output_padding or (None,) * len(spatial)
    out = tuple(
        transpose_output_length(n, k, padding, p, s, d)
        for n, k, p, s, d in zip(spatial, kernel_size, pads, strides, dilation_rate, strict=True)
    )
    if any(n is not None and n <= 0 for n in spatial):
        raise ShapeError(
            f"{layer}: every spatial input dimension must be at least 1. "
            f"Received: input_shape={_fmt(tuple(input_shape))}"
        )
    return with_channels(input_shape[0], out, filters, data_format)
