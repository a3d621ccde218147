"""ZeroPadding3D: zeros around volumes (spatial or spatio-temporal data)."""

from __future__ import annotations

from typing import Any

from layerserve.layers.reshaping.base_zero_padding import BaseZeroPadding
from layerserve.layers.reshaping.spatial_arguments import legacy_data_format


class ZeroPadding3D(BaseZeroPadding):
    """Zero-padding layer for 3D data.

    Args:
        padding: int (every side), ``(d1, d2, d3)`` symmetric per axis, or
            ``((d1_before, d1_after), (d2_before, d2_after), (d3_before, d3_after))``.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` is the global
            ``image_data_format``.
        dim_ordering: Keras 2.2's legacy name of ``data_format`` (``"tf"``, ``"th"``,
            ``"default"``).

    Input shape:
        5D tensor ``(batch, d1, d2, d3, channels)`` (channels_last) or
        ``(batch, channels, d1, d2, d3)`` (channels_first).

    Output shape:
        The same with each spatial axis grown by ``before + after``.
    """

    rank = 3

    def __init__(
        self,
        padding: Any = ((1, 1), (1, 1), (1, 1)),
        data_format: str | None = None,
        dim_ordering: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(padding, legacy_data_format(data_format, dim_ordering), **kwargs)
