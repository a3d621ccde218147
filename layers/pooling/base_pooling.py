"""The windowed pools (Max/AveragePooling1D/2D/3D): bookkeeping and the NumPy reference."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from layerserve.layers import shapes
from layerserve.layers.base import Layer
from layerserve.layers.convolutional.conv_utils import normalize_tuple
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.pooling import pooling_shapes
from layerserve.layers.pooling.pooling_utils import (
    normalize_padding,
    require_float,
    resolve_data_format,
)


def pool_forward(
    x: np.ndarray,
    pool_size: tuple[int, ...],
    strides: tuple[int, ...],
    padding: str,
    mode: str,
) -> np.ndarray:
    """Channels-last ``x`` of shape ``(N, *spatial, C)``. Visits every tap of the window
    as one strided slice of the padded input. Max pads with -inf; average divides each
    window's sum by the number of real (unpadded) cells in it, as TensorFlow does."""
    axes = list(zip(x.shape[1:-1], pool_size, strides, strict=True))
    pads = [pooling_shapes.pool_pads(n, k, s, padding) for n, k, s in axes]
    out = [shapes.conv_output_length(n, k, padding, s) for n, k, s in axes]
    fill = -np.inf if mode == "max" else 0
    padded = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    real = np.pad(np.ones(x.shape[1:-1], dtype=x.dtype), pads)  # 1 where a cell is not padding
    result = None
    count = np.zeros(out, dtype=x.dtype)
    for offset in itertools.product(*(range(k) for k in pool_size)):
        window = tuple(
            slice(o, o + s * (m - 1) + 1, s) for o, s, m in zip(offset, strides, out, strict=True)
        )
        tap = padded[(slice(None), *window, slice(None))]
        if result is None:
            result = tap.copy()
        elif mode == "max":
            result = np.maximum(result, tap)
        else:
            result = result + tap
        count += real[window]
    if mode == "max":
        return result
    return result / count[np.newaxis, ..., np.newaxis]


class BasePooling(Layer):
    """Max or average pooling over ``rank`` spatial axes (see the subclasses)."""

    rank = 2
    mode = "max"

    def __init__(
        self,
        pool_size: Any,
        strides: Any = None,
        padding: str = "valid",
        data_format: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        layer = type(self).__name__
        self.pool_size = normalize_tuple(pool_size, self.rank, "pool_size")
        self.strides = normalize_tuple(
            pool_size if strides is None else strides, self.rank, "strides"
        )
        self.padding = normalize_padding(padding, layer)
        self.data_format = resolve_data_format(data_format, self.keras_version)
        self.input_spec = InputSpec(ndim=self.rank + 2)
        self.built = True

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        require_float(self, inputs.dtype)
        self.compute_output_shape(inputs.shape)  # raises when a 'valid' window cannot fit
        channels_first = self.data_format == "channels_first"
        rank = inputs.ndim
        x = (
            np.transpose(inputs, shapes.channels_last_permutation(rank))
            if channels_first
            else inputs
        )
        y = pool_forward(x, self.pool_size, self.strides, self.padding, self.mode)
        y = y.astype(inputs.dtype, copy=False)
        return np.transpose(y, pooling_shapes.to_channels_first(rank)) if channels_first else y

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return pooling_shapes.pool_output_shape(
            type(self).__name__,
            input_shape,
            self.pool_size,
            self.strides,
            self.padding,
            self.data_format,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "padding": self.padding,
            "strides": list(self.strides),
            "data_format": self.data_format,
        }
