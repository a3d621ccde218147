"""Comparisons and logical operations (the ops Keras 3 builds masks with)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from layerserve.layers.ops.base import KerasOp
from layerserve.layers.shapes import broadcast_shapes
from layerserve.layers.tensor import Shape


def _shape(value: Any) -> Shape:
    return tuple(value) if isinstance(value, tuple) else ()


class BinaryOp(KerasOp):
    """``function(x1, x2)`` elementwise, with NumPy broadcasting; either argument may be
    a constant. The result is boolean."""

    function: ClassVar[Any]

    def compute(self, x1: Any, x2: Any) -> np.ndarray:
        return type(self).function(x1, x2)

    def output_shape_of(self, x1: Any, x2: Any) -> Shape:
        return broadcast_shapes([_shape(x1), _shape(x2)], type(self).__name__)

    def output_dtype(self, input_dtype: str) -> str:
        return "bool"


class NotEqualOp(BinaryOp):
    """``keras.ops.not_equal``."""

    function = np.not_equal


class EqualOp(BinaryOp):
    """``keras.ops.equal``."""

    function = np.equal


class GreaterOp(BinaryOp):
    """``keras.ops.greater``."""

    function = np.greater


class GreaterEqualOp(BinaryOp):
    """``keras.ops.greater_equal``."""

    function = np.greater_equal


class LessOp(BinaryOp):
    """``keras.ops.less``."""

    function = np.less


class LessEqualOp(BinaryOp):
    """``keras.ops.less_equal``."""

    function = np.less_equal


class LogicalAndOp(BinaryOp):
    """``keras.ops.logical_and`` (inputs read as booleans)."""

    function = np.logical_and


class LogicalOrOp(BinaryOp):
    """``keras.ops.logical_or`` (inputs read as booleans)."""

    function = np.logical_or


class LogicalXorOp(BinaryOp):
    """``keras.ops.logical_xor`` (inputs read as booleans)."""

    function = np.logical_xor


class LogicalNotOp(KerasOp):
    """``keras.ops.logical_not``."""

    def compute(self, x: np.ndarray) -> np.ndarray:
        return np.logical_not(x)

    def output_shape_of(self, x: Shape) -> Shape:
        return tuple(x)

    def output_dtype(self, input_dtype: str) -> str:
        return "bool"


COMPARISONS = (NotEqualOp, EqualOp, GreaterOp, GreaterEqualOp, LessOp, LessEqualOp)
LOGICAL = (LogicalAndOp, LogicalOrOp, LogicalXorOp)
