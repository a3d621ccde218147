"""The N-d depthwise convolution: each input channel convolved with its own
``depth_multiplier`` filters; output channel ``c * depth_multiplier + m``."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.convolutional import conv_shapes
from layerserve.layers.convolutional.base_conv import ConvLayer, conv_forward
from layerserve.layers.convolutional.conv_utils import (
    check_strides_dilation,
    tf_keras_neutral_groups,
)
from layerserve.layers.weight_options import (
    add_owned_weight,
    positive_int,
    set_weight_options,
)


def depthwise_forward(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: tuple[int, ...],
    pads: list[tuple[int, int]],
    dilation: tuple[int, ...],
) -> np.ndarray:
    """``kernel (*k, C, dm)``: a grouped convolution with one group per input channel,
    whose ``(*k, 1, C*dm)`` kernel lists the filters of channel c at ``c*dm .. c*dm+dm-1``."""
    *taps, channels, multiplier = kernel.shape
    grouped = kernel.reshape(*taps, 1, channels * multiplier)
    return conv_forward(x, grouped, strides, pads, dilation, groups=channels)


def keras2_strides_dilation(layer: ConvLayer) -> None:
    """tf.keras and Keras 2.2 refuse strides > 1 with dilation_rate > 1 for depthwise and
    separable convolutions too; Keras 3 computes them (JAX and torch backends)."""
    if layer.keras_version < (3, 0, 0):
        check_strides_dilation(layer.strides, layer.dilation_rate)


class BaseDepthwiseConv(ConvLayer):
    """Depthwise convolution. The kernel is ``(*kernel_size, in_channels,
    depth_multiplier)``, named ``kernel`` by Keras 3 and ``depthwise_kernel`` by Keras 2."""

    _WEIGHTS = ("depthwise", "bias")

    def __init__(
        self,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate: Any = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        bias_constraint: Any = None,
        groups: Any = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            activity_regularizer,
            **kwargs,
        )
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier")
        tf_keras_neutral_groups(type(self).__name__, groups)
        keras2_strides_dilation(self)
        set_weight_options(
            self,
            depthwise_initializer=depthwise_initializer,
            bias_initializer=bias_initializer,
            depthwise_regularizer=depthwise_regularizer,
            bias_regularizer=bias_regularizer,
            depthwise_constraint=depthwise_constraint,
            bias_constraint=bias_constraint,
        )

    def build(self, input_shape: tuple) -> None:
        channels = self._input_channels(input_shape)
        self.compute_output_shape(input_shape)
        self.depthwise_kernel = self.add_weight(
            "kernel" if self.keras_version >= (3, 0, 0) else "depthwise_kernel",
            (*self.kernel_size, channels, self.depth_multiplier),
            self.depthwise_initializer,
            self.depthwise_regularizer,
            self.depthwise_constraint,
        )
        if self.use_bias:
            self.bias = add_owned_weight(self, "bias", (channels * self.depth_multiplier,))

    def _forward(self, x: np.ndarray) -> np.ndarray:
        pads = self._pads(x.shape[1:-1])
        return depthwise_forward(
            x, self.depthwise_kernel.value, self.strides, pads, self.dilation_rate
        )

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        channels = conv_shapes.channel_dim(input_shape, self.data_format)
        return conv_shapes.conv_output_shape(
            type(self).__name__,
            input_shape,
            None if channels is None else channels * self.depth_multiplier,
            self.kernel_size,
            self.strides,
            self.padding,
            self.dilation_rate,
            self.data_format,
        )

    def get_config(self) -> dict[str, Any]:
        layout = self._layout_config()
        return {
            **super().get_config(),
            **{k: layout[k] for k in ("kernel_size", "strides", "padding")},
            "depth_multiplier": self.depth_multiplier,
            **{k: layout[k] for k in ("data_format", "dilation_rate")},
            **self._weights_config(self._WEIGHTS),
        }
