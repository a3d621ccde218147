"""Conv2D: ONNX Conv (NCHW, OIHW kernel), with transposes around it for channels_last."""

from __future__ import annotations

import numpy as np

from layerserve.export.activations import emit_activation
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers import shapes
from layerserve.layers.convolutional.conv2d import Conv2D


@converter(Conv2D)
def convert_conv2d(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    channels_last = layer.data_format == "channels_last"
    source = x.name
    if channels_last:
        source = builder.op("Transpose", [source], f"{layer.name}_to_nchw", perm=[0, 3, 1, 2])
    spatial = x.shape[1:3] if channels_last else x.shape[2:4]
    kernel = builder.constant(
        np.transpose(layer.kernel.value, (3, 2, 0, 1)), f"{layer.name}_kernel"
    )
    inputs = [source, kernel]
    if layer.bias is not None:
        inputs.append(builder.constant(layer.bias.value, f"{layer.name}_bias"))
    y = builder.op(
        "Conv",
        inputs,
        f"{layer.name}_conv",
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
        dilations=list(layer.dilation_rate),
        **_padding(layer, spatial),
    )
    if channels_last:
        y = builder.op("Transpose", [y], f"{layer.name}_to_nhwc", perm=[0, 2, 3, 1])
    out = emit_activation(builder, layer.activation, conversion.value(y), layer.name)
    return Converted([out])


def _padding(layer: Conv2D, spatial: tuple) -> dict:
    if layer.padding == "valid":
        return {"pads": [0, 0, 0, 0]}
    if any(d is None for d in spatial):
        return {"auto_pad": "SAME_UPPER"}  # TF's SAME: the odd cell goes after
    (top, bottom), (left, right) = (
        shapes.same_padding(
            spatial[i], layer.kernel_size[i], layer.strides[i], layer.dilation_rate[i]
        )
        for i in range(2)
    )
    return {"pads": [top, left, bottom, right]}
