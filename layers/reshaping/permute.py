"""Permute: reorders the non-batch axes; ``dims`` is 1-indexed."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received
from layerserve.layers import shapes
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec


class Permute(Layer):
    """``Permute((2, 1))`` swaps the first two non-batch axes."""

    def __init__(self, dims: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if (
            isinstance(dims, (str, bytes))
            or not isinstance(dims, (list, tuple))
            or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) for d in dims)
            or sorted(int(d) for d in dims) != list(range(1, len(dims) + 1))
        ):
            raise ConfigError(
                "Invalid permutation argument `dims` for Permute: it must be a permutation "
                "of 1..n (the batch axis 0 excluded). " + received("dims", dims)
            )
        self.dims = tuple(int(d) for d in dims)
        self.input_spec = InputSpec(ndim=len(self.dims) + 1)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        return np.transpose(inputs, (0, *self.dims))

    def returns_its_input(self, input_shape: tuple) -> bool:
        return self.dims == tuple(range(1, len(self.dims) + 1))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return shapes.permute_output_shape(input_shape, self.dims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": list(self.dims)}
