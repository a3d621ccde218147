"""UpSampling3D: nearest upsampling of volumes by integer factors."""

from __future__ import annotations

from typing import Any

from layerserve.layers.reshaping.base_up_sampling import BaseUpSampling
from layerserve.layers.reshaping.spatial_arguments import legacy_data_format


class UpSampling3D(BaseUpSampling):
    """Upsampling layer for 3D inputs: repeats entries ``size[i]`` times along spatial
    axis ``i`` (nearest; Keras has no other interpolation here).

    Args:
        size: positive int (every axis) or 3 positive ints ``(d1, d2, d3)``.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` is the global
            ``image_data_format``.
        dim_ordering: Keras 2.2's legacy name of ``data_format`` (``"tf"``, ``"th"``,
            ``"default"``).

    Input shape:
        5D tensor ``(batch, d1, d2, d3, channels)`` (channels_last) or
        ``(batch, channels, d1, d2, d3)`` (channels_first).

    Output shape:
        The same with spatial axis ``i`` multiplied by ``size[i]``.
    """

    rank = 3

    def __init__(
        self,
        size: Any = (2, 2, 2),
        data_format: str | None = None,
        dim_ordering: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(size, legacy_data_format(data_format, dim_ordering), **kwargs)
