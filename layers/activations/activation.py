"""Activation: applies an activation function element-wise."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve.errors import ShapeError, received
from layerserve.layers.activations.activation_arguments import own_semantics
from layerserve.layers.base import Layer


def activation_output_shape(input_shape: tuple, activation: Any) -> tuple:
    """The input shape, except for ``glu``, which halves the last axis. (Keras reports
    the input shape for glu too, though the tensor it returns has half the size.)"""
    if activation is not activations.glu:
        return tuple(input_shape)
    size = input_shape[-1] if input_shape else None
    if size is not None and size % 2:
        raise ShapeError(
            "glu splits the last axis into two halves, so its size must be even. "
            + received("input_shape", tuple(input_shape))
        )
    return (*input_shape[:-1], None if size is None else size // 2)


class Activation(Layer):
    """Applies an activation function, given by name, config or callable.

    Names mean what they meant in the Keras version that wrote the file
    (``layerserve.activations``).

    Args:
        activation: The activation: a name (``"relu"``), a serialized function or
            activation layer, or a callable.

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input (the last axis halved for ``glu``).
    """

    supports_masking = True

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        # "linear" is the identity in every backend, whatever the dtype
        self.float_inputs_only = activations.serialize(self.activation) != "linear"

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        with own_semantics(self):
            return self.activation(inputs)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return activation_output_shape(input_shape, self.activation)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": activations.serialize(self.activation)}
