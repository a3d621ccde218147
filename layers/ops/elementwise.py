"""Comparisons and logical operations (the ops Keras 3 builds masks with)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from layerserve.errors import DTypeError, received
from layerserve.layers.ops.base import KerasOp
from layerserve.layers.shapes import broadcast_shapes
from layerserve.layers.tensor import Shape


def _shape(value: Any) -> Shape:
    return tuple(value) if isinstance(value, tuple) else ()


def _constant_dtype(value: Any) -> np.dtype:
    """What Keras makes of a constant list (``convert_to_tensor``): a strongly typed
    tensor, float32 for floats, int32 for integers."""
    array = np.asarray(value)
    if array.dtype.kind == "f":
        return np.dtype("float32")
    if array.dtype.kind in "iu":
        return np.dtype("int32")
    return array.dtype


def _refuse(name: str, reason: str, value: Any, dtype: np.dtype) -> DTypeError:
    return DTypeError(
        f"Operation {name!r}: {reason}, and the Keras backends compare it differently (JAX "
        "in the tensor's dtype, TensorFlow in a wider one). Expected a constant that the "
        "tensor's dtype holds exactly. " + received("constant", value) + f" ({dtype} tensor)"
    )


def comparison_dtype(name: str, x1: Any, x2: Any) -> np.dtype:
    """The dtype Keras 3 compares ``x1`` and ``x2`` in, each a tensor's dtype
    (``np.dtype``) or a constant from the config.

    Keras promotes by its own lattice, on JAX and TensorFlow alike: an integer tensor
    against a float one compares in the float's dtype (float32, where NumPy would widen
    to float64 and tell ``2**24 + 1`` from ``2**24``); a Python number takes the tensor's
    dtype, an integer tensor against a Python float compares in float32. Where the two
    backends part (an integer constant out of the tensor's range: JAX wraps it; a float
    constant that float16 does not hold: JAX rounds it), the comparison is refused.
    """
    tensors = [v for v in (x1, x2) if isinstance(v, np.dtype)]
    scalars = [v for v in (x1, x2) if not isinstance(v, np.dtype) and np.ndim(v) == 0]
    lists = [_constant_dtype(v) for v in (x1, x2) if not isinstance(v, np.dtype) and np.ndim(v)]
    tensors += lists
    if not tensors:
        return np.result_type(x1, x2)
    if len(tensors) == 2:
        a, b = tensors
        if (a.kind == "f") != (b.kind == "f"):
            return a if a.kind == "f" else b
        return np.promote_types(a, b)
    (dtype,) = tensors
    (value,) = scalars
    if isinstance(value, (bool, np.bool_)):
        return np.result_type(dtype, value)
    if dtype.kind in "biu" and isinstance(value, (float, np.floating)):
        return np.dtype("float32")
    if dtype.kind == "b":
        return np.result_type(dtype, value)
    if dtype.kind in "iu":
        limits = np.iinfo(dtype)
        if not limits.min <= value <= limits.max:
            raise _refuse(name, f"the constant {value} is out of {dtype}'s range", value, dtype)
        return dtype
    if dtype == np.float16 and isinstance(value, (float, np.floating)):
        with np.errstate(over="ignore"):
            held = float(np.float16(value))
        if held != float(value):
            raise _refuse(name, f"float16 does not hold the constant {value}", value, dtype)
    return dtype


def as_operand(value: Any, dtype: np.dtype) -> np.ndarray:
    """``value`` (an array or a constant) in ``dtype``, the comparison's."""
    with np.errstate(over="ignore"):  # 70000 in float16 is inf in Keras too
        return np.asarray(value).astype(dtype, copy=False)


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


class ComparisonOp(BinaryOp):
    """A comparison, made in the dtype Keras compares its operands in
    (:func:`comparison_dtype`)."""

    def check_dtypes(self, x1: Any, x2: Any) -> None:
        comparison_dtype(self.name, x1, x2)

    def compute(self, x1: Any, x2: Any) -> np.ndarray:
        kinds = [v.dtype if isinstance(v, np.ndarray) else v for v in (x1, x2)]
        dtype = comparison_dtype(self.name, *kinds)
        return type(self).function(as_operand(x1, dtype), as_operand(x2, dtype))


class NotEqualOp(ComparisonOp):
    """``keras.ops.not_equal``."""

    function = np.not_equal


class EqualOp(ComparisonOp):
    """``keras.ops.equal``."""

    function = np.equal


class GreaterOp(ComparisonOp):
    """``keras.ops.greater``."""

    function = np.greater


class GreaterEqualOp(ComparisonOp):
    """``keras.ops.greater_equal``."""

    function = np.greater_equal


class LessOp(ComparisonOp):
    """``keras.ops.less``."""

    function = np.less


class LessEqualOp(ComparisonOp):
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
