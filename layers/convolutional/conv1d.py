"""Conv1D: temporal convolution, with 'causal' padding."""

from __future__ import annotations

from typing import Any

from layerserve.errors import ConfigError, received
from layerserve.layers.convolutional.base_conv import BaseConv
from layerserve.serialization import semantics_version


class Conv1D(BaseConv):
    """1-D convolution (temporal convolution), optionally causal, dilated and grouped.

    Args:
        filters: number of output channels.
        kernel_size: int or 1-tuple, the window length.
        strides: int or 1-tuple (> 1 excludes dilation_rate > 1).
        padding: "valid", "same" or "causal" (left-pad by ``dilation_rate * (k - 1)``).
        data_format: "channels_last" or "channels_first". Keras 2 defaults to
            "channels_last"; Keras 3 to the global image data format.
        dilation_rate: int or 1-tuple.
        activation, use_bias, kernel_*/bias_* options, activity_regularizer: as Dense.
        groups: splits the channels into groups convolved separately.

    Input shape:
        ``(batch, steps, channels)`` or ``(batch, channels, steps)`` (channels_first).

    Output shape:
        ``(batch, new_steps, filters)`` or ``(batch, filters, new_steps)``.
    """

    rank = 1

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        groups: Any = 1,
        **kwargs: Any,
    ) -> None:
        version = semantics_version()
        if data_format is None and version < (3, 0, 0):
            data_format = "channels_last"  # Keras 2's Conv1D ignores the global format
        super().__init__(
            filters,
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            activity_regularizer,
            kernel_constraint,
            bias_constraint,
            groups,
            **kwargs,
        )
        if self.padding == "causal" and self.data_format != "channels_last" and version < (2, 4):
            raise ConfigError(
                "When using causal padding in `Conv1D` (Keras 2.2), `data_format` must be "
                '"channels_last" (temporal data). ' + received("data_format", data_format)
            )

    def _allows_causal(self) -> bool:
        return True
