"""The N-d convolution machinery: the NumPy reference, the argument bookkeeping shared by
every convolution layer (``ConvLayer``) and the plain convolution (``BaseConv``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve._config import normalize_data_format
from layerserve.errors import ConfigError, ShapeError
from layerserve.layers.base import Layer
from layerserve.layers.convolutional import conv_shapes
from layerserve.layers.convolutional.conv_utils import (
    check_strides_dilation,
    normalize_padding,
    normalize_tuple,
)
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.weight_options import (
    add_owned_weight,
    positive_int,
    set_weight_options,
    weight_options_config,
)
from layerserve.serialization import serialize


def conv_forward(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: tuple[int, ...],
    pads: list[tuple[int, int]],
    dilation: tuple[int, ...],
    groups: int = 1,
) -> np.ndarray:
    """Grouped cross-correlation. ``x`` is channels-last ``(N, *spatial, C)``, ``kernel``
    ``(*k, C/groups, F)``; output channel f reads the input channels of group
    ``f // (F/groups)``. Sums one strided window per kernel tap."""
    x = np.pad(x, ((0, 0), *pads, (0, 0)))
    taps, (c_group, filters) = kernel.shape[:-2], kernel.shape[-2:]
    f_group = filters // groups
    out_sizes = [
        (x.shape[1 + i] - (k - 1) * d - 1) // s + 1
        for i, (k, s, d) in enumerate(zip(taps, strides, dilation, strict=True))
    ]
    out = np.zeros((x.shape[0], *out_sizes, groups, f_group), dtype=x.dtype)
    for tap in np.ndindex(*taps):
        window = x[
            (
                slice(None),
                *(
                    slice(t * d, t * d + s * (o - 1) + 1, s)
                    for t, d, s, o in zip(tap, dilation, strides, out_sizes, strict=True)
                ),
            )
        ]
        window = window.reshape(*window.shape[:-1], groups, c_group)
        weights = kernel[tap].reshape(c_group, groups, f_group)
        out += np.einsum("...gc,cgf->...gf", window, weights)
    return out.reshape(*out.shape[:-2], filters)


class ConvLayer(Layer):
    """Bookkeeping common to Conv, SeparableConv, DepthwiseConv and ConvTranspose:
    tuple arguments, padding, data format, the channels-last working layout, bias and
    activation. Subclasses set ``rank`` and implement ``_forward`` on channels-last data."""

    casts_inputs = True
    rank = 2
    empty_channels_allowed = False  # the transposed convolutions answer their bias (Keras 3)

    def __init__(
        self,
        kernel_size: Any,
        strides: Any,
        padding: str,
        data_format: str | None,
        dilation_rate: Any,
        activation: Any,
        use_bias: bool,
        activity_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        name = type(self).__name__
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size")
        self.strides = normalize_tuple(strides, self.rank, "strides")
        self.padding = normalize_padding(padding, self._allows_causal(), name)
        self.data_format = normalize_data_format(data_format)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate")
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias = None
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _allows_causal(self) -> bool:
        return False

    @property
    def channel_axis(self) -> int:
        return 1 if self.data_format == "channels_first" else -1

    def _input_channels(self, input_shape: tuple) -> int:
        channels = input_shape[self.channel_axis]
        if channels is None:
            raise ShapeError(
                "The channel dimension of the inputs should be defined. Found `None`. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        if channels == 0 and not self.empty_channels_allowed:
            # Keras 3 fails when such a layer is called, tf.keras when it is built: a
            # kernel over no channels would answer its bias alone
            raise ShapeError(
                f"{type(self).__name__} {self.name} expects at least one input channel. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self.channel_axis: channels})
        return channels

    def _pads(self, spatial: tuple[int, ...]) -> list[tuple[int, int]]:
        return [
            conv_shapes.conv_pads(n, k, self.padding, s, d)
            for n, k, s, d in zip(
                spatial, self.kernel_size, self.strides, self.dilation_rate, strict=True
            )
        ]

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        self.compute_output_shape(tuple(inputs.shape))  # raises when the input is too small
        channels_first = self.data_format == "channels_first"
        x = np.moveaxis(inputs, 1, -1) if channels_first else inputs
        y = self._forward(x)
        if self.bias is not None:
            y = y + self.bias.value
        # The activation sees the layer's own layout (softmax's last axis differs).
        y = np.moveaxis(y, -1, 1) if channels_first else y
        return self.activation(y)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _owns_activity_regularizer(self) -> bool:
        return True

    def _layout_config(self) -> dict[str, Any]:
        return {
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate),
        }

    def _weights_config(self, weights: tuple[str, ...]) -> dict[str, Any]:
        return {
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **weight_options_config(self, weights, "initializer"),
            **weight_options_config(self, weights, "regularizer"),
            "activity_regularizer": serialize(self.activity_regularizer),
            **weight_options_config(self, weights, "constraint"),
        }


def groups_value(groups: Any, filters: int) -> int:
    """``groups`` (tf.keras writes None for 1) must divide ``filters``."""
    groups = 1 if groups is None else positive_int(groups, "groups")
    if filters % groups:
        raise ConfigError(
            "The number of filters must be evenly divisible by the number of groups. "
            f"Received: groups={groups}, filters={filters}"
        )
    return groups


class BaseConv(ConvLayer):
    """N-d convolution. The kernel is ``(*kernel_size, in_channels / groups, filters)``
    in every data format."""

    _WEIGHTS = ("kernel", "bias")

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
        self.groups = groups_value(groups, self.filters)
        check_strides_dilation(self.strides, self.dilation_rate)
        set_weight_options(
            self,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
        )

    def build(self, input_shape: tuple) -> None:
        channels = self._input_channels(input_shape)
        if channels % self.groups:
            raise ShapeError(
                "The number of input channels must be evenly divisible by the number of "
                f"groups. Received: groups={self.groups}, but the input has {channels} "
                f"channels (input_shape={tuple(input_shape)})"
            )
        self.compute_output_shape(input_shape)
        kernel_shape = (*self.kernel_size, channels // self.groups, self.filters)
        self.kernel = add_owned_weight(self, "kernel", kernel_shape)
        self.bias = add_owned_weight(self, "bias", (self.filters,)) if self.use_bias else None

    def _forward(self, x: np.ndarray) -> np.ndarray:
        pads = self._pads(x.shape[1:-1])
        return conv_forward(
            x, self.kernel.value, self.strides, pads, self.dilation_rate, self.groups
        )

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
        groups = {"groups": self.groups} if self.groups != 1 else {}
        return {
            **super().get_config(),
            "filters": self.filters,
            **self._layout_config(),
            **groups,
            **self._weights_config(self._WEIGHTS),
        }
