"""Conv1DTranspose: the 1-D transposed convolution (deconvolution)."""

from __future__ import annotations

from layerserve.layers.convolutional.base_conv_transpose import BaseConvTranspose


class Conv1DTranspose(BaseConvTranspose):
    """Transposed 1-D convolution; the output size follows Keras's ``deconv_output_length``.

    Args:
        filters: number of output channels.
        kernel_size: int or 1-tuple.
        strides: int or 1-tuple (> 1 excludes dilation_rate > 1).
        padding: "valid" or "same".
        output_padding: None (inferred size) or int / 1-tuple, each below its stride.
        data_format: "channels_last" or "channels_first" (default: the global setting).
        dilation_rate: int or 1-tuple.
        activation, use_bias, kernel_*/bias_* options, activity_regularizer: as Dense.
        groups: written by tf.keras; must be 1.

    Input shape:
        ``(batch, steps, channels)`` or ``(batch, channels, steps)`` (channels_first).

    Output shape:
        ``(batch, new_steps, filters)`` or ``(batch, filters, new_steps)``.
    """

    rank = 1
