"""RepeatVector: ``(N, F)`` to ``(N, n, F)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received
from layerserve.layers import shapes
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec


class RepeatVector(Layer):
    """Repeats each input vector ``n`` times along a new axis 1."""

    def __init__(self, n: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ConfigError("Expected `n` to be a positive integer. " + received("n", n))
        self.n = int(n)
        self.input_spec = InputSpec(ndim=2)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        return np.repeat(np.expand_dims(inputs, 1), self.n, axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return shapes.repeat_vector_output_shape(input_shape, self.n)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n}
