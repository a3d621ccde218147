"""Image arithmetic shared by the preprocessing layers and their ONNX converters: the
spatial axes of a data format, Keras's aspect-ratio crop and pad boxes, and the naive
resize references (TensorFlow's half-pixel bilinear and nearest rules).

Images are batched, rank 4: ``(N, H, W, C)`` or ``(N, C, H, W)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import _config
from layerserve.errors import ConfigError, NotSupportedError, received
from layerserve.layers.tensor import Shape


def image_data_format(data_format: Any, keras_version: tuple[int, int, int]) -> str:
    """``None`` is the global setting in Keras 3 and channels_last in tf.keras, whose
    image preprocessing layers take no ``data_format`` (they are channels_last only)."""
    if data_format is None and keras_version < (3, 0, 0):
        return "channels_last"
    return _config.normalize_data_format(data_format)


def spatial_axes(data_format: str) -> tuple[int, int]:
    return (2, 3) if data_format == "channels_first" else (1, 2)


def image_output_shape(input_shape: Shape, height: int, width: int, data_format: str) -> Shape:
    shape = list(input_shape)
    h_axis, w_axis = spatial_axes(data_format)
    shape[h_axis], shape[w_axis] = height, width
    return tuple(shape)


def positive_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"Expected `{name}` to be a positive integer. " + received(name, value))
    return int(value)


def number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ConfigError(f"Expected `{name}` to be a number. " + received(name, value))
    return float(value)


def aspect_crop_box(height: int, width: int, target_h: int, target_w: int) -> tuple[int, ...]:
    """``(top, left, crop_h, crop_w)``: the largest centred window of the target's aspect
    ratio (Keras's ``smart_resize`` and ``crop_to_aspect_ratio``; truncated integer
    sizes and offsets, at least one pixel)."""
    crop_h = max(min(height, width * target_h // target_w), 1)
    crop_w = max(min(width, height * target_w // target_h), 1)
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def aspect_pad(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """Keras 3 ``pad_to_aspect_ratio``: the rows (or else columns) of padding added on
    *each* side; an odd difference leaves the padded size one short of the ratio."""
    pad_h = max(height, width * target_h // target_w)
    pad_w = max(width, height * target_w // target_h)
    rows, columns = (pad_h - height) // 2, (pad_w - width) // 2
    return (rows, 0) if rows > 0 else (0, columns)


def center_crop_start(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """Top-left corner of a centred crop; the odd pixel is dropped at the bottom/right."""
    return (height - target_h) // 2, (width - target_w) // 2


def crop(
    x: np.ndarray, top: int, left: int, height: int, width: int, data_format: str
) -> np.ndarray:
    h_axis, w_axis = spatial_axes(data_format)
    index = [slice(None)] * x.ndim
    index[h_axis] = slice(top, top + height)
    index[w_axis] = slice(left, left + width)
    return x[tuple(index)]


def pad_value(value: float, dtype: Any) -> np.ndarray:
    """The fill value in the image's dtype: integer images get it rounded (half to even)
    and clipped, as Keras 3 rounds and saturates the padded result back."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.asarray(np.clip(np.round(value), info.min, info.max), dtype=dtype)
    return np.asarray(value, dtype=dtype)


def pad(x: np.ndarray, rows: int, columns: int, value: float, data_format: str) -> np.ndarray:
    h_axis, w_axis = spatial_axes(data_format)
    widths = [(0, 0)] * x.ndim
    widths[h_axis], widths[w_axis] = (rows, rows), (columns, columns)
    return np.pad(x, widths, constant_values=pad_value(value, x.dtype))


def linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TensorFlow's half-pixel bilinear taps along one axis: output ``o`` reads
    ``lower + (upper - lower) * frac`` at the source ``(o + 0.5) * in/out - 0.5``, with
    out-of-range neighbours clamped to the edge (float32, as TensorFlow computes the
    coordinates)."""
    scale = np.float32(in_size) / np.float32(out_size)
    source = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(source)
    lower = np.clip(floor, 0, in_size - 1).astype(np.int64)
    upper = np.clip(np.ceil(source), 0, in_size - 1).astype(np.int64)
    return lower, upper, (source - floor).astype(np.float32)


def resize_bilinear(x: np.ndarray, height: int, width: int, data_format: str) -> np.ndarray:
    """Half-pixel bilinear resize along the width, then the height (TensorFlow's order),
    in the input's float dtype (float32 for integer inputs)."""
    x = x if x.dtype.kind == "f" else x.astype(np.float32)
    for axis, size in zip(reversed(spatial_axes(data_format)), (width, height), strict=True):
        lower, upper, frac = linear_taps(x.shape[axis], size)
        shape = [1] * x.ndim
        shape[axis] = size
        low, high = np.take(x, lower, axis=axis), np.take(x, upper, axis=axis)
        x = low + (high - low) * frac.astype(x.dtype).reshape(shape)
    return x


def nearest_indices(in_size: int, out_size: int, float32_scale: bool) -> np.ndarray:
    """Half-pixel nearest neighbour: source ``floor((o + 0.5) * in / out)``. TensorFlow
    multiplies by the float32 ratio ``in/out`` (``float32_scale``), which now and then
    lands just below an exact integer (14 -> 23: output 11 reads row 6, not 7); JAX and
    NumPy compute the exact quotient."""
    out = np.arange(out_size)
    if float32_scale:
        scale = np.float32(in_size) / np.float32(out_size)
        source = np.floor((out.astype(np.float32) + np.float32(0.5)) * scale).astype(np.int64)
    else:
        source = (2 * out + 1) * in_size // (2 * out_size)
    return np.minimum(source, in_size - 1)


def keras3_nearest_indices(layer: Any, in_size: int, out_size: int) -> np.ndarray:
    """Keras 3's nearest rule depends on its backend where the two rules disagree: refuse
    those sizes rather than pick one."""
    exact = nearest_indices(in_size, out_size, float32_scale=False)
    if not np.array_equal(exact, nearest_indices(in_size, out_size, float32_scale=True)):
        raise NotSupportedError(
            f"{type(layer).__name__} {layer.name}: nearest-neighbour resizing from {in_size} "
            f"to {out_size} pixels gives different pixels on Keras 3's TensorFlow backend "
            "(float32 scale) and its JAX/NumPy backends (exact), and the file does not say "
            "which backend the model is meant for. " + received("interpolation", "nearest")
        )
    return exact


def resize_nearest(
    x: np.ndarray, rows: np.ndarray, columns: np.ndarray, data_format: str
) -> np.ndarray:
    h_axis, w_axis = spatial_axes(data_format)
    return np.take(np.take(x, rows, axis=h_axis), columns, axis=w_axis)
