"""Activation: applies an activation function element-wise."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve.layers.base import Layer


class Activation(Layer):
    """``y = activation(x)``; the output shape equals the input shape."""

    supports_masking = True

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        return self.activation(inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": activations.serialize(self.activation)}
