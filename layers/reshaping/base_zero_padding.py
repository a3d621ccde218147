"""The bookkeeping shared by ZeroPadding1D, ZeroPadding2D and ZeroPadding3D."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve._config import normalize_data_format
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.reshaping.reshaping_shapes import padded_shape, spatial_axes
from layerserve.layers.reshaping.spatial_arguments import normalize_pairs


class BaseZeroPadding(Layer):
    """Pads the ``rank`` spatial axes with zeros, ``(before, after)`` per axis."""

    rank = 0

    def __init__(self, padding: Any, data_format: str | None, /, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding = normalize_pairs(padding, self.rank, "padding")
        self.data_format = self._resolve_format(data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _resolve_format(self, data_format: str | None) -> str:
        return normalize_data_format(data_format)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        widths = [(0, 0)] * inputs.ndim
        for axis, pair in zip(
            spatial_axes(inputs.ndim, self.data_format), self.padding, strict=True
        ):
            widths[axis] = pair
        return np.pad(inputs, widths, mode="constant", constant_values=0)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return padded_shape(tuple(input_shape), self.padding, self.data_format)

    def get_config(self) -> dict[str, Any]:
        padding: Any = [list(pair) for pair in self.padding]
        return {
            **super().get_config(),
            "padding": padding[0] if self.rank == 1 else padding,
            "data_format": self.data_format,
        }
