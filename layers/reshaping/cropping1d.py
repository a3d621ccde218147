"""Cropping1D: drops steps at both ends of ``(N, steps, features)``."""

from __future__ import annotations

from typing import Any

from layerserve.layers.reshaping.base_cropping import BaseCropping


class Cropping1D(BaseCropping):
    """Cropping layer for 1D input (e.g. temporal sequence), along axis 1.

    Args:
        cropping: int (the same at both ends) or a pair ``(before, after)``. A crop that
            leaves no step raises.

    Input shape:
        3D tensor ``(batch, steps, features)``; ``steps`` may be unknown.

    Output shape:
        3D tensor ``(batch, steps - before - after, features)``.
    """

    rank = 1

    def __init__(self, cropping: Any = (1, 1), **kwargs: Any) -> None:
        super().__init__(cropping, "channels_last", **kwargs)
