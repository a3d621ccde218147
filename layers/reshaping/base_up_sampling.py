"""The bookkeeping shared by UpSampling1D, UpSampling2D and UpSampling3D."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve._config import normalize_data_format
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.reshaping.reshaping_shapes import spatial_axes, upsampled_shape
from layerserve.layers.reshaping.spatial_arguments import normalize_factors


def repeat_spatial(x: np.ndarray, size: tuple[int, ...], data_format: str) -> np.ndarray:
    """Nearest upsampling by integer factors: each entry repeated ``size[i]`` times
    along spatial axis ``i``."""
    for axis, factor in zip(spatial_axes(x.ndim, data_format), size, strict=True):
        x = np.repeat(x, factor, axis=axis)
    return x


class BaseUpSampling(Layer):
    """Upsamples the ``rank`` spatial axes by the integer factors ``size``."""

    rank = 0

    def __init__(self, size: Any, data_format: str | None, /, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = normalize_factors(size, self.rank, "size")
        self.data_format = normalize_data_format(data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        return repeat_spatial(inputs, self.size, self.data_format)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return upsampled_shape(tuple(input_shape), self.size, self.data_format)

    def get_config(self) -> dict[str, Any]:
        if self.rank == 1:  # Keras's UpSampling1D: an int and no data_format
            return {**super().get_config(), "size": self.size[0]}
        return {**super().get_config(), "size": list(self.size), "data_format": self.data_format}
