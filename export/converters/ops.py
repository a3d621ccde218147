"""Keras 3 operations recorded in functional configs (the ops that compute masks)."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import numpy_helper

from layerserve.export.builder import GraphBuilder, Value, onnx_type
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.ops import (
    AllOp,
    AnyOp,
    BooleanReduction,
    KerasOp,
)
from layerserve.layers.ops.base import fill
from layerserve.layers.ops.elementwise import (
    EqualOp,
    GreaterEqualOp,
    GreaterOp,
    LessEqualOp,
    LessOp,
    LogicalAndOp,
    LogicalNotOp,
    LogicalOrOp,
    LogicalXorOp,
    NotEqualOp,
    as_operand,
    comparison_dtype,
)
from layerserve.layers.ops.shaping import (
    CastOp,
    ConcatenateOp,
    ConvertToTensorOp,
    ExpandDimsOp,
    OnesLikeOp,
    SqueezeOp,
    ZerosLikeOp,
    check_one_dtype,
)

_COMPARISON_OPS = {
    EqualOp: "Equal",
    NotEqualOp: "Equal",  # then Not
    GreaterOp: "Greater",
    GreaterEqualOp: "GreaterOrEqual",
    LessOp: "Less",
    LessEqualOp: "LessOrEqual",
}
_LOGICAL_OPS = {LogicalAndOp: "And", LogicalOrOp: "Or", LogicalXorOp: "Xor"}


def _arguments(conversion: Conversion) -> list[Any]:
    layer: KerasOp = conversion.layer
    return fill(layer._template(len(conversion.inputs)), list(conversion.inputs))


def _along_batch(conversion: Conversion, axes: list[int], rank: int) -> None:
    """An operation along axis 0 (a reduction, a concatenation, a new or removed axis
    there) mixes the rows of a batch: the exporter records it, and the service never
    merges requests for the model (a row's answer would depend on other clients' rows,
    which a probe with random values may not show: ``any(x == 0, axis=0)``)."""
    if any(axis % max(rank, 1) == 0 for axis in axes):
        conversion.builder.batch_coupled.append(conversion.layer.name)


def _as_bool(builder: GraphBuilder, value: Value, name: str) -> str:
    if value.dtype == "bool":
        return value.name
    return builder.op("Cast", [value.name], f"{name}_bool", to=onnx_type("bool"))


@converter(*_COMPARISON_OPS)
def convert_comparison(conversion: Conversion) -> Converted:
    """Both sides in the dtype Keras compares them in (the reference's rule)."""
    layer, builder = conversion.layer, conversion.builder
    x1, x2 = _arguments(conversion)
    kinds = [np.dtype(v.dtype) if isinstance(v, Value) else v for v in (x1, x2)]
    common = comparison_dtype(layer.name, *kinds)
    names = [_operand(builder, v, common, f"{layer.name}_{i}") for i, v in enumerate((x1, x2))]
    op = _COMPARISON_OPS[type(layer)]
    if isinstance(layer, NotEqualOp):
        equal = builder.op(op, names, f"{layer.name}_equal")
        return Converted([builder.op("Not", [equal], layer.name)])
    return Converted([builder.op(op, names, layer.name)])


def _operand(builder: GraphBuilder, value: Any, dtype: np.dtype, name: str) -> str:
    if not isinstance(value, Value):
        return builder.constant(as_operand(value, dtype), f"{name}_constant")
    if np.dtype(value.dtype) == dtype:
        return value.name
    return builder.op("Cast", [value.name], f"{name}_cast", to=onnx_type(dtype))


@converter(*_LOGICAL_OPS)
def convert_logical(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    operands = []
    for index, value in enumerate(_arguments(conversion)):
        if isinstance(value, Value):
            operands.append(_as_bool(builder, value, f"{layer.name}_{index}"))
        else:
            operands.append(builder.constant(np.asarray(value, dtype=bool), f"{layer.name}_c"))
    return Converted([builder.op(_LOGICAL_OPS[type(layer)], operands, layer.name)])


@converter(LogicalNotOp)
def convert_logical_not(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    (x,) = _arguments(conversion)
    return Converted([builder.op("Not", [_as_bool(builder, x, layer.name)], layer.name)])


@converter(AnyOp, AllOp)
def convert_boolean_reduction(conversion: Conversion) -> Converted:
    """any = ReduceMax, all = ReduceMin over 0/1 values (onnxruntime reduces no bools):
    each value is first made a bool (non-zero: true, as Keras reads 0.5 or -3), then 0/1."""
    layer: BooleanReduction = conversion.layer
    builder = conversion.builder
    (x,) = _arguments(conversion)
    axes = list(layer.axes(x.rank))
    _along_batch(conversion, axes, x.rank)
    if not axes:
        return Converted([_as_bool(builder, x, layer.name)])
    truth = _as_bool(builder, x, layer.name)
    flags = builder.op("Cast", [truth], f"{layer.name}_flags", to=onnx_type("int32"))
    op = "ReduceMax" if isinstance(layer, AnyOp) else "ReduceMin"
    keepdims = int(layer.keepdims)
    if builder.opset >= 18:
        axes_name = builder.int64s(axes, f"{layer.name}_axes")
        reduced = builder.op(op, [flags, axes_name], f"{layer.name}_reduced", keepdims=keepdims)
    else:
        reduced = builder.op(op, [flags], f"{layer.name}_reduced", keepdims=keepdims, axes=axes)
    return Converted([builder.op("Cast", [reduced], layer.name, to=onnx_type("bool"))])


@converter(ExpandDimsOp)
def convert_expand_dims(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    (x,) = _arguments(conversion)
    new = list(layer.new_axes(x.rank))
    _along_batch(conversion, new, x.rank + len(new))
    axes = builder.int64s(new, f"{layer.name}_axes")
    return Converted([builder.op("Unsqueeze", [x.name, axes], layer.name)])


@converter(SqueezeOp)
def convert_squeeze(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    (x,) = _arguments(conversion)
    squeezed = list(layer.squeezed(x.shape))
    _along_batch(conversion, squeezed, x.rank)
    axes = builder.int64s(squeezed, f"{layer.name}_axes")
    return Converted([builder.op("Squeeze", [x.name, axes], layer.name)])


@converter(ConcatenateOp)
def convert_concatenate(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    (values,) = _arguments(conversion)
    check_one_dtype(layer.name, [str(np.dtype(v.dtype)) for v in values])
    _along_batch(conversion, [layer.axis], values[0].rank)
    return Converted([builder.op("Concat", [v.name for v in values], layer.name, axis=layer.axis)])


@converter(ZerosLikeOp, OnesLikeOp)
def convert_filled(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    (x,) = _arguments(conversion)
    dtype = layer.output_dtype(x.dtype)
    shape = builder.op("Shape", [x.name], f"{layer.name}_shape")
    value = np.full((1,), layer.value, dtype=dtype)
    return Converted(
        [
            builder.op(
                "ConstantOfShape",
                [shape],
                layer.name,
                value=numpy_helper.from_array(value, f"{layer.name}_value"),
            )
        ]
    )


def _kept_mask(conversion: Conversion) -> list[str | None]:
    """The input's mask, where the operation's output keeps it (the same tensor in Keras)."""
    (mask,) = conversion.previous_masks or [None]
    dtype = str(np.dtype(conversion.inputs[0].dtype))
    return [mask.name if mask is not None and conversion.layer.passes_mask(dtype) else None]


@converter(CastOp)
def convert_cast(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    (x,) = _arguments(conversion)
    y = builder.op("Cast", [x.name], layer.name, to=onnx_type(layer.cast_dtype))
    return Converted([y], masks=_kept_mask(conversion))


@converter(ConvertToTensorOp)
def convert_convert_to_tensor(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    (x,) = _arguments(conversion)
    if layer.convert_dtype is None or layer.convert_dtype == x.dtype:
        return Converted([x.name], masks=_kept_mask(conversion))  # the same values
    return Converted(
        [builder.op("Cast", [x.name], layer.name, to=onnx_type(layer.convert_dtype))],
        masks=[None],
    )
