"""DepthwiseConv1D: one 1-D filter bank per input channel."""

from __future__ import annotations

from layerserve.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv


class DepthwiseConv1D(BaseDepthwiseConv):
    """Depthwise 1-D convolution; the kernel is ``kernel`` (Keras 3) or ``depthwise_kernel``.

    Args:
        kernel_size: int or 1-tuple.
        strides: int or 1-tuple.
        padding: "valid" or "same".
        depth_multiplier: output channels per input channel; channel ``c*dm + m``.
        data_format: "channels_last" or "channels_first" (default: the global setting).
        dilation_rate: int or 1-tuple (Keras 2 refuses it with strides > 1; Keras 3 allows both).
        activation, use_bias, depthwise_*/bias_* options, activity_regularizer: as Dense.
        groups: written by tf.keras; must be 1.

    Input shape:
        ``(batch, steps, channels)`` or ``(batch, channels, steps)`` (channels_first).

    Output shape:
        ``(batch, new_steps, channels * depth_multiplier)`` or
        ``(batch, channels * depth_multiplier, new_steps)``.
    """

    rank = 1
