"""MaxPooling3D: max pooling over windows of spatio-temporal (3D) data."""

from __future__ import annotations

from typing import Any

from layerserve.layers.pooling.base_pooling import BasePooling


class MaxPooling3D(BasePooling):
    """Max pooling operation for spatio-temporal (3D) data.

    Padded cells never win: 'same' pads with -inf.

    Args:
        pool_size: An int or a tuple of 3 ints, the window size.
        strides: An int or a tuple of 3 ints; None (the default) means ``pool_size``.
        padding: 'valid' (no padding) or 'same' (output size ``ceil(n / strides)``, the odd
            padding cell at the end), any case.
        data_format: 'channels_last' or 'channels_first'; None means
            ``image_data_format()``.

    Input shape:
        channels_last ``(batch, dim1, dim2, dim3, channels)``,
        channels_first ``(batch, channels, dim1, dim2, dim3)``.

    Output shape:
        channels_last ``(batch, pooled_dim1, pooled_dim2, pooled_dim3, channels)``,
        channels_first ``(batch, channels, pooled_dim1, pooled_dim2, pooled_dim3)``.
    """

    rank = 3
    mode = "max"

    def __init__(
        self,
        pool_size: Any = (2, 2, 2),
        strides: Any = None,
        padding: str = "valid",
        data_format: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(pool_size, strides, padding, data_format, **kwargs)
