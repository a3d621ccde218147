"""GaussianDropout: multiplies by ``N(1, rate / (1 - rate))`` noise while training."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from layerserve.layers.regularization.base_noise import NoiseLayer, noise_parameter


class GaussianDropout(NoiseLayer):
    """Apply multiplicative 1-centered Gaussian noise (only while training).

    Args:
        rate: Drop probability, as with ``Dropout``; the noise has standard deviation
            ``sqrt(rate / (1 - rate))``. Keras 3 requires ``0 <= rate <= 1``.
        seed: Optional seed of the training noise (Keras 3, tf.keras).

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self.rate = noise_parameter(rate, "rate", self.keras_version)

    def active_in_training(self) -> bool:
        return self._rate_below_one(self.rate)

    def add_noise(self, inputs: np.ndarray) -> np.ndarray:
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        return inputs * (1.0 + stddev * self._rng.standard_normal(inputs.shape))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
