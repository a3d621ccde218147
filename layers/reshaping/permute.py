"""Permute: reorders the non-batch axes; ``dims`` is 1-indexed."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, received
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

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        identity = self.dims == tuple(range(1, len(self.dims) + 1))
        if identity and mask is not None and self.keras_version >= (3, 0, 0):
            # JAX's transpose returns the very tensor, whose mask the next layer then reads;
            # TensorFlow's returns a new one, without it
            raise NotSupportedError(
                f"Layer {self.name!r} (Permute) leaves the axes in place on a masked input: "
                "Keras 3 keeps the mask there on JAX and drops it on TensorFlow, so the "
                "file's numbers depend on the backend that ran it. Expected a permutation "
                "that moves an axis, or no Permute. " + received("dims", list(self.dims))
            )
        return super().compute_mask(inputs, mask)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return shapes.permute_output_shape(input_shape, self.dims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": list(self.dims)}
