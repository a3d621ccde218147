"""Bookkeeping shared by GaussianNoise, GaussianDropout and AlphaDropout: the identity
at inference, seeded noise while training, and the version-dependent range checks."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received
from layerserve.layers.base import Layer
from layerserve.layers.regularization.dropout import validate_seed


def noise_parameter(value: Any, name: str, keras_version: tuple[int, int, int]) -> float:
    """Keras 3 requires ``0 <= value <= 1``; Keras 2 checks nothing, so Keras 2 files with,
    say, ``stddev=2.0`` load (the layer is the identity at inference either way)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ConfigError(f"Expected `{name}` to be a number. " + received(name, value))
    if keras_version >= (3, 0, 0) and not 0.0 <= float(value) <= 1.0:
        raise ConfigError(
            f"Invalid value received for argument `{name}`. Expected a float value "
            "between 0 and 1. " + received(name, value)
        )
    return float(value)


class NoiseLayer(Layer):
    """Passes inputs (and masks) through unless ``training``; then ``add_noise``."""

    supports_masking = True

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = validate_seed(seed)
        self._rng = np.random.default_rng(self.seed)
        self.built = True

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        if not training or not self.active_in_training():
            return inputs
        return np.asarray(self.add_noise(inputs), dtype=inputs.dtype)

    def active_in_training(self) -> bool:
        raise NotImplementedError

    def add_noise(self, inputs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _rate_below_one(self, rate: float) -> bool:
        """Keras 2 adds no noise unless ``0 < rate < 1``; Keras 3 adds it for any
        ``rate > 0``, and ``rate == 1`` divides by zero there."""
        if self.keras_version < (3, 0, 0):
            return 0.0 < rate < 1.0
        if rate >= 1.0:
            raise ConfigError(
                f"Layer {self.name}: training with rate=1 divides by zero in Keras 3 "
                "(infinite noise). " + received("rate", rate)
            )
        return rate > 0.0
