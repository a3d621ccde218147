"""Merging layers. Lower-rank inputs get ``Unsqueeze`` at axis 1 (Keras's rule), the
element-wise ops chain from the first input (Keras's order), Average divides the sum,
Concatenate is ``Concat`` and Dot one batched ``MatMul`` between Transposes.
Keras >= 3.4's use of masks in the values is ``Where``; output masks are And/Or of the
input masks, or a ``Concat`` of them (no reductions: onnxruntime's misbehave on empty
batches). The rules themselves are in layers/merging/merging_shapes.py."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from layerserve.errors import NotSupportedError
from layerserve.export.builder import GraphBuilder, Value, onnx_type
from layerserve.export.checks import require_equal_sizes
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.merging import (
    Add,
    Average,
    Concatenate,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
)
from layerserve.layers.merging import merging_shapes as ms
from layerserve.layers.merging.base_merge import Merge

_OPS = {
    Add: "Add",
    Subtract: "Sub",
    Multiply: "Mul",
    Average: "Add",
    Maximum: "Max",
    Minimum: "Min",
}


def _refuse(layer: Merge, why: str) -> NotSupportedError:
    return NotSupportedError(f"Layer {layer.name!r} ({type(layer).__name__}): {why}")


def _inputs(conversion: Conversion) -> list[Value]:
    """The inputs, floats already in the layer's dtype (``Merge.call_dtype``, applied to
    every layer's inputs by the exporter); integers mixed with floats are refused."""
    layer, values = conversion.layer, conversion.inputs
    kinds = {np.dtype(v.dtype).kind == "f" for v in values}
    if len(kinds) > 1:
        raise _refuse(layer, "inputs mixing integer and float dtypes cannot be exported.")
    return list(values)


def _masks(conversion: Conversion) -> list[Value | None]:
    """The masks the input tensors carry: a Keras merge reads those (its call takes no
    ``mask``) for its values and its output mask."""
    carried = getattr(conversion, "previous_masks", None)
    return list(conversion.masks if carried is None else carried)


def _unsqueeze(builder: GraphBuilder, name: str, axes: list[int], base: str) -> str:
    return builder.op("Unsqueeze", [name, builder.int64s(axes, f"{base}_axes")], base)


def _squeeze(builder: GraphBuilder, name: str, axes: list[int], base: str) -> str:
    return builder.op("Squeeze", [name, builder.int64s(axes, f"{base}_axes")], base)


def _chain(builder: GraphBuilder, op: str, names: list[str], final: str) -> str:
    """``op`` applied pairwise from the first name on; the last node is named ``final``."""
    out = names[0]
    for index, name in enumerate(names[1:], start=1):
        out = builder.op(op, [out, name], final if index == len(names) - 1 else f"{final}_{op}")
    return out


def _combined_mask(layer: Merge, builder: GraphBuilder, masks: list[Value | None]) -> str | None:
    """The element-wise merges' output mask (merging_masks.combine_masks)."""
    rule = layer.mask_rule
    present = [m for m in masks if m is not None]
    if rule == ms.MASK_DROPPED or not present:
        return None
    if rule == ms.MASK_OR:
        if len(present) < len(masks):
            return None
        if len({m.rank for m in present}) > 1:
            # Keras 3 broadcasts such masks against the batch axis: it fails unless the
            # batch size is 1 or happens to equal a sequence length.
            raise _refuse(
                layer,
                "Keras 3 ORs input masks of different ranks by broadcasting "
                "them against the batch axis; that graph is not exported.",
            )
        return _chain(builder, "Or", [m.name for m in present], f"{layer.name}_mask")
    return _chain(builder, "And", [m.name for m in present], f"{layer.name}_mask")


