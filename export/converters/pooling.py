"""Pooling: ONNX MaxPool/AveragePool in NC... layout, and global pools as reductions.

Windowed pools use explicit pads (TF's SAME: the odd cell at the end), ``ceil_mode=0``
and, for averages, ``count_include_pad=0`` so that a window is divided by its real cells.
Where a SAME pad depends on an unknown length, onnxruntime's ``auto_pad="SAME_UPPER"``
is used only where it equals TF's rule: it does not clamp the total pad at zero, so with
a stride larger than the pool it fails (MaxPool) or averages wrongly (AveragePool, opset
19+) for some lengths. Those cases are refused.
"""

from __future__ import annotations

import math

import numpy as np

from layerserve.errors import NotSupportedError
from layerserve.export.builder import GraphBuilder, Value, onnx_type
from layerserve.export.checks import require_nonempty
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers import shapes
from layerserve.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
    pooling_shapes,
)
from layerserve.layers.pooling.base_global_pooling import BaseGlobalPooling
from layerserve.layers.pooling.base_pooling import BasePooling
from layerserve.layers.pooling.pooling_utils import require_float


@converter(
    MaxPooling1D, MaxPooling2D, MaxPooling3D, AveragePooling1D, AveragePooling2D, AveragePooling3D
)
def convert_pooling(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    require_float(layer, x.dtype)
    channels_last = layer.data_format == "channels_last"
    source = x.name
    if channels_last:
        perm = list(pooling_shapes.to_channels_first(x.rank))
        source = builder.op("Transpose", [source], f"{layer.name}_to_nc", perm=perm)
    spatial = tuple(x.shape[i] for i in pooling_shapes.spatial_axes(x.rank, layer.data_format))
    average = layer.mode == "average"
    if average:
        conversion.require_float32("AveragePool")
    y = builder.op(
        "AveragePool" if average else "MaxPool",
        [source],
        f"{layer.name}_pool" if channels_last else layer.name,
        kernel_shape=list(layer.pool_size),
        strides=list(layer.strides),
        ceil_mode=0,
        count_include_pad=0 if average else None,
        **_pool_padding(layer, spatial),
    )
    if channels_last:
        perm = list(shapes.channels_last_permutation(x.rank))
        y = builder.op("Transpose", [y], layer.name, perm=perm)
    return Converted([y])


def _pool_padding(layer: BasePooling, spatial: tuple[int | None, ...]) -> dict:
    axes = list(zip(spatial, layer.pool_size, layer.strides, strict=True))
    pads = [pooling_shapes.pool_pads(n, k, s, layer.padding) for n, k, s in axes]
    if all(p is not None for p in pads):
        return {"pads": [p[0] for p in pads] + [p[1] for p in pads]}
    if all(_same_upper_is_exact(n, k, s) for n, k, s in axes):
        return {"auto_pad": "SAME_UPPER"}
    raise NotSupportedError(
        f"{type(layer).__name__} {layer.name!r}: padding='same' with a stride larger than "
        "the pool along an axis of unknown length needs pads that depend on the length, "
        "which an ONNX pool cannot express. Give the input a fixed size, or use "
        f"strides <= pool_size. Received: pool_size={layer.pool_size}, "
        f"strides={layer.strides}, spatial_shape={spatial}"
    )


def _same_upper_is_exact(length: int | None, pool: int, stride: int) -> bool:
    """onnxruntime's SAME_UPPER total is ``(ceil(n/s)-1)*s + k - n`` without TF's clamp at
    zero; it is never negative when ``s <= k``."""
    if stride <= pool:
        return True
    return length is not None and (math.ceil(length / stride) - 1) * stride + pool >= length


@converter(
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
)
def convert_global_pooling(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    require_float(layer, x.dtype)
    axes = list(layer.axes)
    mask = conversion.masks[0] if conversion.masks else None
    if mask is not None and isinstance(layer, GlobalAveragePooling1D) and layer.supports_masking:
        y = _masked_mean(builder, layer, x, mask)
    elif layer.mode == "max":
        source = x.name
        if layer.refuses_empty_axes:
            source = require_nonempty(builder, x, axes, layer.name, "needs_a_step")
        y = _reduce(builder, "ReduceMax", source, axes, layer.keepdims, layer.name)
    elif all(x.shape[a] is not None for a in axes):
        y = _reduce(builder, "ReduceMean", x.name, axes, layer.keepdims, layer.name)
    else:
        y = _dynamic_mean(builder, layer, x, axes)
    return Converted([y], masks=[None])


def _dynamic_mean(builder: GraphBuilder, layer: BaseGlobalPooling, x: Value, axes: list) -> str:
    """Sum / count with the count read from the shape: onnxruntime's ReduceMean over an
    empty axis gives 0 where Keras (TensorFlow, JAX) gives NaN."""
    total = _reduce(builder, "ReduceSum", x.name, axes, layer.keepdims, f"{layer.name}_sum")
    shape = builder.op("Shape", [x.name], f"{layer.name}_shape")
    index = builder.int64s(axes[0] if len(axes) == 1 else axes, f"{layer.name}_spatial_axes")
    sizes = builder.op("Gather", [shape, index], f"{layer.name}_spatial_sizes", axis=0)
    count = builder.op("Cast", [sizes], f"{layer.name}_count", to=onnx_type(x.dtype))
    if len(axes) > 1:
        count = builder.op("ReduceProd", [count], f"{layer.name}_cells", keepdims=0)
    return builder.op("Div", [total, count], layer.name)


def _masked_mean(
    builder: GraphBuilder, layer: GlobalAveragePooling1D, x: Value, mask: Value
) -> str:
    """``ReduceSum(x*m) / ReduceSum(m)`` over the steps; Keras 3 selects with Where
    (NaN at masked steps does not leak), Keras 2 multiplies by the mask."""
    name = layer.name
    layer.check_mask(x.shape, mask.shape)
    steps_axis = layer.axes[0]
    expand_axis = builder.int64s([3 - steps_axis], f"{name}_mask_axis")
    expanded = builder.op("Unsqueeze", [mask.name, expand_axis], f"{name}_mask_expanded")
    if layer.zeroes_masked_steps:
        keep = expanded
        if mask.dtype != "bool":
            keep = builder.op("Cast", [expanded], f"{name}_keep", to=onnx_type("bool"))
        weights = builder.op("Cast", [keep], f"{name}_weights", to=onnx_type(x.dtype))
        zero = builder.constant(np.zeros((), dtype=x.dtype), f"{name}_zero")
        values = builder.op("Where", [keep, x.name, zero], f"{name}_kept")
    else:
        weights = builder.op("Cast", [expanded], f"{name}_weights", to=onnx_type(x.dtype))
        values = builder.op("Mul", [x.name, weights], f"{name}_kept")
    total = _reduce(builder, "ReduceSum", values, [steps_axis], layer.keepdims, f"{name}_sum")
    count = _reduce(builder, "ReduceSum", weights, [steps_axis], layer.keepdims, f"{name}_count")
    return builder.op("Div", [total, count], name)


def _reduce(
    builder: GraphBuilder, op: str, source: str, axes: list[int], keepdims: bool, name: str
) -> str:
    """``axes`` is an input from opset 18 (ReduceSum: 13), an attribute before."""
    as_input = builder.opset >= (13 if op == "ReduceSum" else 18)
    inputs = [source, builder.int64s(axes, f"{name}_axes")] if as_input else [source]
    return builder.op(
        op, inputs, name, keepdims=int(keepdims), axes=None if as_input else list(axes)
    )
