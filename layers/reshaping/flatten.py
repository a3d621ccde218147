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

    Input shape:
        Keras 2.2: rank 3 or more, every non-batch size known. tf.keras and Keras 3: any
        rank from 1 (``(batch,)`` becomes ``(batch, 1)``), sizes unknown or not.

    Output shape:
        ``(batch, product of the other sizes)``; None where one of them is unknown.
    """

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format)
        # Keras 2.2 refuses a flat input; tf.keras and Keras 3 return it (rank 1: a column)
        self.input_spec = InputSpec(min_ndim=1 if self._any_rank else 3)

    @property
    def _any_rank(self) -> bool:
        return self.keras_version >= (2, 4, 0)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        if self.data_format == "channels_first":
            inputs = np.transpose(inputs, shapes.channels_last_permutation(inputs.ndim))
        # The size is spelled out: -1 cannot be resolved for an empty batch.
        return np.reshape(inputs, (inputs.shape[0], math.prod(inputs.shape[1:])))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return shapes.flatten_output_shape(input_shape, self._any_rank)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}
