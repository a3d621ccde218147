"""SeparableConv2D: depthwise then pointwise 2-D convolution."""

from __future__ import annotations

from layerserve.layers.convolutional.base_separable_conv import BaseSeparableConv


class SeparableConv2D(BaseSeparableConv):
    """Depthwise separable 2-D convolution: depthwise step, 1x1 pointwise step, bias, activation.

    Args:
        filters: number of output channels of the pointwise step.
        kernel_size: int or 2-tuple, the depthwise window size.
        strides: int or 2-tuple.
        padding: "valid" or "same".
        data_format: "channels_last" or "channels_first" (default: the global setting).
        dilation_rate: int or 2-tuple (Keras 2 refuses it with strides > 1; Keras 3 allows both).
        depth_multiplier: depthwise output channels per input channel.
        activation, use_bias: applied after the pointwise step (no bias in between).
        depthwise_*/pointwise_*/bias_* options, activity_regularizer: kept, unused at inference.
        groups, kernel_*: written by tf.keras; groups must be 1, kernel_* are kept unused.

    Input shape:
        ``(batch, rows, cols, channels)`` or ``(batch, channels, rows, cols)`` (channels_first).

    Output shape:
        ``(batch, new_rows, new_cols, filters)`` or ``(batch, filters, new_rows, new_cols)``.
    """

    rank = 2
