"""Conv2D: 2-D cross-correlation with strides, padding, dilation, groups and data_format."""

from __future__ import annotations

from layerserve.layers.convolutional.base_conv import BaseConv


class Conv2D(BaseConv):
    """2-D convolution: cross-correlation (no kernel flip), bias, activation.

    Args:
        filters: number of output channels.
        kernel_size: int or 2-tuple, the window size.
        strides: int or 2-tuple (> 1 excludes dilation_rate > 1).
        padding: "valid" or "same" (TF's rule: the odd extra zero goes after).
        data_format: "channels_last" or "channels_first" (default: the global setting).
        dilation_rate: int or 2-tuple.
        activation, use_bias, kernel_*/bias_* options, activity_regularizer: as Dense.
        groups: splits the channels into groups convolved separately.

    Input shape:
        ``(batch, rows, cols, channels)`` or ``(batch, channels, rows, cols)`` (channels_first).

    Output shape:
        ``(batch, new_rows, new_cols, filters)`` or ``(batch, filters, new_rows, new_cols)``.
    """

    rank = 2
