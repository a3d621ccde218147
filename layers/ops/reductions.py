"""``any`` and ``all`` over axes (Keras 3 reduces masks with them)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from layerserve.errors import ConfigError, received
from layerserve.layers.ops.base import KerasOp, normalize_axes
from layerserve.layers.tensor import Shape


class BooleanReduction(KerasOp):
    """Reduces ``x`` (read as booleans) over ``axis`` (None: every axis).

    Args:
        axis: an int, a list of ints or None.
        keepdims: keep the reduced axes with size 1.
    """

    function: ClassVar[Any]

    def __init__(self, axis: Any = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(keepdims, bool):
            raise ConfigError(
                f"{type(self).__name__}: expected `keepdims` to be a bool. "
                + received("keepdims", keepdims)
            )
        self.axis = axis
        self.keepdims = keepdims

    def axes(self, rank: int) -> tuple[int, ...]:
        return normalize_axes(self.axis, rank, type(self).__name__)

    def compute(self, x: np.ndarray) -> np.ndarray:
        axes = self.axes(np.ndim(x))
        return type(self).function(np.asarray(x, dtype=bool), axis=axes, keepdims=self.keepdims)

    def output_shape_of(self, x: Shape) -> Shape:
        axes = self.axes(len(x))
        if self.keepdims:
            return tuple(1 if i in axes else d for i, d in enumerate(x))
        return tuple(d for i, d in enumerate(x) if i not in axes)

    def output_dtype(self, input_dtype: str) -> str:
        return "bool"

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "keepdims": self.keepdims}


class AnyOp(BooleanReduction):
    """``keras.ops.any``."""

    function = np.any


class AllOp(BooleanReduction):
    """``keras.ops.all``."""

    function = np.all
