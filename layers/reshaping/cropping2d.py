"""Cropping2D: drops rows and columns at the borders of images."""

from __future__ import annotations

from typing import Any

from layerserve.layers.reshaping.base_cropping import BaseCropping
from layerserve.layers.reshaping.spatial_arguments import legacy_data_format


class Cropping2D(BaseCropping):
    """Cropping layer for 2D input (e.g. picture), along height and width.

    Args:
        cropping: int (every side), ``(symmetric_height, symmetric_width)`` or
            ``((top, bottom), (left, right))``. A crop that leaves no row or column raises.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` is the global
            ``image_data_format``.
        dim_ordering: Keras 2.2's legacy name of ``data_format`` (``"tf"``, ``"th"``,
            ``"default"``).

    Input shape:
        4D tensor ``(batch, rows, cols, channels)`` (channels_last) or
        ``(batch, channels, rows, cols)`` (channels_first).

    Output shape:
        The same with ``rows - top - bottom`` rows and ``cols - left - right`` columns.
    """

    rank = 2

    def __init__(
        self,
        cropping: Any = ((0, 0), (0, 0)),
        data_format: str | None = None,
        dim_ordering: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(cropping, legacy_data_format(data_format, dim_ordering), **kwargs)
