"""Argument normalisation shared by convolution layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received


def normalize_tuple(value: Any, n: int, name: str) -> tuple[int, ...]:
    """An int becomes an n-tuple; anything else must be n positive integers."""
    message = f"The `{name}` argument must be a tuple of {n} integers. " + received(name, value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values: tuple[Any, ...] = (int(value),) * n
    elif isinstance(value, (list, tuple)) and len(value) == n:
        values = tuple(value)
    else:
        raise ConfigError(message)
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0 for v in values):
        raise ConfigError(message)
    return tuple(int(v) for v in values)


def normalize_padding(value: Any) -> str:
    padding = str(value).lower()
    if padding not in ("valid", "same"):
        raise ConfigError(
            "The `padding` argument must be 'valid' or 'same' for Conv2D "
            "('causal' is for Conv1D only). " + received("padding", value)
        )
    return padding
