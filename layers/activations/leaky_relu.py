"""LeakyReLU: ``x`` above zero, ``negative_slope * x`` below."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve.errors import ConfigError
from layerserve.layers.activations.activation_arguments import number, warn_if_old_leaky_relu
from layerserve.layers.base import Layer

_NOT_GIVEN: Any = object()
DEFAULT_SLOPE = 0.3


class LeakyReLU(Layer):
    """Leaky rectified linear unit: ``x`` for ``x >= 0``, else ``negative_slope * x``.

    Args:
        negative_slope: Float, the slope below zero (default 0.3; >= 0 in Keras 3). Keras 2
            calls it ``alpha``; either name is accepted, not both. Keras 2 configs store it
            as ``alpha``, Keras 3 configs as ``negative_slope``.

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    float_inputs_only = True

    supports_masking = True

    def __init__(
        self, negative_slope: float = _NOT_GIVEN, alpha: float = _NOT_GIVEN, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if negative_slope is not _NOT_GIVEN and alpha is not _NOT_GIVEN:
            raise ConfigError(
                "Pass either `negative_slope` or its Keras 2 name `alpha` to LeakyReLU, not "
                f"both. Received: negative_slope={negative_slope!r}, alpha={alpha!r}"
            )
        slope = alpha if alpha is not _NOT_GIVEN else negative_slope
        slope = DEFAULT_SLOPE if slope is _NOT_GIVEN else slope
        # Keras 3 rejects negative slopes; Keras 2 only None.
        keras3 = self.keras_version >= (3, 0, 0)
        self.negative_slope = number(self, slope, "negative_slope", non_negative=keras3)
        warn_if_old_leaky_relu(self, self.negative_slope)

    @property
    def alpha(self) -> float:
        """The Keras 2 name of ``negative_slope``."""
        return self.negative_slope

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        return activations.leaky_relu(inputs, negative_slope=self.negative_slope)

    def get_config(self) -> dict[str, Any]:
        key = "negative_slope" if self.keras_version >= (3, 0, 0) else "alpha"
        return {**super().get_config(), key: self.negative_slope}
