"""RandomContrast: adjusts contrast while training; the identity at inference."""

from __future__ import annotations

from typing import Any

from layerserve.layers.preprocessing.base_augmentation import (
    AugmentationLayer,
    factor_value,
    value_range_pair,
)


class RandomContrast(AugmentationLayer):
    """Randomly adjusts contrast while training; at inference returns the images.

    Args:
        factor: The contrast range (a number or ``[lower, upper]``).
        value_range: Keras 3: the ``[low, high]`` range of the pixel values.
        seed, data_format, rng_type: Kept for the config (training only).

    Input shape:
        Images. tf.keras casts them to the float dtype; Keras 3 keeps integer images.

    Output shape:
        Same as the input.
    """

    keras3_keeps_integers = True

    def __init__(self, factor: Any, value_range: Any = (0, 255), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor_value(factor, "factor")
        self.value_range = value_range_pair(value_range)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}
