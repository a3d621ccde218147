"""RMSNormalization (Keras 3): ``x / sqrt(mean(x^2) + epsilon) * scale``."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import initializers
from layerserve.errors import ShapeError
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.normalization import normalization_shapes as rules
from layerserve.layers.normalization.normalization_utils import epsilon_value


def rms_normalize(
    x: np.ndarray, axes: tuple[int, ...], epsilon: float, scale: np.ndarray
) -> np.ndarray:
    """No centring. ``scale`` multiplies with NumPy broadcasting, as Keras multiplies it
    (aligned on the last axes, not on ``axes``)."""
    mean_square = np.mean(np.square(x), axis=axes, keepdims=True)
    y = x / np.sqrt(mean_square + x.dtype.type(epsilon))
    return (y * scale).astype(x.dtype, copy=False)


def scale_broadcasts(input_shape: tuple, scale_shape: tuple[int, ...]) -> bool:
    """Whether ``scale`` multiplies the input without changing its shape (sizes aligned on
    the last axes; an unknown input size is taken to match)."""
    aligned = input_shape[len(input_shape) - len(scale_shape) :]
    return all(s == 1 or d is None or d == s for d, s in zip(aligned, scale_shape, strict=True))


class RMSNormalization(Layer):
    """Root-mean-square normalization (Keras 3.9+); no mean is subtracted.

    Args:
        axis: An int or a list of ints: the axes of the mean of squares.
        epsilon: Added to the mean of squares. Defaults to 1e-6.

    The weight ``scale`` spans the sizes of the (sorted) axes and multiplies the result
    with plain broadcasting, aligned on the input's last axes as Keras aligns it (so with
    a non-trailing ``axis`` it may scale another axis, exactly as Keras does).

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    casts_inputs = True

    def __init__(self, axis: Any = -1, epsilon: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        layer = type(self).__name__
        self.axis = rules.validate_axis(axis, layer)
        self.epsilon = epsilon_value(epsilon, layer)

    def build(self, input_shape: tuple) -> None:
        rank = len(input_shape)
        self.axes = rules.resolve_axes(self.axis, rank, self.name)
        stored = rules.weight_axes(self.axis, rank, self.name, keras3=True)
        shape = rules.defined_sizes(input_shape, stored, self.name)
        if not scale_broadcasts(tuple(input_shape), shape):
            raise ShapeError(
                f"{self.name}: the weight `scale` of shape {shape} (the sizes of axis "
                f"{self.axis}) does not broadcast against the input's last axes, so Keras "
                f"cannot apply it. Received: input_shape={tuple(input_shape)}"
            )
        self.scale = self.add_weight("scale", shape, initializers.get("ones"))
        self.input_spec = InputSpec(ndim=rank, axes={a: input_shape[a] for a in self.axes})

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        return rms_normalize(inputs, self.axes, self.epsilon, self.scale.value)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return rules.normalization_output_shape(input_shape, self.axis, self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}
