"""ReLU: the rectifier with a ceiling, a negative slope and a threshold."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve.errors import UnknownArgumentError
from layerserve.layers.activations.activation_arguments import (
    number,
    own_semantics,
    warn_if_old_leaky_relu,
)
from layerserve.layers.base import Layer

# Multi-backend Keras 2.2.0-2.2.2: ReLU(max_value) only.
_MAX_VALUE_ONLY = ((2, 2, 0), (2, 2, 3))


class ReLU(Layer):
    """Rectified linear unit.

    ``min(x, max_value)`` for ``x > threshold``, 0 at the threshold and
    ``negative_slope * (x - threshold)`` below it (spec section 3).

    Args:
        max_value: Float >= 0, the largest output; None leaves it unbounded.
        negative_slope: Float >= 0, the slope below the threshold.
        threshold: Float, where the function turns; >= 0 in tf.keras and Keras 3
            (multi-backend Keras 2.2.3+ accepts negative thresholds). Keras 2.2.0-2.2.2
            have neither ``negative_slope`` nor ``threshold``.

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    float_inputs_only = True

    supports_masking = True

    def __init__(
        self,
        max_value: float | None = None,
        negative_slope: float = 0.0,
        threshold: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._max_value_only = _MAX_VALUE_ONLY[0] <= self.keras_version < _MAX_VALUE_ONLY[1]
        if self._max_value_only and (negative_slope or threshold):
            raise UnknownArgumentError(
                "ReLU of Keras 2.2.0-2.2.2 takes `max_value` only. "
                f"Received: negative_slope={negative_slope!r}, threshold={threshold!r}"
            )
        self.max_value = number(self, max_value, "max_value", optional=True, non_negative=True)
        self.negative_slope = number(self, negative_slope, "negative_slope", non_negative=True)
        self.threshold = number(
            self, threshold, "threshold", non_negative=self.keras_version >= (2, 4, 0)
        )
        if self.max_value is None and self.threshold == 0:
            warn_if_old_leaky_relu(self, self.negative_slope)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        with own_semantics(self):
            return activations.relu(
                inputs,
                negative_slope=self.negative_slope,
                max_value=self.max_value,
                threshold=self.threshold,
            )

    def get_config(self) -> dict[str, Any]:
        if self._max_value_only:
            return {**super().get_config(), "max_value": self.max_value}
        return {
            **super().get_config(),
            "max_value": self.max_value,
            "negative_slope": self.negative_slope,
            "threshold": self.threshold,
        }
