"""UpSampling1D: each step of ``(N, steps, features)`` repeated ``size`` times."""

from __future__ import annotations

from typing import Any

from layerserve.layers.reshaping.base_up_sampling import BaseUpSampling
from layerserve.layers.reshaping.spatial_arguments import legacy_rename


class UpSampling1D(BaseUpSampling):
    """Upsampling layer for 1D inputs: repeats each step ``size`` times along axis 1.

    Args:
        size: positive int, the upsampling factor.
        length: Keras 2.2's legacy name of ``size``.

    Input shape:
        3D tensor ``(batch, steps, features)``; ``steps`` may be unknown.

    Output shape:
        3D tensor ``(batch, steps * size, features)``.
    """

    rank = 1

    def __init__(self, size: int = 2, length: int | None = None, **kwargs: Any) -> None:
        super().__init__(
            legacy_rename("length", length, "size", size, 2), "channels_last", **kwargs
        )
