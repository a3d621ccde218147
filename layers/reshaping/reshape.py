"""Reshape: to ``(N,) + target_shape``, at most one entry -1."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received
from layerserve.layers import shapes
from layerserve.layers.base import Layer


class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (the batch axis excluded)."""

    def __init__(self, target_shape: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_shape = _validate_target(target_shape)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        out = shapes.resolve_reshape_target(tuple(inputs.shape), self.target_shape)
        return np.reshape(inputs, out)

    def returns_its_input(self, input_shape: tuple) -> bool:
        return tuple(self.compute_output_shape(input_shape)) == tuple(input_shape)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return shapes.resolve_reshape_target(input_shape, self.target_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": list(self.target_shape)}


def _validate_target(target_shape: Any) -> tuple[int, ...]:
    message = (
        "Expected `target_shape` to be a tuple of positive integers with at most one "
        "-1. " + received("target_shape", target_shape)
    )
    if isinstance(target_shape, (str, bytes)) or not isinstance(target_shape, (list, tuple)):
        raise ConfigError(message)
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) for d in target_shape):
        raise ConfigError(message)
    target = tuple(int(d) for d in target_shape)
    if any(d < -1 or d == 0 for d in target) or target.count(-1) > 1:
        raise ConfigError(message)
    return target
