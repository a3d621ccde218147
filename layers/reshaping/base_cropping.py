"""The bookkeeping shared by Cropping1D, Cropping2D and Cropping3D."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve._config import normalize_data_format
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.reshaping.reshaping_shapes import cropped_shape, spatial_axes
from layerserve.layers.reshaping.spatial_arguments import normalize_pairs


class BaseCropping(Layer):
    """Removes ``(before, after)`` entries from each of the ``rank`` spatial axes."""

    rank = 0

    def __init__(self, cropping: Any, data_format: str | None, /, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cropping = normalize_pairs(cropping, self.rank, "cropping")
        self.data_format = normalize_data_format(data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        shape = self.compute_output_shape(tuple(inputs.shape))  # raises on an empty crop
        index = [slice(None)] * inputs.ndim
        axes = spatial_axes(inputs.ndim, self.data_format)
        for axis, (before, _) in zip(axes, self.cropping, strict=True):
            index[axis] = slice(before, before + shape[axis])
        return inputs[tuple(index)]

    def returns_its_input(self, input_shape: tuple) -> bool:
        return all(before == after == 0 for before, after in self.cropping)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return cropped_shape(
            tuple(input_shape), self.cropping, self.data_format, type(self).__name__
        )

    def get_config(self) -> dict[str, Any]:
        cropping = [list(pair) for pair in self.cropping]
        if self.rank == 1:  # Keras's Cropping1D has no data_format: always channels_last
            return {**super().get_config(), "cropping": cropping[0]}
        return {**super().get_config(), "cropping": cropping, "data_format": self.data_format}
