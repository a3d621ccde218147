"""RandomZoom: zooms images while training; the identity at inference."""

from __future__ import annotations

from typing import Any

from layerserve.layers.preprocessing.base_augmentation import AffineAugmentation, factor_value


class RandomZoom(AffineAugmentation):
    """Randomly zooms images while training; at inference returns them (as floats).

    Args:
        height_factor: The vertical zoom range (a number or ``[lower, upper]``).
        width_factor: The horizontal zoom range; None keeps the aspect ratio.
        fill_mode, interpolation, fill_value: Options of the training warp.
        seed, data_format, rng_type: Kept for the config (training only).

    Input shape:
        Images, cast to the float dtype.

    Output shape:
        Same as the input.
    """

    def __init__(self, height_factor: Any, width_factor: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height_factor = factor_value(height_factor, "height_factor")
        self.width_factor = factor_value(width_factor, "width_factor", optional=True)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "height_factor": self.height_factor,
            "width_factor": self.width_factor,
        }
