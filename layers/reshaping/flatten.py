"""Flatten: ``(N, d1, d2, ...)`` to ``(N, d1 * d2 * ...)``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from layerserve._config import normalize_data_format
from layerserve.layers import shapes
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec


class Flatten(Layer):
    """Flattens all but the batch axis.

    Under ``channels_first`` the channel axis is moved last first, so the flat order is
    the channels_last one and a following Dense keeps valid weights across formats.
    """

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format)
        self.input_spec = InputSpec(min_ndim=3)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        if self.data_format == "channels_first":
            inputs = np.transpose(inputs, shapes.channels_last_permutation(inputs.ndim))
        # The size is spelled out: -1 cannot be resolved for an empty batch.
        return np.reshape(inputs, (inputs.shape[0], math.prod(inputs.shape[1:])))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return shapes.flatten_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}
