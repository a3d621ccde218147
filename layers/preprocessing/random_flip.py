"""RandomFlip: flips images while training; the identity at inference."""

from __future__ import annotations

from typing import Any

from layerserve.layers.preprocessing.base_augmentation import AugmentationLayer, choice

MODES = ("horizontal", "vertical", "horizontal_and_vertical")


class RandomFlip(AugmentationLayer):
    """Randomly flips images while training; at inference returns them (as floats).

    Args:
        mode: ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"``.
        seed, data_format, rng_type: Kept for the config (training only).

    Input shape:
        Images, cast to the float dtype.

    Output shape:
        Same as the input.
    """

    def __init__(self, mode: str = "horizontal_and_vertical", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = choice(mode, "mode", MODES)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}
