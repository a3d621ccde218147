"""Shape rules of the padding, cropping and upsampling layers, shared by their NumPy
references and their ONNX converters.

``pairs`` are per spatial axis ``(before, after)``; ``data_format`` says where those axes
are. Unknown sizes (``None``) stay unknown.
"""

from __future__ import annotations

from layerserve.errors import ShapeError
from layerserve.layers.tensor import Shape

Pairs = tuple[tuple[int, int], ...]


def spatial_axes(ndim: int, data_format: str) -> tuple[int, ...]:
    """The spatial axes of an ``ndim`` input: ``1..ndim-2`` (channels last) or
    ``2..ndim-1`` (channels first)."""
    first = 2 if data_format == "channels_first" else 1
    return tuple(range(first, first + ndim - 2))


def padded_shape(input_shape: Shape, padding: Pairs, data_format: str) -> Shape:
    out = list(input_shape)
    for axis, (before, after) in zip(spatial_axes(len(out), data_format), padding, strict=True):
        if out[axis] is not None:
            out[axis] += before + after
    return tuple(out)


def cropped_shape(input_shape: Shape, cropping: Pairs, data_format: str, layer: str) -> Shape:
    """Raises with Keras 3's wording when a crop leaves an axis of size <= 0."""
    out = list(input_shape)
    for axis, (before, after) in zip(spatial_axes(len(out), data_format), cropping, strict=True):
        if out[axis] is None:
            continue
        out[axis] -= before + after
        if out[axis] <= 0:
            raise ShapeError(_crop_message(input_shape, cropping, layer))
    return tuple(out)


def _crop_message(input_shape: Shape, cropping: Pairs, layer: str) -> str:
    if layer == "Cropping1D":
        return (
            "`cropping` parameter of `Cropping1D` layer must be smaller than the input "
            f"length. Received: input_shape={tuple(input_shape)}, cropping={cropping[0]}"
        )
    return (
        "Values in `cropping` argument should be smaller than the corresponding spatial "
        f"dimension of the input. Received: input_shape={tuple(input_shape)}, "
        f"cropping={cropping}"
    )


def upsampled_shape(input_shape: Shape, size: tuple[int, ...], data_format: str) -> Shape:
    out = list(input_shape)
    for axis, factor in zip(spatial_axes(len(out), data_format), size, strict=True):
        if out[axis] is not None:
            out[axis] *= factor
    return tuple(out)
