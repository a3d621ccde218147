"""RandomRotation: rotates images while training; the identity at inference."""

from __future__ import annotations

from typing import Any

from layerserve.layers.preprocessing.base_augmentation import AffineAugmentation, factor_value


class RandomRotation(AffineAugmentation):
    """Randomly rotates images while training; at inference returns them (as floats).

    Args:
        factor: The rotation range as a fraction of 2*pi (a number or ``[lower, upper]``).
        fill_mode, interpolation, fill_value: Options of the training warp.
        seed, data_format, rng_type: Kept for the config (training only).

    Input shape:
        Images, cast to the float dtype.

    Output shape:
        Same as the input.
    """

    def __init__(self, factor: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor_value(factor, "factor")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}
