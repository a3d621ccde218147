"""Reshaping layers. Flatten, Reshape, Permute and RepeatVector take their output shapes
from layers/shapes.py; padding, cropping and upsampling work in the layer's own layout
(no transposes) with the rules of layers/reshaping/reshaping_shapes.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from layerserve.export.builder import GraphBuilder, Value, onnx_type
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers import shapes
from layerserve.layers.reshaping import (
    Cropping1D,
    Cropping2D,
    Cropping3D,
    Flatten,
    Permute,
    RepeatVector,
    Reshape,
    UpSampling1D,
    UpSampling2D,
    UpSampling3D,
    ZeroPadding1D,
    ZeroPadding2D,
    ZeroPadding3D,
)
from layerserve.layers.reshaping.base_up_sampling import BaseUpSampling
from layerserve.layers.reshaping.reshaping_shapes import spatial_axes

INT64_MAX = int(np.iinfo(np.int64).max)


@converter(Flatten)
def convert_flatten(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    source = x.name
    if layer.data_format == "channels_first" and x.rank > 2:
        source = builder.op(
            "Transpose",
            [source],
            f"{layer.name}_to_channels_last",
            perm=list(shapes.channels_last_permutation(x.rank)),
        )
    return Converted([builder.op("Flatten", [source], layer.name, axis=1)])


@converter(Reshape)
def convert_reshape(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    target = conversion.output_shapes[0][1:]
    if all(d is not None for d in target) and math.prod(target) > 0:
        # Every sample size is known: -1 stands for the batch, which then may be 0 too.
        shape = [-1, *target]
    else:
        shape = [0, *layer.target_shape]
    shape_name = builder.int64s(shape, f"{layer.name}_shape")
    return Converted([builder.op("Reshape", [conversion.inputs[0].name, shape_name], layer.name)])


@converter(Permute)
def convert_permute(conversion: Conversion) -> Converted:
    layer = conversion.layer
    return Converted(
        [
            conversion.builder.op(
                "Transpose", [conversion.inputs[0].name], layer.name, perm=[0, *layer.dims]
            )
        ]
    )


@converter(RepeatVector)
def convert_repeat_vector(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    axes = builder.int64s([1], f"{layer.name}_axes")
    expanded = builder.op("Unsqueeze", [conversion.inputs[0].name, axes], f"{layer.name}_unsqueeze")
    repeats = builder.int64s([1, layer.n, 1], f"{layer.name}_repeats")
    return Converted([builder.op("Tile", [expanded, repeats], layer.name)])


@converter(ZeroPadding1D, ZeroPadding2D, ZeroPadding3D)
def convert_zero_padding(conversion: Conversion) -> Converted:
    """``Pad`` (constant zeros); the pads are an input, ``[begins..., ends...]`` over
    every axis of the actual layout."""
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    begins = _full_rank(x.rank, layer.data_format, [before for before, _ in layer.padding], 0)
    ends = _full_rank(x.rank, layer.data_format, [after for _, after in layer.padding], 0)
    pads = begins + ends
    pads_name = builder.int64s(pads, f"{layer.name}_pads")
    return Converted([builder.op("Pad", [x.name, pads_name], layer.name, mode="constant")])


@converter(Cropping1D, Cropping2D, Cropping3D)
def convert_cropping(conversion: Conversion) -> Converted:
    """``Slice`` with ends counted from the end (``-after``, or INT64_MAX for 0), so that
    unknown spatial sizes work too."""
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    starts = [before for before, _ in layer.cropping]
    ends = [-after if after else INT64_MAX for _, after in layer.cropping]
    inputs = [
        x.name,
        builder.int64s(starts, f"{layer.name}_starts"),
        builder.int64s(ends, f"{layer.name}_ends"),
        builder.int64s(spatial_axes(x.rank, layer.data_format), f"{layer.name}_axes"),
    ]
    return Converted([builder.op("Slice", inputs, layer.name)])


@converter(UpSampling1D, UpSampling2D, UpSampling3D)
def convert_up_sampling(conversion: Conversion) -> Converted:
    """``Resize`` with constant scales on the spatial axes of the actual layout: nearest
    with ``asymmetric`` + ``floor`` (src = floor(dst / f), an exact repeat), bilinear with
    the layer's coordinate mode, computed in float32 as the reference does. onnxruntime's
    Resize takes few dtypes; other nearest inputs repeat by Unsqueeze/Expand/Reshape."""
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    out_dtype = conversion.output_dtypes[0]
    bilinear = getattr(layer, "interpolation", "nearest") == "bilinear"
    if not bilinear and x.dtype != "float32":
        return Converted([_repeat(builder, layer, x, conversion.output_shapes[0])])
    source = x.name
    if x.dtype != "float32":
        source = builder.op("Cast", [source], f"{layer.name}_to_float", to=onnx_type("float32"))
    scales = np.asarray(_full_rank(x.rank, layer.data_format, layer.size, 1), dtype=np.float32)
    attributes = (
        {"mode": "linear", "coordinate_transformation_mode": layer.coordinates}
        if bilinear
        else {
            "mode": "nearest",
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor",
        }
    )
    scales_name = builder.constant(scales, f"{layer.name}_scales")
    cast_back = out_dtype != "float32"
    name = f"{layer.name}_resize" if cast_back else layer.name
    y = builder.op("Resize", [source, "", scales_name], name, **attributes)
    if cast_back:
        y = builder.op("Cast", [y], layer.name, to=onnx_type(out_dtype))
    return Converted([y])


def _repeat(builder: GraphBuilder, layer: BaseUpSampling, x: Value, out_shape: tuple) -> str:
    """Nearest upsampling for any dtype: a new axis of size 1 after each spatial axis,
    expanded to the factor, then merged into the spatial axis."""
    axes = spatial_axes(x.rank, layer.data_format)
    new_axes = [axis + i + 1 for i, axis in enumerate(axes)]
    expand = [1] * (x.rank + len(axes))
    for position, factor in zip(new_axes, layer.size, strict=True):
        expand[position] = factor
    unsqueezed = builder.op(
        "Unsqueeze",
        [x.name, builder.int64s(new_axes, f"{layer.name}_new_axes")],
        f"{layer.name}_unsqueeze",
    )
    expanded = builder.op(
        "Expand",
        [unsqueezed, builder.int64s(expand, f"{layer.name}_repeats")],
        f"{layer.name}_expand",
    )
    if all(d is not None for d in out_shape[1:]):
        # -1 stands for the batch, which then may be 0 too.
        target = builder.int64s([-1, *out_shape[1:]], f"{layer.name}_shape")
    else:
        factors = _full_rank(x.rank, layer.data_format, layer.size, 1)
        shape = builder.op("Shape", [x.name], f"{layer.name}_input_shape")
        target = builder.op(
            "Mul", [shape, builder.int64s(factors, f"{layer.name}_factors")], f"{layer.name}_shape"
        )
    return builder.reshape_to(expanded, target, layer.name)


def _full_rank(rank: int, data_format: str, values: Any, fill: int) -> list[int]:
    """One entry per axis: ``values`` on the spatial axes, ``fill`` elsewhere."""
    out = [fill] * rank
    for axis, value in zip(spatial_axes(rank, data_format), values, strict=True):
        out[axis] = value
    return out
