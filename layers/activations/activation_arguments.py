"""Argument checks shared by the activation layers, and how each Keras stores the values.

Keras 2 (multi-backend and tf.keras) casts the slopes, thresholds and limits of its
activation layers to floatx when it builds them (``K.cast_to_floatx``), so its configs
hold float32-rounded values (``0.30000001192092896``) and the math uses them; Keras 3
keeps the Python float it was given.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received
from layerserve.layers.base import Layer
from layerserve.serialization import keras_semantics


def number(
    layer: Layer,
    value: Any,
    name: str,
    *,
    optional: bool = False,
    non_negative: bool = False,
) -> float | None:
    """``value`` as the float the layer's Keras version computes with (rounded to
    float32 by Keras 2), after the checks Keras makes."""
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise ConfigError(
            f"Expected `{name}` of {type(layer).__name__} to be a number"
            f"{' or None' if optional else ''}. " + received(name, value)
        )
    if np.isnan(value):
        raise ConfigError(
            f"Expected `{name}` of {type(layer).__name__} to be a number, not NaN. "
            + received(name, value)
        )
    if non_negative and value < 0:
        raise ConfigError(
            f"{name} of a {type(layer).__name__} layer cannot be a negative value. "
            + received(name, value)
        )
    if layer.keras_version < (3, 0, 0) and np.dtype(layer.dtype) != np.float64:
        # floatx; a float64 layer means the writer's floatx was float64
        return float(np.float32(value))
    return float(value)


@contextlib.contextmanager
def own_semantics(layer: Layer) -> Iterator[None]:
    """Run the activation functions with the Keras version the layer was made under."""
    with keras_semantics(layer.keras_version):
        yield


def warn_if_old_leaky_relu(layer: Layer, slope: float) -> None:
    """Multi-backend Keras 2 hands a lone slope to ``tf.nn.leaky_relu``, which old
    TensorFlow versions computed as ``max(x, slope * x)``: wrong for slopes above 1.
    layerserve computes ``slope * x`` below 0, as later TensorFlow versions do."""
    if layer.keras_version < (2, 4, 0) and slope > 1:
        warnings.warn(
            f"Layer {layer.name!r} ({type(layer).__name__}) has a negative slope of {slope} "
            "(> 1): old TensorFlow versions under multi-backend Keras computed "
            "max(x, slope * x) for it; layerserve computes slope * x below 0.",
            UserWarning,
            stacklevel=3,
        )
