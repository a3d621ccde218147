"""Dense: ``activation(dot(x, kernel) + bias)`` on the last axis."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve.layers import shapes
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.weight_options import (
    add_owned_weight,
    positive_int,
    set_weight_options,
    weight_options_config,
)
from layerserve.serialization import serialize


def dense_forward(
    x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, activation: Any
) -> np.ndarray:
    """The reference math: a matmul over the last axis at every leading position."""
    y = np.matmul(x, kernel)
    if bias is not None:
        y = y + bias
    return activation(y)


_WEIGHTS = ("kernel", "bias")


class Dense(Layer):
    """Densely connected layer. Input ``(N, ..., input_dim)``, output ``(N, ..., units)``.

    On inputs of rank > 2 the kernel applies to the last axis only, as Keras computes it.
    """

    supports_masking = True
    casts_inputs = True

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        input_dim: int | None = None,
        **kwargs: Any,
    ) -> None:
        if input_dim is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = (input_dim,)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = positive_int(units, "units")
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
        self.input_spec = InputSpec(min_ndim=2)

    def build(self, input_shape: tuple) -> None:
        shapes.dense_output_shape(input_shape, self.units)
        input_dim = input_shape[-1]
        self.kernel = add_owned_weight(self, "kernel", (input_dim, self.units))
        self.bias = add_owned_weight(self, "bias", (self.units,)) if self.use_bias else None
        self.input_spec = InputSpec(min_ndim=2, axes={-1: input_dim})

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        bias = self.bias.value if self.bias is not None else None
        return dense_forward(inputs, self.kernel.value, bias, self.activation)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return shapes.dense_output_shape(input_shape, self.units)

    def _owns_activity_regularizer(self) -> bool:
        return True

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **weight_options_config(self, _WEIGHTS, "initializer"),
            **weight_options_config(self, _WEIGHTS, "regularizer"),
            "activity_regularizer": serialize(self.activity_regularizer),
            **weight_options_config(self, _WEIGHTS, "constraint"),
        }
