"""Masking: masks the timesteps whose features all equal ``mask_value``."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received
from layerserve.layers.base import Layer
from layerserve.layers.tensor import KerasTensor


def timestep_mask(x: np.ndarray, mask_value: float) -> np.ndarray:
    """True (keep) where any feature of the last axis differs from ``mask_value``."""
    return np.any(x != mask_value, axis=-1)


class Masking(Layer):
    """Computes a mask of shape ``input_shape[:-1]`` and zeroes the masked timesteps.

    Masking is per sample: a step is masked where every feature equals ``mask_value``.
    Any incoming mask is replaced.
    """

    supports_masking = True

    def __init__(self, mask_value: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float, np.number)):
            raise ConfigError(
                "Expected `mask_value` to be a number. " + received("mask_value", mask_value)
            )
        self.mask_value = mask_value

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        keep = timestep_mask(inputs, self.mask_value)[..., np.newaxis]
        if self.keras_version >= (3, 0, 0):
            return np.where(keep, inputs, np.zeros((), dtype=inputs.dtype))
        # Keras 2 multiplies by the 0/1 mask, so a mask_value of +-inf gives NaN there.
        return inputs * keep.astype(inputs.dtype)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if isinstance(inputs, KerasTensor):
            return KerasTensor(inputs.shape[:-1], "bool")
        return timestep_mask(inputs, self.mask_value)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mask_value": self.mask_value}
