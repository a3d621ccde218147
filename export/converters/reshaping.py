"""Flatten, Reshape, Permute and RepeatVector; output shapes come from layers/shapes.py."""

from __future__ import annotations

import math

from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers import shapes
from layerserve.layers.reshaping.flatten import Flatten
from layerserve.layers.reshaping.permute import Permute
from layerserve.layers.reshaping.repeat_vector import RepeatVector
from layerserve.layers.reshaping.reshape import Reshape


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
