"""The global pools (GlobalMax/AveragePooling1D/2D/3D): bookkeeping and the NumPy reference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from layerserve.errors import ShapeError, received
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.pooling import pooling_shapes
from layerserve.layers.pooling.pooling_utils import (
    normalize_keepdims,
    require_float,
    resolve_data_format,
)


def global_pool(x: np.ndarray, axes: tuple[int, ...], keepdims: bool, mode: str) -> np.ndarray:
    """Max or mean over ``axes``. Over an empty axis (a length-0 sequence at run time) the
    max is -inf and the mean 0/0 = NaN, as TensorFlow's reductions give (a Keras 3 layer
    refuses the max: see ``BaseGlobalPooling.refuses_empty_axes``)."""
    if mode == "max":
        return np.max(x, axis=axes, keepdims=keepdims, initial=-np.inf).astype(x.dtype)
    count = x.dtype.type(math.prod(x.shape[a] for a in axes))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(x, axis=axes, keepdims=keepdims) / count


class BaseGlobalPooling(Layer):
    """Max or mean over every spatial axis of a rank ``rank + 2`` input (see the subclasses)."""

    rank = 2
    mode = "max"

    def __init__(self, data_format: Any = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = resolve_data_format(data_format, self.keras_version)
        self.keepdims = normalize_keepdims(keepdims)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    @property
    def axes(self) -> tuple[int, ...]:
        return pooling_shapes.spatial_axes(self.rank + 2, self.data_format)

    def build(self, input_shape: Any) -> None:
        pooling_shapes.check_reduction_axes(input_shape, self.data_format)
        self.built = True

    @property
    def refuses_empty_axes(self) -> bool:
        """Keras 3 fails to take a maximum over no steps (Keras 2 answers -inf)."""
        return self.mode == "max" and self.keras_version >= (3, 0, 0)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        require_float(self, inputs.dtype)
        if self.refuses_empty_axes and any(inputs.shape[a] == 0 for a in self.axes):
            raise ShapeError(
                f"{type(self).__name__} {self.name} expects at least one step on every pooled "
                "axis, as Keras 3 does (Keras 2 answers -inf). "
                + received("input shape", inputs.shape)
            )
        return global_pool(inputs, self.axes, self.keepdims, self.mode)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return pooling_shapes.global_pool_output_shape(input_shape, self.data_format, self.keepdims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}
