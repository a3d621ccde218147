"""DepthwiseConv2D: one 2-D filter bank per input channel."""

from __future__ import annotations

from layerserve.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv


class DepthwiseConv2D(BaseDepthwiseConv):
    """Depthwise 2-D convolution; the kernel is ``kernel`` (Keras 3) or ``depthwise_kernel``.

    Args:
        kernel_size: int or 2-tuple.
        strides: int or 2-tuple.
        padding: "valid" or "same".
        depth_multiplier: output channels per input channel; channel ``c*dm + m``.
        data_format: "channels_last" or "channels_first" (default: the global setting).
        dilation_rate: int or 2-tuple (Keras 2 refuses it with strides > 1; Keras 3 allows both).
        activation, use_bias, depthwise_*/bias_* options, activity_regularizer: as Dense.
        groups: written by tf.keras; must be 1.

    Input shape:
        ``(batch, rows, cols, channels)`` or ``(batch, channels, rows, cols)`` (channels_first).

    Output shape:
        ``(batch, new_rows, new_cols, channels * depth_multiplier)`` or
        ``(batch, channels * depth_multiplier, new_rows, new_cols)``.
    """

    rank = 2
