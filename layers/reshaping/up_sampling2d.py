"""UpSampling2D: nearest (repeat) or bilinear upsampling of images by integer factors.

Bilinear sample positions depend on the Keras that wrote the file: multi-backend Keras
2.2.3-2.3.x calls TF1's ``resize_bilinear`` without half-pixel centres (``src = dst/f``),
tf.keras 2.4+ and Keras 3 call ``tf.image.resize`` with half-pixel centres
(``src = (dst + 0.5)/f - 0.5``, clamped to the image). Multi-backend Keras 2.2.0-2.2.2
has nearest only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, received
from layerserve.layers.reshaping.base_up_sampling import BaseUpSampling
from layerserve.layers.reshaping.reshaping_shapes import spatial_axes
from layerserve.layers.reshaping.spatial_arguments import legacy_data_format
from layerserve.serialization import is_tf_keras_file

INTERPOLATIONS = ("nearest", "bilinear")
# Accepted by tf.keras or Keras 3, but without an exact ONNX form (nor exact for integer
# upsampling factors: TF's "area" mixes neighbours by ~5e-5): refused, never approximated.
NOT_EXACT = ("area", "bicubic", "gaussian", "lanczos3", "lanczos5", "mitchellcubic")
HALF_PIXEL, ASYMMETRIC = "half_pixel", "asymmetric"


def linear_axis(x: np.ndarray, axis: int, factor: int, coordinates: str) -> np.ndarray:
    """Linear interpolation along ``axis`` to ``factor`` times its length, as TF does:
    ``src = (dst + 0.5) * scale - 0.5`` (half_pixel) or ``dst * scale`` (asymmetric) with
    ``scale = in / out``; the two neighbours are clamped to the axis."""
    length = x.shape[axis]
    scale = np.float32(length / (length * factor))
    dst = np.arange(length * factor, dtype=np.float32)
    src = (
        (dst + np.float32(0.5)) * scale - np.float32(0.5)
        if coordinates == HALF_PIXEL
        else dst * scale
    )
    lower = np.floor(src)
    lerp = (src - lower).astype(np.float32)
    low = np.clip(lower.astype(np.int64), 0, length - 1)
    high = np.clip(lower.astype(np.int64) + 1, 0, length - 1)
    a, b = np.take(x, low, axis=axis), np.take(x, high, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    return a + (b - a) * lerp.reshape(shape)


def bilinear_upsample(
    x: np.ndarray, size: tuple[int, int], data_format: str, coordinates: str
) -> np.ndarray:
    """Bilinear upsampling in float32: width first, then height (TF's order)."""
    rows, cols = spatial_axes(x.ndim, data_format)
    out = x.astype(np.float32)
    out = linear_axis(out, cols, size[1], coordinates)
    return linear_axis(out, rows, size[0], coordinates)


class UpSampling2D(BaseUpSampling):
    """Upsampling layer for 2D inputs: rows and columns by ``size[0]`` and ``size[1]``.

    Args:
        size: positive int (both axes) or ``(rows_factor, cols_factor)``.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` is the global
            ``image_data_format``.
        interpolation: ``"nearest"`` (each pixel repeated) or ``"bilinear"`` (sample
            positions by Keras version, see the module docstring). ``area``, ``bicubic``,
            ``gaussian``, ``lanczos3``, ``lanczos5`` and ``mitchellcubic`` raise
            ``NotSupportedError``: they have no exact ONNX form.
        dim_ordering: Keras 2.2's legacy name of ``data_format`` (``"tf"``, ``"th"``,
            ``"default"``).

    Input shape:
        4D tensor ``(batch, rows, cols, channels)`` (channels_last) or
        ``(batch, channels, rows, cols)`` (channels_first).

    Output shape:
        The same with ``rows * size[0]`` rows and ``cols * size[1]`` columns. Bilinear
        output is float32 for integer inputs (as ``tf.image.resize``).
    """

    rank = 2

    def __init__(
        self,
        size: Any = (2, 2),
        data_format: str | None = None,
        interpolation: str = "nearest",
        dim_ordering: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(size, legacy_data_format(data_format, dim_ordering), **kwargs)
        self.interpolation = self._check_interpolation(interpolation)

    def _check_interpolation(self, interpolation: Any) -> str:
        value = interpolation.lower() if isinstance(interpolation, str) else interpolation
        if value in NOT_EXACT:
            raise NotSupportedError(
                f"Layer {self.name!r} (UpSampling2D) uses interpolation={value!r}, which has "
                "no exact ONNX form; layerserve refuses it rather than return approximate "
                "numbers (supported: 'nearest', 'bilinear'). "
                + received("interpolation", interpolation)
            )
        if value not in INTERPOLATIONS:
            raise ConfigError(
                f"Expected `interpolation` to be one of {INTERPOLATIONS}. "
                + received("interpolation", interpolation)
            )
        if value != "nearest" and self.keras_version < (2, 2, 3):
            raise ConfigError(
                "UpSampling2D in Keras 2.2.0-2.2.2 has no `interpolation` argument (nearest "
                "only). " + received("interpolation", interpolation)
            )
        if value == "bilinear" and is_tf_keras_file() and self.keras_version < (2, 4, 0):
            raise NotSupportedError(
                f"Layer {self.name!r} (UpSampling2D, bilinear) comes from a file of tf.keras "
                "bundled with TensorFlow 1.13-2.3 (Keras version '2.x-tf'), whose bilinear "
                "sample positions changed between TensorFlow releases; the file does not "
                "say which it used. Re-save the model with TensorFlow 2.4 or later, or "
                "Keras 3. " + received("interpolation", interpolation)
            )
        return value

    @property
    def coordinates(self) -> str:
        """Bilinear sample positions: ``asymmetric`` (TF1 ``resize_bilinear``) for
        multi-backend Keras 2.2.3-2.3.x files, ``half_pixel`` from tf.keras 2.4 on."""
        return HALF_PIXEL if self.keras_version >= (2, 4, 0) else ASYMMETRIC

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        if self.interpolation == "nearest":
            return super().call(inputs)
        out = bilinear_upsample(inputs, self.size, self.data_format, self.coordinates)
        return out.astype(self.output_dtype(str(inputs.dtype)))

    def output_dtype(self, input_dtype: str) -> str:
        if self.interpolation == "nearest":
            return super().output_dtype(input_dtype)
        if self.keras_version < (3, 0, 0):
            return "float32"  # tf.image.resize's bilinear answer, whatever the input dtype
        if np.dtype(input_dtype).kind == "f":
            return super().output_dtype(input_dtype)
        # Keras 3 rounds back to the input's dtype
        raise NotSupportedError(
            f"Layer {self.name!r} (UpSampling2D): Keras 3 rounds bilinear results back to "
            f"the integer input dtype {input_dtype}, and whether a .5 tie rounds up or "
            "down depends on its backend's float arithmetic. Expected a float input: cast "
            "the images to float first. " + received("dtype", input_dtype)
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "interpolation": self.interpolation}
