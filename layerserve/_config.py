"""Process-wide Keras settings: floatx, epsilon and image_data_format.

As in Keras, the defaults come from ``$KERAS_HOME/keras.json`` (or
``~/.keras/keras.json``) when that file exists and can be read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from layerserve.errors import ConfigError, received

_IMAGE_DATA_FORMATS = ("channels_last", "channels_first")
_FLOATX = ("float16", "float32", "float64")


def keras_json_path() -> Path:
    home = os.environ.get("KERAS_HOME")
    base = Path(home) if home else Path(os.path.expanduser("~")) / ".keras"
    return base / "keras.json"


def _read_keras_json() -> dict:
    path = keras_json_path()
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class _Settings:
    def __init__(self) -> None:
        self.reload()

    def reload(self) -> None:
        data = _read_keras_json()
        fmt = data.get("image_data_format", "channels_last")
        self.image_data_format = fmt if fmt in _IMAGE_DATA_FORMATS else "channels_last"
        floatx = data.get("floatx", "float32")
        self.floatx = floatx if floatx in _FLOATX else "float32"
        eps = data.get("epsilon", 1e-7)
        self.epsilon = float(eps) if isinstance(eps, (int, float)) else 1e-7


_settings = _Settings()


def reload_settings() -> None:
    """Re-read keras.json (after KERAS_HOME or the file changed)."""
    _settings.reload()


def image_data_format() -> str:
    return _settings.image_data_format


def set_image_data_format(data_format: str) -> None:
    if data_format not in _IMAGE_DATA_FORMATS:
        raise ConfigError(
            "Expected image_data_format to be 'channels_last' or 'channels_first'. "
            + received("data_format", data_format)
        )
    _settings.image_data_format = data_format


def floatx() -> str:
    return _settings.floatx


def set_floatx(value: str) -> None:
    if value not in _FLOATX:
        raise ConfigError(f"Expected floatx to be one of {_FLOATX}. " + received("value", value))
    _settings.floatx = value


def epsilon() -> float:
    return _settings.epsilon


def set_epsilon(value: float) -> None:
    _settings.epsilon = float(value)


def normalize_data_format(value: str | None) -> str:
    """Resolve ``data_format=None`` to the global setting, validating anything else."""
    if value is None:
        return image_data_format()
    lowered = str(value).lower()
    if lowered not in _IMAGE_DATA_FORMATS:
        raise ConfigError(
            "The `data_format` argument must be one of 'channels_first', 'channels_last'. "
            + received("data_format", value)
        )
    return lowered
