"""GlobalMaxPooling3D: the maximum over the spatial axes of 3D data."""

from __future__ import annotations

from typing import Any

from layerserve.layers.pooling.base_global_pooling import BaseGlobalPooling


class GlobalMaxPooling3D(BaseGlobalPooling):
    """Global max pooling operation for 3D data.

    A mask reaching this layer is dropped (Keras 3 warns, tf.keras says nothing) or, in
    Keras 2.2/2.3, refused.

    Args:
        data_format: 'channels_last' or 'channels_first'; None means
            ``image_data_format()``.
        keepdims: Keep the pooled axes, with length 1.

    Input shape:
        channels_last ``(batch, dim1, dim2, dim3, channels)``,
        channels_first ``(batch, channels, dim1, dim2, dim3)``.

    Output shape:
        ``(batch, channels)``; with ``keepdims``, channels_last ``(batch, 1, 1, 1, channels)``,
        channels_first ``(batch, channels, 1, 1, 1)``.
    """

    rank = 3
    mode = "max"

    def __init__(self, data_format: Any = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(data_format, keepdims, **kwargs)
