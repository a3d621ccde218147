"""Conv2D: 2-D cross-correlation with strides, padding, dilation and data_format."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve._config import normalize_data_format
from layerserve.errors import ConfigError, NotSupportedError, ShapeError, received
from layerserve.layers import shapes
from layerserve.layers.base import Layer
from layerserve.layers.convolutional.conv_utils import normalize_padding, normalize_tuple
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.weight_options import (
    add_owned_weight,
    positive_int,
    set_weight_options,
    weight_options_config,
)
from layerserve.serialization import serialize


def conv2d_forward(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: tuple[int, int],
    padding: str,
    dilation: tuple[int, int],
) -> np.ndarray:
    """NHWC input, HWIO kernel; sums one strided window per kernel tap."""
    kh, kw = kernel.shape[:2]
    if padding == "same":
        top, bottom = shapes.same_padding(x.shape[1], kh, strides[0], dilation[0])
        left, right = shapes.same_padding(x.shape[2], kw, strides[1], dilation[1])
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out_h = shapes.conv_output_length(x.shape[1], kh, "valid", strides[0], dilation[0])
    out_w = shapes.conv_output_length(x.shape[2], kw, "valid", strides[1], dilation[1])
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(
                i * dilation[0], i * dilation[0] + strides[0] * (out_h - 1) + 1, strides[0]
            )
            cols = slice(
                j * dilation[1], j * dilation[1] + strides[1] * (out_w - 1) + 1, strides[1]
            )
            out += np.matmul(x[:, rows, cols, :], kernel[i, j])
    return out


_WEIGHTS = ("kernel", "bias")


class Conv2D(Layer):
    """2-D convolution. The kernel is ``(kh, kw, in_channels, filters)`` in every format.

    Input ``(N, H, W, C)`` (channels_last) or ``(N, C, H, W)`` (channels_first).
    """

    casts_inputs = True

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = (1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = (1, 1),
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        groups: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if groups != 1:
            raise NotSupportedError(
                "Grouped convolution (groups > 1) is not supported by layerserve. "
                + received("groups", groups)
            )
        self.filters = positive_int(filters, "filters")
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size")
        self.strides = normalize_tuple(strides, 2, "strides")
        self.padding = normalize_padding(padding)
        self.data_format = normalize_data_format(data_format)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ConfigError(
                "`strides > 1` is not compatible with `dilation_rate > 1`. "
                f"Received: strides={self.strides}, "
                f"dilation_rate={self.dilation_rate}"
            )
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        set_weight_options(
            self,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
        )
        self.input_spec = InputSpec(ndim=4)

    @property
    def channel_axis(self) -> int:
        return 1 if self.data_format == "channels_first" else -1

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[self.channel_axis]
        if channels is None:
            raise ShapeError(
                "The channel dimension of the inputs should be defined. Found "
                f"`None`. Received: input_shape={tuple(input_shape)}"
            )
        kernel_shape = (*self.kernel_size, channels, self.filters)
        self.kernel = add_owned_weight(self, "kernel", kernel_shape)
        self.bias = add_owned_weight(self, "bias", (self.filters,)) if self.use_bias else None
        self.input_spec = InputSpec(ndim=4, axes={self.channel_axis: channels})

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        self.compute_output_shape(tuple(inputs.shape))  # raises when the input is too small
        x = np.transpose(inputs, (0, 2, 3, 1)) if self.data_format == "channels_first" else inputs
        y = conv2d_forward(x, self.kernel.value, self.strides, self.padding, self.dilation_rate)
        if self.bias is not None:
            y = y + self.bias.value
        y = self.activation(y)
        return np.transpose(y, (0, 3, 1, 2)) if self.data_format == "channels_first" else y

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return shapes.conv2d_output_shape(
            input_shape,
            self.filters,
            self.kernel_size,
            self.strides,
            self.padding,
            self.dilation_rate,
            self.data_format,
        )

    def _owns_activity_regularizer(self) -> bool:
        return True

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate),
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **weight_options_config(self, _WEIGHTS, "initializer"),
            **weight_options_config(self, _WEIGHTS, "regularizer"),
            "activity_regularizer": serialize(self.activity_regularizer),
            **weight_options_config(self, _WEIGHTS, "constraint"),
        }
