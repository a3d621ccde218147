"""UnitNormalization: ``x`` divided by its L2 norm over ``axis``, floored per Keras version."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.base import Layer
from layerserve.layers.normalization import normalization_shapes as rules


def norm_floor(keras_version: tuple[int, int, int]) -> float:
    """The smallest norm divided by: Keras 3 ``x / max(||x||, 1e-12)``; tf.keras
    (``l2_normalize``) ``x / sqrt(max(sum(x^2), 1e-12))``, i.e. a floor of 1e-6."""
    return 1e-12 if keras_version >= (3, 0, 0) else 1e-6


def unit_normalize(x: np.ndarray, axes: tuple[int, ...], floor: float) -> np.ndarray:
    norm = np.sqrt(np.sum(np.square(x), axis=axes, keepdims=True))
    return (x / np.maximum(norm, x.dtype.type(floor))).astype(x.dtype, copy=False)


class UnitNormalization(Layer):
    """Scales each sample to unit L2 norm over ``axis``.

    Args:
        axis: An int or a list of ints: the axes the norm runs over.

    A zero vector stays zero: the norm is floored (Keras 3: 1e-12; tf.keras: 1e-6),
    so tiny vectors come out differently in the two versions, as in Keras.

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    supports_masking = True
    casts_inputs = True

    def __init__(self, axis: Any = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = rules.validate_axis(axis, type(self).__name__)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        axes = rules.resolve_axes(self.axis, inputs.ndim, self.name)
        return unit_normalize(inputs, axes, norm_floor(self.keras_version))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return rules.normalization_output_shape(input_shape, self.axis, self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}
