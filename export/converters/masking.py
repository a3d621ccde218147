"""Masking: the mask ``any(x != mask_value, axis=-1)`` and the zeroed values."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.export.builder import onnx_type
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.core.masking import Masking


@converter(Masking)
def convert_masking(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    value = builder.constant(np.asarray(layer.mask_value, dtype=x.dtype), f"{layer.name}_value")
    equal = builder.op("Equal", [x.name, value], f"{layer.name}_equal")
    differs = builder.op("Not", [equal], f"{layer.name}_differs")
    keep = _any_last_axis(builder, differs, x, layer.name)
    if layer.keras_version >= (3, 0, 0):
        zero = builder.constant(np.zeros((), dtype=x.dtype), f"{layer.name}_zero")
        out = builder.op("Where", [keep, x.name, zero], layer.name)
    else:  # Keras 2 multiplies by the 0/1 mask
        factor = builder.op("Cast", [keep], f"{layer.name}_factor", to=onnx_type(x.dtype))
        out = builder.op("Mul", [x.name, factor], layer.name)
    squeeze_axes = builder.int64s([-1], f"{layer.name}_squeeze_axes")  # (N, T, 1) -> (N, T)
    mask = builder.op("Squeeze", [keep, squeeze_axes], f"{layer.name}_mask")
    return Converted([out], masks=[mask])


def _any_last_axis(builder: Any, flags: str, x: Any, name: str) -> str:
    """``any(flags, axis=-1, keepdims=True)``. onnxruntime's reductions return the
    unreduced input when it is empty, so with a known feature count the flags are
    counted with a MatMul (exact in float32 below 2**24 features) instead."""
    features = x.shape[-1]
    counts = builder.op(
        "Cast",
        [flags],
        f"{name}_differs_count",
        to=onnx_type("float32" if features is not None else "int32"),
    )
    if features is not None:
        ones = builder.constant(np.ones((features, 1), dtype=np.float32), f"{name}_ones")
        total = builder.op("MatMul", [counts, ones], f"{name}_count")
        zero = builder.constant(np.zeros((), dtype=np.float32), f"{name}_zero_count")
        return builder.op("Greater", [total, zero], f"{name}_keep")
    axes = builder.int64s([-1], f"{name}_axes")
    reduced = builder.op(
        "ReduceMax",
        [counts, axes] if builder.opset >= 18 else [counts],
        f"{name}_any",
        keepdims=1,
        axes=None if builder.opset >= 18 else [-1],
    )
    return builder.op("Cast", [reduced], f"{name}_keep", to=onnx_type("bool"))
