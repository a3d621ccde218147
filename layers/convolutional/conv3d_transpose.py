"""Conv3DTranspose: the 3-D transposed convolution (deconvolution)."""

from __future__ import annotations

from layerserve.layers.convolutional.base_conv_transpose import BaseConvTranspose


class Conv3DTranspose(BaseConvTranspose):
    """Transposed 3-D convolution; the output size follows Keras's ``deconv_output_length``.

    Args:
        filters: number of output channels.
        kernel_size: int or 3-tuple.
        strides: int or 3-tuple (> 1 excludes dilation_rate > 1).
        padding: "valid" or "same".
        output_padding: None (inferred size) or int / 3-tuple, each below its stride.
        data_format: "channels_last" or "channels_first" (default: the global setting).
        dilation_rate: int or 3-tuple (Keras 2 ignores it here, so layerserve refuses
            values > 1 in Keras 2 semantics).
        activation, use_bias, kernel_*/bias_* options, activity_regularizer: as Dense.
        groups: written by tf.keras; must be 1.

    Input shape:
        ``(batch, d1, d2, d3, channels)`` or ``(batch, channels, d1, d2, d3)`` (channels_first).

    Output shape:
        ``(batch, new_d1, new_d2, new_d3, filters)`` or
        ``(batch, filters, new_d1, new_d2, new_d3)``.
    """

    rank = 3
    keras2_ignores_dilation = True
