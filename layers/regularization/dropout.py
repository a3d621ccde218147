"""Dropout: inverted dropout while training, the identity at inference."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received
from layerserve.layers.base import Layer


def validate_rate(rate: Any) -> float:
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, float, np.number))
        or not (0.0 <= float(rate) < 1.0)
    ):
        raise ConfigError(
            "Invalid value received for argument `rate`. Expected a float value in [0, 1). "
            + received("rate", rate)
        )
    return float(rate)


def validate_noise_shape(noise_shape: Any) -> tuple[int | None, ...] | None:
    if noise_shape is None:
        return None
    if isinstance(noise_shape, (str, bytes)) or not isinstance(noise_shape, (list, tuple)):
        raise ConfigError(
            "Invalid value received for argument `noise_shape`. Expected a tuple or list of "
            "positive integers or None. " + received("noise_shape", noise_shape)
        )
    for dim in noise_shape:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0):
            raise ConfigError(
                "Invalid value received for argument `noise_shape`. Expected a tuple or list "
                "of positive integers or None. " + received("noise_shape", noise_shape)
            )
    return tuple(noise_shape)


def validate_seed(seed: Any) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ConfigError("Expected `seed` to be an integer or None. " + received("seed", seed))
    return None if seed is None else int(seed)


def concrete_noise_shape(
    layer_name: str, noise_shape: tuple[int | None, ...] | None, input_shape: tuple[int, ...]
) -> tuple[int, ...]:
    """``noise_shape`` with its None entries taken from the input; it must broadcast."""
    if noise_shape is None:
        return tuple(input_shape)
    if len(noise_shape) != len(input_shape):
        raise ConfigError(
            f"Layer {layer_name}: `noise_shape` must have the input's rank {len(input_shape)}. "
            + received("noise_shape", noise_shape)
        )
    resolved = tuple(
        size if dim is None else dim for dim, size in zip(noise_shape, input_shape, strict=True)
    )
    for dim, size in zip(resolved, input_shape, strict=True):
        if dim not in (1, size):
            raise ConfigError(
                f"Layer {layer_name}: `noise_shape` {noise_shape} does not broadcast "
                f"to the input shape {tuple(input_shape)}."
            )
    return resolved


def dropout_forward(
    x: np.ndarray, rate: float, noise_shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """Keep each unit of a ``noise_shape`` mask with probability ``1 - rate``, scale up."""
    keep = rng.random(noise_shape) >= rate
    return (x * keep / np.asarray(1.0 - rate, dtype=x.dtype)).astype(x.dtype)


class Dropout(Layer):
    """Sets a fraction ``rate`` of inputs to 0 during training; identity otherwise.

    ``noise_shape`` entries of ``None`` take the input's size; ``seed`` makes the
    sequence of masks reproducible.
    """

    supports_masking = True

    def __init__(
        self, rate: float, noise_shape: Any = None, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.rate = validate_rate(rate)
        self.noise_shape = validate_noise_shape(noise_shape)
        self.seed = validate_seed(seed)
        self._rng = np.random.default_rng(seed)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        if not training or self.rate == 0.0:
            return inputs
        return dropout_forward(inputs, self.rate, self._noise_shape(inputs), self._rng)

    def _noise_shape(self, inputs: np.ndarray) -> tuple[int, ...]:
        return concrete_noise_shape(self.name, self.noise_shape, inputs.shape)

    def get_config(self) -> dict[str, Any]:
        noise = list(self.noise_shape) if self.noise_shape is not None else None
        return {**super().get_config(), "rate": self.rate, "noise_shape": noise, "seed": self.seed}
