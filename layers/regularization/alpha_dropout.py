"""AlphaDropout: dropout that keeps the mean and variance of SELU activations."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.regularization.base_noise import NoiseLayer, noise_parameter
from layerserve.layers.regularization.dropout import concrete_noise_shape, validate_noise_shape

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def alpha_dropout_forward(x: np.ndarray, rate: float, keep: np.ndarray) -> np.ndarray:
    """Dropped units become SELU's negative saturation ``-alpha * scale``, then the affine
    map ``a * x + b`` restores the mean and variance."""
    alpha_p = -SELU_ALPHA * SELU_SCALE
    kept = keep.astype(x.dtype)
    a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5
    b = -a * alpha_p * rate
    return a * (x * kept + alpha_p * (1 - kept)) + b


class AlphaDropout(NoiseLayer):
    """Applies Alpha Dropout to the input (only while training).

    Args:
        rate: Drop probability. Keras 3 requires ``0 <= rate <= 1``.
        noise_shape: Shape of the binary keep mask (None entries: the input's size), as
            with ``Dropout``. tf.keras does not save it.
        seed: Optional seed of the training noise.

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    def __init__(
        self, rate: float, noise_shape: Any = None, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(seed=seed, **kwargs)
        self.rate = noise_parameter(rate, "rate", self.keras_version)
        self.noise_shape = validate_noise_shape(noise_shape)

    def active_in_training(self) -> bool:
        return self._rate_below_one(self.rate)

    def add_noise(self, inputs: np.ndarray) -> np.ndarray:
        shape = concrete_noise_shape(self.name, self.noise_shape, inputs.shape)
        keep = self._rng.random(shape) >= self.rate
        return alpha_dropout_forward(inputs, self.rate, keep)

    def get_config(self) -> dict[str, Any]:
        noise = list(self.noise_shape) if self.noise_shape is not None else None
        return {**super().get_config(), "rate": self.rate, "noise_shape": noise, "seed": self.seed}
