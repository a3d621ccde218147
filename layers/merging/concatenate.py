"""Concatenate: joins a list of inputs along one axis."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received
from layerserve.layers.merging import merging_masks
from layerserve.layers.merging import merging_shapes as ms
from layerserve.layers.merging.base_merge import Merge


class Concatenate(Merge):
    """Concatenates a list of inputs along ``axis``.

    Args:
        axis: the axis to concatenate along (negative counts from the end; 0 is the
            batch axis).
        **kwargs: standard layer keyword arguments.

    Input shape:
        A list of tensors of one rank whose sizes agree except along ``axis``.

    Output shape:
        The inputs' shape with the sizes along ``axis`` summed.
    """

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ConfigError("Expected `axis` to be an integer. " + received("axis", axis))
        self.axis = int(axis)

    @property
    def min_inputs(self) -> int:
        return ms.min_inputs(self.keras_version, concatenate=True)

    def _what(self) -> str:
        return "A `Concatenate` layer"

    def compute_output_shape(self, input_shape: Any) -> ms.Shape:
        return ms.concatenate_output_shape(self._input_shapes(input_shape), self.axis)

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> np.ndarray:
        return np.concatenate(self._arrays(inputs), axis=self.axis)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if mask is None:
            return None
        masks = merging_masks.mask_list(inputs, mask)
        return merging_masks.concatenate_mask(inputs, masks, self.axis, self.mask_rule)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}
