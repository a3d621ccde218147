"""GlobalMaxPooling1D: the maximum over the steps axis of temporal data."""

from __future__ import annotations

from typing import Any

from layerserve.layers.pooling.base_global_pooling import BaseGlobalPooling
from layerserve.layers.pooling.pooling_utils import SEQUENCE_DEFAULT


class GlobalMaxPooling1D(BaseGlobalPooling):
    """Global max pooling operation for temporal data.

    A mask reaching this layer is dropped (Keras 3 warns, tf.keras says nothing) or, in
    Keras 2.2/2.3, refused.

    Args:
        data_format: 'channels_last' or 'channels_first'. The default is
            'channels_last' under Keras 2 semantics and ``image_data_format()`` for
            Keras 3; None means ``image_data_format()``.
        keepdims: Keep the pooled axis, with length 1.

    Input shape:
        channels_last ``(batch, steps, features)``,
        channels_first ``(batch, features, steps)``.

    Output shape:
        ``(batch, features)``; with ``keepdims``, channels_last ``(batch, 1, features)``,
        channels_first ``(batch, features, 1)``.
    """

    rank = 1
    mode = "max"

    def __init__(
        self, data_format: Any = SEQUENCE_DEFAULT, keepdims: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(data_format, keepdims, **kwargs)
