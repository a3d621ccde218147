"""Conv3D: 3-D cross-correlation with strides, padding, dilation, groups and data_format."""

from __future__ import annotations

from layerserve.layers.convolutional.base_conv import BaseConv


class Conv3D(BaseConv):
    """3-D convolution: cross-correlation (no kernel flip), bias, activation.

    Args:
        filters: number of output channels.
        kernel_size: int or 3-tuple, the window size.
        strides: int or 3-tuple (> 1 excludes dilation_rate > 1).
        padding: "valid" or "same" (TF's rule: the odd extra zero goes after).
        data_format: "channels_last" or "channels_first" (default: the global setting).
        dilation_rate: int or 3-tuple.
        activation, use_bias, kernel_*/bias_* options, activity_regularizer: as Dense.
        groups: splits the channels into groups convolved separately.

    Input shape:
        ``(batch, d1, d2, d3, channels)`` or ``(batch, channels, d1, d2, d3)`` (channels_first).

    Output shape:
        ``(batch, new_d1, new_d2, new_d3, filters)`` or
        ``(batch, filters, new_d1, new_d2, new_d3)``.
    """

    rank = 3
