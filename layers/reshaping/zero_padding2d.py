"""ZeroPadding2D: rows and columns of zeros around images."""

from __future__ import annotations

from typing import Any

from layerserve.layers.reshaping.base_zero_padding import BaseZeroPadding
from layerserve.layers.reshaping.spatial_arguments import (
    legacy_data_format,
    legacy_padding_dict,
)


class ZeroPadding2D(BaseZeroPadding):
    """Zero-padding layer for 2D input (e.g. picture).

    Args:
        padding: int (every side), ``(symmetric_height, symmetric_width)`` or
            ``((top, bottom), (left, right))``. Keras 1's dict
            ``{"top_pad", "bottom_pad", "left_pad", "right_pad"}`` is read as Keras 2.2
            reads it.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` is the global
            ``image_data_format``.
        dim_ordering: Keras 2.2's legacy name of ``data_format`` (``"tf"``, ``"th"``,
            ``"default"``).

    Input shape:
        4D tensor ``(batch, rows, cols, channels)`` (channels_last) or
        ``(batch, channels, rows, cols)`` (channels_first).

    Output shape:
        The same with ``rows + top + bottom`` rows and ``cols + left + right`` columns.
    """

    rank = 2

    def __init__(
        self,
        padding: Any = (1, 1),
        data_format: str | None = None,
        dim_ordering: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            legacy_padding_dict(padding), legacy_data_format(data_format, dim_ordering), **kwargs
        )
