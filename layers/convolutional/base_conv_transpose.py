"""The N-d transposed convolution: every input position scatters ``x[i] * K[t]`` to
output position ``i*s + t*d``, then the full result is cropped (or extended) to Keras's
output size (see ``conv_shapes.transpose_crops``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, received
from layerserve.layers.convolutional import conv_shapes
from layerserve.layers.convolutional.base_conv import ConvLayer
from layerserve.layers.convolutional.conv_utils import (
    check_strides_dilation,
    normalize_tuple,
    tf_keras_neutral_groups,
)
from layerserve.layers.weight_options import (
    add_owned_weight,
    positive_int,
    set_weight_options,
)


def conv_transpose_forward(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    crops: list[tuple[int, int, int]],
) -> np.ndarray:
    """``x (N, *n, C)`` channels-last, ``kernel (*k, F, C)`` (no flip). ``crops`` per
    axis: ``(crop_before, crop_after, extend_after)``."""
    taps, filters = kernel.shape[:-2], kernel.shape[-2]
    lengths = x.shape[1:-1]
    full = [
        (n - 1) * s + (k - 1) * d + 1
        for n, k, s, d in zip(lengths, taps, strides, dilation, strict=True)
    ]
    sizes = [f + extend for f, (_, _, extend) in zip(full, crops, strict=True)]
    y = np.zeros((x.shape[0], *sizes, filters), dtype=x.dtype)
    for tap in np.ndindex(*taps):
        target = tuple(
            slice(t * d, t * d + s * (n - 1) + 1, s)
            for t, d, s, n in zip(tap, dilation, strides, lengths, strict=True)
        )
        y[(slice(None), *target)] += np.matmul(x, kernel[tap].T)
    kept = tuple(
        slice(before, size - after) for size, (before, after, _) in zip(sizes, crops, strict=True)
    )
    return y[(slice(None), *kept)]


class BaseConvTranspose(ConvLayer):
    """Transposed convolution. The kernel is ``(*kernel_size, filters, in_channels)``:
    output channels before input channels."""

    empty_channels_allowed = True  # Keras 3 answers the bias, as this does

    _WEIGHTS = ("kernel", "bias")
    # tf.keras and Keras 2.2 accept but ignore dilation_rate in Conv3DTranspose.
    keras2_ignores_dilation = False

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        output_padding: Any = None,
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
        tf_keras_neutral_groups(type(self).__name__, groups)
        check_strides_dilation(self.strides, self.dilation_rate)
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = normalize_tuple(
                output_padding, self.rank, "output_padding", allow_zero=True
            )
            if any(p >= s for p, s in zip(self.output_padding, self.strides, strict=True)):
                raise ConfigError(
                    "Each value of `output_padding` must be strictly less than the "
                    f"corresponding stride. Received: output_padding={self.output_padding}, "
                    f"strides={self.strides}"
                )
        if self.keras2_ignores_dilation and self.keras_version < (3, 0, 0):
            if max(self.dilation_rate) > 1:
                raise NotSupportedError(
                    f"{type(self).__name__} in Keras 2 accepts but ignores `dilation_rate`; "
                    "layerserve refuses it rather than guess. "
                    + received("dilation_rate", dilation_rate)
                )
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
        self.compute_output_shape(input_shape)
        self.kernel = add_owned_weight(self, "kernel", (*self.kernel_size, self.filters, channels))
        if self.use_bias:
            self.bias = add_owned_weight(self, "bias", (self.filters,))

    def crops(self) -> list[tuple[int, int, int]]:
        """Per spatial axis ``(crop_before, crop_after, extend_after)``."""
        pads = self.output_padding or (None,) * self.rank
        return [
            conv_shapes.transpose_crops(k, self.padding, p, s, d)
            for k, p, s, d in zip(
                self.kernel_size, pads, self.strides, self.dilation_rate, strict=True
            )
        ]

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return conv_transpose_forward(
            x, self.kernel.value, self.strides, self.dilation_rate, self.crops()
        )

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return conv_shapes.conv_transpose_output_shape(
            type(self).__name__,
            input_shape,
            self.filters,
            self.kernel_size,
            self.strides,
            self.padding,
            self.output_padding,
            self.dilation_rate,
            self.data_format,
        )

    def get_config(self) -> dict[str, Any]:
        layout = self._layout_config()
        output_padding = None if self.output_padding is None else list(self.output_padding)
        return {
            **super().get_config(),
            "filters": self.filters,
            **{k: layout[k] for k in ("kernel_size", "strides", "padding")},
            "output_padding": output_padding,
            **{k: layout[k] for k in ("data_format", "dilation_rate")},
            **self._weights_config(self._WEIGHTS),
        }
