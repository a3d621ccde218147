"""SpatialDropout1D/2D/3D: drop whole feature maps instead of single units."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve._config import normalize_data_format
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.regularization.dropout import Dropout


class _SpatialDropout(Dropout):
    rank = 3

    def __init__(
        self, rate: float, data_format: str | None = None, seed: int | None = None, **kwargs: Any
    ) -> None:
        kwargs.pop("noise_shape", None)  # Keras ignores a user noise_shape here
        super().__init__(rate, seed=seed, **kwargs)
        self.data_format = normalize_data_format(data_format)
        self.input_spec = InputSpec(ndim=self.rank)

    def _noise_shape(self, inputs: np.ndarray) -> tuple[int, ...]:
        batch = inputs.shape[0]
        ones = (1,) * (inputs.ndim - 2)
        if self.data_format == "channels_first":
            return (batch, inputs.shape[1], *ones)
        return (batch, *ones, inputs.shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class SpatialDropout1D(_SpatialDropout):
    """Input ``(N, timesteps, channels)``; one keep decision per sample and channel."""

    rank = 3

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        kwargs.pop("data_format", None)
        super().__init__(rate, data_format="channels_last", seed=seed, **kwargs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("data_format")
        return config


class SpatialDropout2D(_SpatialDropout):
    """4-D input; whole 2-D feature maps are dropped, per ``data_format``."""

    rank = 4


class SpatialDropout3D(_SpatialDropout):
    """5-D input; whole 3-D feature maps are dropped, per ``data_format``."""

    rank = 5
