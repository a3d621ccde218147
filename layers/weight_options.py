"""Per-weight options (initializer, regularizer, constraint) and argument checks shared
by the layers that own weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import constraints, initializers, regularizers
from layerserve.errors import ConfigError, received
from layerserve.layers.base import Layer, Variable
from layerserve.serialization import serialize

_GETTERS = {
    "initializer": initializers.get,
    "regularizer": regularizers.get,
    "constraint": constraints.get,
}


def set_weight_options(layer: Layer, **options: Any) -> None:
    """``kernel_initializer=...``, ``bias_regularizer=...``: resolved and stored."""
    for key, value in options.items():
        setattr(layer, key, _GETTERS[key.rsplit("_", 1)[1]](value))


def weight_options_config(layer: Layer, weights: tuple[str, ...], kind: str) -> dict[str, Any]:
    """``{"kernel_<kind>": ..., "bias_<kind>": ...}`` serialized, in ``weights`` order."""
    return {f"{w}_{kind}": serialize(getattr(layer, f"{w}_{kind}")) for w in weights}


def add_owned_weight(
    layer: Layer, name: str, shape: tuple[int, ...], initializer: Any = None
) -> Variable:
    """A weight with the layer's ``<option>_initializer/_regularizer/_constraint``, where
    the option prefix is the weight name up to ``_kernel`` (``recurrent_kernel`` uses
    ``recurrent_*``)."""
    prefix = name.removesuffix("_kernel")
    return layer.add_weight(
        name,
        shape,
        initializer or getattr(layer, f"{prefix}_initializer"),
        getattr(layer, f"{prefix}_regularizer"),
        getattr(layer, f"{prefix}_constraint"),
    )


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"Expected `{name}` to be a positive integer. " + received(name, value))
    return int(value)
