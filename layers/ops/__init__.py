"""Keras 3 operations recorded in functional model configs (the ops that compute masks).

Their class names end in ``Op`` (``NotEqualOp`` for Keras's ``NotEqual``): Keras's own
names (``Concatenate``, ``Any``) would clash with layer names.
"""

from layerserve.layers.ops.base import KerasOp
from layerserve.layers.ops.elementwise import (
    COMPARISONS,
    LOGICAL,
    BinaryOp,
    LogicalNotOp,
)
from layerserve.layers.ops.reductions import AllOp, AnyOp, BooleanReduction
from layerserve.layers.ops.shaping import (
    CastOp,
    ConcatenateOp,
    ConvertToTensorOp,
    ExpandDimsOp,
    OnesLikeOp,
    SqueezeOp,
    ZerosLikeOp,
)

LAYERS = (
    *COMPARISONS,
    *LOGICAL,
    LogicalNotOp,
    AnyOp,
    AllOp,
    ExpandDimsOp,
    SqueezeOp,
    ConcatenateOp,
    ZerosLikeOp,
    OnesLikeOp,
    CastOp,
    ConvertToTensorOp,
)

__all__ = ["LAYERS", "BinaryOp", "BooleanReduction", "KerasOp"]
