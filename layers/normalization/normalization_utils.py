"""Argument checks and the moments shared by the normalization layers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received


def flag(value: Any, name: str, layer: str) -> bool:
    """A boolean argument (``center``, ``scale``...): True/False only, never a truthy
    stand-in, so that a malformed config is not read as something it does not say."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{layer}: expected `{name}` to be a boolean. " + received(name, value))
    return bool(value)


def number(value: Any, name: str, layer: str, minimum: float | None = None) -> float:
    """A finite real number (``momentum``, ``renorm_momentum``...), at least ``minimum``."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(float(value))
        or (minimum is not None and float(value) < minimum)
    ):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ConfigError(
            f"{layer}: expected `{name}` to be a finite number{bound}. " + received(name, value)
        )
    return float(value)


def epsilon_value(value: Any, layer: str) -> float:
    """``epsilon``: added to a variance, so it must not be negative."""
    return number(value, "epsilon", layer, minimum=0.0)


def placed(variable: Any, broadcast: Sequence[int]) -> np.ndarray | None:
    """A weight (or None) on the input's axes. Keras *reshapes* a weight to the broadcast
    shape, never transposes it, so a weight stored in another axis order than the
    input's is read in row-major order, exactly as Keras reads it."""
    return None if variable is None else np.reshape(variable.value, tuple(broadcast))


def moments(
    x: np.ndarray, axes: Sequence[int], weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance over ``axes`` (kept), in two passes: the variance is
    the mean of squared deviations from the mean, never E[x^2] - E[x]^2, which loses
    every digit when the mean is large against the spread.

    With ``weights`` (frequency weights of ``x``'s shape), ``sum(w*x)/sum(w)`` and
    ``sum(w*(x-mean)^2)/sum(w)``, 0 where the weights sum to 0 (TensorFlow's
    ``weighted_moments`` divides with ``div_no_nan``)."""
    axes = tuple(axes)
    if weights is None:
        mean = np.mean(x, axis=axes, keepdims=True)
        variance = np.mean(np.square(x - mean), axis=axes, keepdims=True)
        return mean, variance
    total = np.sum(weights, axis=axes, keepdims=True)
    safe = np.where(total == 0, np.ones_like(total), total)
    mean = np.where(total == 0, 0, np.sum(weights * x, axis=axes, keepdims=True) / safe)
    squares = np.sum(weights * np.square(x - mean), axis=axes, keepdims=True)
    variance = np.where(total == 0, 0, squares / safe)
    return mean.astype(x.dtype), variance.astype(x.dtype)


def normalize(
    x: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    epsilon: float,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
) -> np.ndarray:
    """``(x - mean) / sqrt(variance + epsilon) * gamma + beta`` in ``x``'s dtype."""
    dtype = x.dtype.type
    y = (x - mean) / np.sqrt(variance + dtype(epsilon))
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype, copy=False)
