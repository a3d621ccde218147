"""AveragePooling1D: average pooling over windows of temporal (1D) data."""

from __future__ import annotations

from typing import Any

from layerserve.layers.pooling.base_pooling import BasePooling
from layerserve.layers.pooling.pooling_utils import SEQUENCE_DEFAULT


class AveragePooling1D(BasePooling):
    """Average pooling operation for temporal (1D) data.

    Under 'same' each window is divided by its number of real (unpadded) cells.

    Args:
        pool_size: An int or a tuple of one int, the window size.
        strides: An int or a tuple of one int; None (the default) means ``pool_size``.
        padding: 'valid' (no padding) or 'same' (output size ``ceil(n / strides)``, the odd
            padding cell at the end), any case.
        data_format: 'channels_last' or 'channels_first'. The default is
            'channels_last' under Keras 2 semantics and ``image_data_format()`` for
            Keras 3; None means ``image_data_format()``.

    Input shape:
        channels_last ``(batch, steps, features)``,
        channels_first ``(batch, features, steps)``.

    Output shape:
        channels_last ``(batch, pooled_steps, features)``,
        channels_first ``(batch, features, pooled_steps)``.
    """

    rank = 1
    mode = "average"

    def __init__(
        self,
        pool_size: Any = 2,
        strides: Any = None,
        padding: str = "valid",
        data_format: Any = SEQUENCE_DEFAULT,
        **kwargs: Any,
    ) -> None:
        super().__init__(pool_size, strides, padding, data_format, **kwargs)
