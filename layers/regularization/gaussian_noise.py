"""GaussianNoise: adds ``N(0, stddev^2)`` noise while training; the identity otherwise."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.regularization.base_noise import NoiseLayer, noise_parameter


class GaussianNoise(NoiseLayer):
    """Apply additive zero-centered Gaussian noise (only while training).

    Args:
        stddev: Standard deviation of the noise. Keras 3 requires ``0 <= stddev <= 1``;
            Keras 2 files may hold any number.
        seed: Optional seed of the training noise (Keras 3, tf.keras).

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    def __init__(self, stddev: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self.stddev = noise_parameter(stddev, "stddev", self.keras_version)

    def active_in_training(self) -> bool:
        # Keras 2 adds the noise whatever stddev is; Keras 3 skips stddev 0 (adding zeros).
        return self.keras_version < (3, 0, 0) or self.stddev > 0

    def add_noise(self, inputs: np.ndarray) -> np.ndarray:
        # stddev * N(0, 1), as TensorFlow draws it (a negative Keras 2 stddev is allowed).
        return inputs + self.stddev * self._rng.standard_normal(inputs.shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}
