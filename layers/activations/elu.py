"""ELU: ``x`` above zero, ``alpha * (exp(x) - 1)`` below."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve.layers.activations.activation_arguments import number
from layerserve.layers.base import Layer


class ELU(Layer):
    """Exponential linear unit: ``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``.

    Args:
        alpha: Float, the scale of the negative part (default 1.0).

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    float_inputs_only = True

    supports_masking = True

    def __init__(self, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = number(self, alpha, "alpha")

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        return activations.elu(inputs, alpha=self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}
