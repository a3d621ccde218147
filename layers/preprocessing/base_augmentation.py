"""Bookkeeping shared by the random image augmentation layers (RandomFlip,
RandomRotation, ...): they transform images only while training, so at inference they
return their input, cast as Keras casts it. Their arguments matter only while training;
they are validated and kept for ``get_config``."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, received
from layerserve.layers.base import Layer
from layerserve.layers.preprocessing.image_utils import image_data_format, number
from layerserve.layers.regularization.dropout import validate_seed

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("nearest", "bilinear")
RNG_TYPES = ("stateful", "stateless", "legacy_stateful")


def factor_value(value: Any, name: str, optional: bool = False) -> Any:
    """A number or a ``(lower, upper)`` pair, returned as given (a pair as a list)."""
    if value is None and optional:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(_is_number(v) for v in value):
            return [float(v) for v in value]
    elif _is_number(value):
        return float(value)
    raise ConfigError(
        f"Expected `{name}` to be a number or a list of two numbers. " + received(name, value)
    )


def value_range_pair(value: Any) -> list[float]:
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(_is_number(v) for v in value)
        and value[0] < value[1]
    ):
        return [float(v) for v in value]
    raise ConfigError(
        "Expected `value_range` to be a list of two increasing numbers. "
        + received("value_range", value)
    )


def choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"Expected `{name}` to be one of {allowed}. " + received(name, value))
    return value


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.number))


class AugmentationLayer(Layer):
    """The identity at inference (with Keras's cast); random while training, which
    layerserve does not implement.

    Keras 3 casts to the float dtype in most of these layers; RandomContrast,
    RandomBrightness and RandomCrop keep integer inputs (``keras3_keeps_integers``), while
    float inputs are cast by every Keras 3 layer. tf.keras casts every input.

    Every Keras 3 augmentation layer saves ``data_format``; tf.keras saves ``rng_type``
    (its random generator).
    """

    keras3_keeps_integers = False

    def __init__(
        self,
        seed: int | None = None,
        data_format: str | None = None,
        rng_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.seed = validate_seed(seed)
        self.data_format = image_data_format(data_format, self.keras_version)
        if rng_type is not None:
            choice(rng_type, "rng_type", RNG_TYPES)
        self.rng_type = rng_type
        self.built = True

    def output_dtype(self, input_dtype: str) -> str:
        keeps = self.keras3_keeps_integers and self.keras_version >= (3, 0, 0)
        if keeps and np.dtype(input_dtype).kind in "iub":
            return input_dtype
        return self.dtype

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        if training:
            raise NotSupportedError(
                f"{type(self).__name__} {self.name}: random augmentation while training is "
                "not implemented; layerserve runs inference. " + received("training", True)
            )
        return inputs.astype(self.output_dtype(inputs.dtype.name))

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "seed": self.seed, "data_format": self.data_format}
        if self.rng_type is not None:
            config["rng_type"] = self.rng_type
        return config


class AffineAugmentation(AugmentationLayer):
    """RandomRotation, RandomZoom, RandomTranslation: an affine warp while training."""

    def __init__(
        self,
        fill_mode: str = "reflect",
        interpolation: str = "bilinear",
        fill_value: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fill_mode = choice(fill_mode, "fill_mode", FILL_MODES)
        self.interpolation = choice(interpolation, "interpolation", INTERPOLATIONS)
        self.fill_value = number(fill_value, "fill_value")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "fill_mode": self.fill_mode,
            "interpolation": self.interpolation,
            "fill_value": self.fill_value,
        }
