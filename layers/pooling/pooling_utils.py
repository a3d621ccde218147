"""Argument handling shared by the windowed and the global pooling layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve._config import normalize_data_format
from layerserve.errors import ConfigError, DTypeError, received


class _SequenceDefault:
    """The default ``data_format`` of the 1D pools: Keras 2 (2.2.3+ and tf.keras) uses
    channels_last whatever the global setting; Keras 3 uses ``image_data_format()``."""

    def __repr__(self) -> str:
        return "'channels_last' (Keras 2) or image_data_format() (Keras 3)"


SEQUENCE_DEFAULT: Any = _SequenceDefault()


def resolve_data_format(value: Any, keras_version: tuple[int, int, int]) -> str:
    """An explicit None always means the global setting, as in every Keras version."""
    if value is SEQUENCE_DEFAULT:
        value = "channels_last" if keras_version < (3, 0, 0) else None
    return normalize_data_format(value)


def normalize_padding(value: Any, layer: str) -> str:
    """'valid' or 'same', any case (tf.keras lower-cases; Keras 3 lower-cases in the op)."""
    padding = value.lower() if isinstance(value, str) else value
    if padding not in ("valid", "same"):
        raise ConfigError(
            f"The `padding` argument of {layer} must be 'valid' or 'same'. "
            + received("padding", value)
        )
    return padding


def normalize_keepdims(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError("Expected `keepdims` to be a boolean. " + received("keepdims", value))
    return bool(value)


def require_float(layer: Any, dtype: Any) -> None:
    """Pools are computed in the input's floating dtype; integer pooling (which Keras
    backends do not agree on, and ONNX pools do not take) is refused."""
    if np.dtype(dtype).kind != "f":
        raise DTypeError(
            f"Layer {layer.name} ({type(layer).__name__}) expects floating-point input. "
            + received("dtype", np.dtype(dtype).name)
        )