@converter(Add, Subtract, Multiply, Average, Maximum, Minimum)
def convert_elementwise(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    values, masks = _inputs(conversion), _masks(conversion)
    ranks = [v.rank for v in values]
    rank, name = max(ranks), layer.name
    xs = [
        v.name
        if v.rank == rank
        else _unsqueeze(builder, v.name, list(range(1, 1 + rank - v.rank)), f"{name}_expand")
        for v in values
    ]
    value_masks = [
        None if m is None else _unsqueeze(builder, m.name, [-1], f"{name}_value_mask")
        for m in layer.value_masks(ranks, masks)
    ]
    op = _OPS[_base_class(layer)]
    if isinstance(layer, (Maximum, Minimum)) and any(m is not None for m in value_masks):
        out = _masked_pairwise(builder, op, xs, value_masks, name)
    elif isinstance(layer, Multiply) and any(m is not None for m in value_masks):
        out = _masked_product(builder, xs, value_masks, values[0].dtype, name)
    elif isinstance(layer, Average):
        total = _chain(builder, "Add", xs, f"{name}_sum")
        dtype = values[0].dtype if np.dtype(values[0].dtype).kind == "f" else "float32"
        if dtype != values[0].dtype:
            total = builder.op("Cast", [total], f"{name}_sum_float", to=onnx_type(dtype))
        count = builder.constant(np.asarray(len(xs), dtype=dtype), f"{name}_count")
        out = builder.op("Div", [total, count], name)
    else:
        out = _chain(builder, op, xs, name)
    return Converted([out], masks=[_combined_mask(layer, builder, masks)])


def _base_class(layer: Merge) -> type:
    return next(cls for cls in type(layer).__mro__ if cls in _OPS)


def _masked_pairwise(
    builder: GraphBuilder, op: str, xs: list[str], masks: list[str | None], name: str
) -> str:
    """base_merge.masked_pairwise with Where nodes."""
    output, output_mask = xs[0], masks[0]
    for index, (x, mask) in enumerate(zip(xs[1:], masks[1:], strict=True), start=1):
        if mask is not None:
            x = builder.op("Where", [mask, x, output], f"{name}_take_other")
        if output_mask is not None:
            output = builder.op("Where", [output_mask, output, x], f"{name}_take_input")
        both = mask is not None and output_mask is not None
        output_mask = builder.op("Or", [output_mask, mask], f"{name}_seen") if both else None
        last = index == len(xs) - 1
        output = builder.op(op, [output, x], name if last else f"{name}_{op}")
    return output


def _masked_product(
    builder: GraphBuilder, xs: list[str], masks: list[str | None], dtype: str, name: str
) -> str:
    """Multiply._merge_function with Where nodes: masked positions count as 1, and when
    every input has a mask, positions masked in all of them are 0."""
    one = builder.constant(np.ones((), dtype=dtype), f"{name}_one")
    factors = [
        x if m is None else builder.op("Where", [m, x, one], f"{name}_factor")
        for x, m in zip(xs, masks, strict=True)
    ]
    if any(m is None for m in masks):
        return _chain(builder, "Mul", factors, name)
    product = _chain(builder, "Mul", factors, f"{name}_product")
    seen = _chain(builder, "Or", list(masks), f"{name}_seen")
    zero = builder.constant(np.zeros((), dtype=dtype), f"{name}_zero")
    return builder.op("Where", [seen, product, zero], name)


def _true_like(builder: GraphBuilder, x: Value, name: str) -> str:
    """All-True of ``x``'s shape without its last axis (batch 0 included)."""
    shape = builder.op("Shape", [x.name], f"{name}_shape")
    starts, ends = builder.int64s([0], f"{name}_starts"), builder.int64s([-1], f"{name}_ends")
    leading = builder.op("Slice", [shape, starts, ends], f"{name}_leading")
    true = helper.make_tensor("value", TensorProto.BOOL, [1], [True])
    return builder.op("ConstantOfShape", [leading], f"{name}_true", value=true)


def _concatenate_mask(
    layer: Concatenate, builder: GraphBuilder, values: list[Value], masks: list[Value | None]
) -> str | None:
    """merging_masks.concatenate_mask without its big intermediate: each input's piece,
    reduced over the last axis, is its mask (or all-True), so along the last axis the
    pieces combine with And (Keras 2) / Or (Keras 3), along another axis they concatenate."""
    rule = layer.mask_rule
    if rule == ms.MASK_DROPPED or all(m is None for m in masks):
        return None
    for value, mask in zip(values, masks, strict=True):
        if value.shape[-1] == 0 or (mask is not None and mask.shape != value.shape[:-1]):
            raise _refuse(
                layer,
                "only masks of the input's shape without its last axis, "
                "and inputs with a non-empty last axis, are exported.",
            )
    name = f"{layer.name}_mask"
    axis = ms.concatenate_axis(layer.axis, values[0].rank)
    if axis < values[0].rank - 1:
        pieces = [
            m.name if m is not None else _true_like(builder, v, f"{name}_{i}")
            for i, (v, m) in enumerate(zip(values, masks, strict=True))
        ]
        return builder.op("Concat", pieces, name, axis=axis)
    present = [m.name for m in masks if m is not None]
    if rule == ms.MASK_AND:
        return _chain(builder, "And", present, name)
    if len(present) < len(masks):  # Keras 3: an unmasked input's all-True piece wins
        unmasked = next(v for v, m in zip(values, masks, strict=True) if m is None)
        return _true_like(builder, unmasked, name)
    return _chain(builder, "Or", present, name)


@converter(Concatenate)
def convert_concatenate(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    values = _inputs(conversion)
    axis = ms.concatenate_axis(layer.axis, values[0].rank)
    if axis == 0:
        raise _refuse(
            layer,
            "concatenating along the batch axis (axis=0) is not exported: "
            "the output's batch size would not be the inputs'.",
        )
    names = [v.name for v in values]
    if any(v.shape[a] is None for v in values for a in range(v.rank) if a != axis):
        names.append(require_equal_sizes(builder, values, axis, layer.name))
    out = builder.op("Concat", names, layer.name, axis=axis)
    mask = _concatenate_mask(layer, builder, values, _masks(conversion))
    return Converted([out], masks=[mask])


def _l2_normalize(builder: GraphBuilder, x: Value, axis: int, floor: float, name: str) -> str:
    """``x / max(sqrt(sum(x**2, axis)), floor)``."""
    if builder.opset >= 18:
        squares = builder.op(
            "ReduceSumSquare",
            [x.name, builder.int64s([axis], f"{name}_axes")],
            f"{name}_squares",
            keepdims=1,
        )
    else:
        squares = builder.op(
            "ReduceSumSquare", [x.name], f"{name}_squares", axes=[axis], keepdims=1
        )
    norm = builder.op("Sqrt", [squares], f"{name}_norm")
    floor_name = builder.constant(np.asarray(floor, dtype=x.dtype), f"{name}_floor")
    floored = builder.op("Max", [norm, floor_name], f"{name}_floored")
    return builder.op("Div", [x.name, floored], name)


@converter(Dot)
def convert_dot(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    x, y = _inputs(conversion)
    name = layer.name
    if layer.normalize and np.dtype(x.dtype).kind != "f":  # norms of integers are floats
        x, y = (
            Value(
                builder.op("Cast", [v.name], f"{name}_float", to=onnx_type(layer.dtype)),
                v.shape,
                layer.dtype,
            )
            for v in (x, y)
        )
    a0, a1 = layer.resolved_axes([x.shape, y.shape])
    if layer.normalize:
        x = Value(
            _l2_normalize(builder, x, a0, layer.norm_floor, f"{name}_x_normalized"),
            x.shape,
            x.dtype,
        )
        y = Value(
            _l2_normalize(builder, y, a1, layer.norm_floor, f"{name}_y_normalized"),
            y.shape,
            y.dtype,
        )
    return Converted([_batch_dot(builder, x, y, (a0, a1), name)], masks=[None])


def _transpose(builder: GraphBuilder, name: str, perm: list[int], base: str) -> str:
    if perm == sorted(perm):
        return name
    return builder.op("Transpose", [name], base, perm=perm)


def _batch_dot(builder: GraphBuilder, x: Value, y: Value, axes: tuple[int, int], name: str) -> str:
    """One batched MatMul, without Reshape (unknown sizes stay unknown) and without
    Einsum (onnxruntime's crashes the process on an empty batch): ``x`` as matrices
    ``(X_last, K)`` over batch axes ``(N, X_front..., 1...)``, ``y`` as ``(K, Y_last)``
    over ``(N, 1..., Y_front...)``; then the axes back in Keras's order."""
    a0, a1 = axes
    m, p = max(x.rank - 2, 1), max(y.rank - 2, 1)
    xm = _transpose(
        builder, x.name, [0, *[i for i in range(1, x.rank) if i != a0], a0], f"{name}_x_moved"
    )
    if x.rank == 2:
        xm = _unsqueeze(builder, xm, [1], f"{name}_x_row")
    others = [i for i in range(1, y.rank) if i != a1]
    ym = _transpose(builder, y.name, [0, *others[:-1], a1, *others[-1:]], f"{name}_y_moved")
    if y.rank == 2:
        ym = _unsqueeze(builder, ym, [2], f"{name}_y_column")
    if p > 1:
        xm = _unsqueeze(builder, xm, list(range(m, m + p - 1)), f"{name}_x_broadcast")
    if m > 1:
        ym = _unsqueeze(builder, ym, list(range(1, m)), f"{name}_y_broadcast")
    # (N, X_front..., Y_front..., X_last, Y_last) -> (N, X..., Y...)
    perm = [0, *range(1, m), m + p - 1, *range(m, m + p - 1), m + p]
    squeeze = [1] if x.rank == 2 else [m + p] if y.rank == 2 else None
    last = perm == sorted(perm) and squeeze is None
    product = builder.op("MatMul", [xm, ym], name if last else f"{name}_matmul")
    if perm != sorted(perm):
        product = builder.op(
            "Transpose", [product], name if squeeze is None else f"{name}_t", perm=perm
        )
    if squeeze is not None:  # batch_dot drops the axis a rank-2 input was given
        product = _squeeze(builder, product, squeeze, name)
    return product
