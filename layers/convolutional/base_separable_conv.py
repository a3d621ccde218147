"""The N-d separable convolution: a depthwise convolution (the layer's strides, padding
and dilation, no bias), then a 1x1 pointwise convolution, then bias and activation."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.convolutional import conv_shapes
from layerserve.layers.convolutional.base_conv import ConvLayer
from layerserve.layers.convolutional.base_depthwise_conv import (
    depthwise_forward,
    keras2_strides_dilation,
)
from layerserve.layers.convolutional.conv_utils import tf_keras_neutral_groups
from layerserve.layers.weight_options import (
    add_owned_weight,
    positive_int,
    set_weight_options,
)
from layerserve.serialization import serialize

# tf.keras's SeparableConv configs also carry the unused Conv ``kernel_*`` options.
_UNUSED_KERNEL_OPTIONS = ("kernel_initializer", "kernel_regularizer", "kernel_constraint")


class BaseSeparableConv(ConvLayer):
    """Separable convolution. Weights: ``depthwise_kernel (*kernel_size, in_channels,
    depth_multiplier)``, ``pointwise_kernel (1, ..., in_channels * depth_multiplier,
    filters)`` and ``bias (filters,)``."""

    _WEIGHTS = ("depthwise", "pointwise", "bias")

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = 1,
        depth_multiplier: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        pointwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        pointwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        pointwise_constraint: Any = None,
        bias_constraint: Any = None,
        groups: Any = 1,
        kernel_initializer: Any = None,
        kernel_regularizer: Any = None,
        kernel_constraint: Any = None,
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
        self.filters = positive_int(filters, "filters")
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier")
        tf_keras_neutral_groups(type(self).__name__, groups)
        keras2_strides_dilation(self)
        set_weight_options(
            self,
            depthwise_initializer=depthwise_initializer,
            pointwise_initializer=pointwise_initializer,
            bias_initializer=bias_initializer,
            depthwise_regularizer=depthwise_regularizer,
            pointwise_regularizer=pointwise_regularizer,
            bias_regularizer=bias_regularizer,
            depthwise_constraint=depthwise_constraint,
            pointwise_constraint=pointwise_constraint,
            bias_constraint=bias_constraint,
            # Kept (validated) for the round trip; no kernel of this layer uses them.
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            kernel_constraint=kernel_constraint,
        )

    def build(self, input_shape: tuple) -> None:
        channels = self._input_channels(input_shape)
        self.compute_output_shape(input_shape)
        self.depthwise_kernel = add_owned_weight(
            self, "depthwise_kernel", (*self.kernel_size, channels, self.depth_multiplier)
        )
        self.pointwise_kernel = add_owned_weight(
            self,
            "pointwise_kernel",
            ((1,) * self.rank) + (channels * self.depth_multiplier, self.filters),
        )
        if self.use_bias:
            self.bias = add_owned_weight(self, "bias", (self.filters,))

    def _forward(self, x: np.ndarray) -> np.ndarray:
        pads = self._pads(x.shape[1:-1])
        depthwise = depthwise_forward(
            x, self.depthwise_kernel.value, self.strides, pads, self.dilation_rate
        )
        pointwise = self.pointwise_kernel.value
        return np.matmul(depthwise, pointwise.reshape(pointwise.shape[-2:]))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return conv_shapes.conv_output_shape(
            type(self).__name__,
            input_shape,
            self.filters,
            self.kernel_size,
            self.strides,
            self.padding,
            self.dilation_rate,
            self.data_format,
        )

    def get_config(self) -> dict[str, Any]:
        unused = {
            key: serialize(getattr(self, key))
            for key in _UNUSED_KERNEL_OPTIONS
            if getattr(self, key) is not None
        }
        return {
            **super().get_config(),
            "filters": self.filters,
            **self._layout_config(),
            "depth_multiplier": self.depth_multiplier,
            **self._weights_config(self._WEIGHTS),
            **unused,
        }
