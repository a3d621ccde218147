"""SeparableConv1D: depthwise then pointwise 1-D convolution."""

from __future__ import annotations

from layerserve.layers.convolutional.base_separable_conv import BaseSeparableConv


class SeparableConv1D(BaseSeparableConv):
    """Depthwise separable 1-D convolution: depthwise step, 1x1 pointwise step, bias, activation.

    Args:
        filters: number of output channels of the pointwise step.
        kernel_size: int or 1-tuple, the depthwise window size.
        strides: int or 1-tuple.
        padding: "valid" or "same" or, in Keras 2 files, "causal".
        data_format: "channels_last" or "channels_first" (default: the global setting).
        dilation_rate: int or 1-tuple (Keras 2 refuses it with strides > 1; Keras 3 allows both).
        depth_multiplier: depthwise output channels per input channel.
        activation, use_bias: applied after the pointwise step (no bias in between).
        depthwise_*/pointwise_*/bias_* options, activity_regularizer: kept, unused at inference.
        groups, kernel_*: written by tf.keras; groups must be 1, kernel_* are kept unused.

    Input shape:
        ``(batch, steps, channels)`` or ``(batch, channels, steps)`` (channels_first).

    Output shape:
        ``(batch, new_steps, filters)`` or ``(batch, filters, new_steps)``.
    """

    rank = 1

    def _allows_causal(self) -> bool:
        # tf.keras computes causal SeparableConv1D (left padding); Keras 3 refuses it.
        return self.keras_version < (3, 0, 0)
