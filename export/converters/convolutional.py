"""Convolutions as ONNX ``Conv`` / ``ConvTranspose`` in the NC... layout.

Kernels are permuted at export time: Conv ``(*k, C/g, F) -> (F, C/g, *k)`` with
``group``; depthwise ``(*k, C, dm) -> (C*dm, 1, *k)`` with ``group=C``; separable is a
depthwise Conv (no bias) then a 1x1 Conv; ConvTranspose ``(*k, F, C) -> (C, F, *k)``.
Padding is explicit (TF's SAME rule, causal left pads, transposed crops); ConvTranspose
never uses ``auto_pad``. channels_last inputs are transposed to NC... and back, with an
elementwise activation before the transpose back so that onnxruntime fuses it into the
Conv, and without a Transpose pair between consecutive channels_last convolutions.
"""

from __future__ import annotations

import numpy as np
import onnx

from layerserve.errors import NotSupportedError
from layerserve.export.activations import emit_activation, is_elementwise
from layerserve.export.builder import GraphBuilder, Value
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.convolutional import (
    Conv1D,
    Conv1DTranspose,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Conv3DTranspose,
    DepthwiseConv1D,
    DepthwiseConv2D,
    SeparableConv1D,
    SeparableConv2D,
    conv_shapes,
)
from layerserve.layers.convolutional.base_conv import ConvLayer

# Activations that read an axis: applied in the layer's own layout, after the transpose.


def _to_nc_perm(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


def _to_channels_last_perm(rank: int) -> list[int]:
    return [0, *range(2, rank), 1]


def _producer(builder: GraphBuilder, name: str) -> onnx.NodeProto | None:
    for node in reversed(builder.nodes):
        if name in node.output:
            return node
    return None


def _nc_input(conversion: Conversion) -> str:
    """The input in NC... layout. A channels_last input that is itself a Transpose of
    an NC... tensor (the previous convolution's output) is read before that Transpose;
    the then unused Transpose is dropped by the graph clean-up."""
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    conversion.require_float32("ConvTranspose" if "Transpose" in type(layer).__name__ else "Conv")
    if layer.data_format == "channels_first":
        return x.name
    producer = _producer(builder, x.name)
    if producer is not None and producer.op_type == "Transpose":
        perm = list(next(a.ints for a in producer.attribute if a.name == "perm"))
        if perm == _to_channels_last_perm(x.rank):
            return producer.input[0]
    return builder.op("Transpose", [x.name], f"{layer.name}_to_nc", perm=_to_nc_perm(x.rank))


def _finish(conversion: Conversion, y: str) -> Converted:
    """Activation and, for channels_last, the transpose back from NC...."""
    layer, builder = conversion.layer, conversion.builder
    out = conversion.value(y)
    if layer.data_format == "channels_first":
        return Converted([emit_activation(builder, layer.activation, out, layer.name)])
    shape = out.shape
    early = is_elementwise(layer.activation)
    if early:
        nc = Value(y, (shape[0], shape[-1], *shape[1:-1]), out.dtype)
        y = emit_activation(builder, layer.activation, nc, f"{layer.name}_activation")
    perm = _to_channels_last_perm(len(shape))
    y = builder.op("Transpose", [y], layer.name, perm=perm)
    if early:
        return Converted([y])
    return Converted([emit_activation(builder, layer.activation, conversion.value(y), layer.name)])


def _spatial(conversion: Conversion) -> tuple[int | None, ...]:
    x = conversion.inputs[0]
    return conv_shapes.spatial_dims(x.shape, conversion.layer.data_format)


def _padding(layer: ConvLayer, spatial: tuple[int | None, ...]) -> dict:
    pads = [
        conv_shapes.conv_pads(n, k, layer.padding, s, d)
        for n, k, s, d in zip(
            spatial, layer.kernel_size, layer.strides, layer.dilation_rate, strict=True
        )
    ]
    if all(p is not None for p in pads):
        return {"pads": [p[0] for p in pads] + [p[1] for p in pads]}
    if max(layer.dilation_rate) > 1:
        # onnxruntime refuses auto_pad SAME_* with dilation; the pads depend on the size.
        raise NotSupportedError(
            f"Layer {layer.name!r} ({type(layer).__name__}): padding='same' with strides "
            f"{layer.strides} and dilation_rate {layer.dilation_rate} needs known spatial "
            f"sizes to export. Received: spatial input sizes {spatial}"
        )
    # Only stride > 1 without dilation reaches here: SAME_UPPER is TF's rule (the odd
    # extra zero after), checked against it for every size.
    return {"auto_pad": "SAME_UPPER"}


def _bias(builder: GraphBuilder, layer: ConvLayer) -> list[str]:
    if layer.bias is None:
        return []
    return [builder.constant(layer.bias.value, f"{layer.name}_bias")]


def _oihw(kernel: np.ndarray) -> np.ndarray:
    """``(*k, in, out) -> (out, in, *k)``, the ONNX weight layout."""
    rank = kernel.ndim - 2
    return np.transpose(kernel, (rank + 1, rank, *range(rank)))


@converter(Conv1D, Conv2D, Conv3D)
def convert_conv(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    source = _nc_input(conversion)
    kernel = builder.constant(_oihw(layer.kernel.value), f"{layer.name}_kernel")
    y = builder.op(
        "Conv",
        [source, kernel, *_bias(builder, layer)],
        f"{layer.name}_conv",
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
        dilations=list(layer.dilation_rate),
        group=layer.groups,
        **_padding(layer, _spatial(conversion)),
    )
    return _finish(conversion, y)


def _depthwise(conversion: Conversion, bias: list[str]) -> str:
    layer, builder = conversion.layer, conversion.builder
    kernel = layer.depthwise_kernel.value
    *taps, channels, multiplier = kernel.shape
    grouped = kernel.reshape(*taps, 1, channels * multiplier)  # channel c*dm + m
    weights = builder.constant(_oihw(grouped), f"{layer.name}_depthwise_kernel")
    return builder.op(
        "Conv",
        [_nc_input(conversion), weights, *bias],
        f"{layer.name}_depthwise",
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
        dilations=list(layer.dilation_rate),
        group=channels,
        **_padding(layer, _spatial(conversion)),
    )


@converter(DepthwiseConv1D, DepthwiseConv2D)
def convert_depthwise_conv(conversion: Conversion) -> Converted:
    return _finish(conversion, _depthwise(conversion, _bias(conversion.builder, conversion.layer)))


@converter(SeparableConv1D, SeparableConv2D)
def convert_separable_conv(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    depthwise = _depthwise(conversion, [])  # no bias between the two steps
    kernel = builder.constant(_oihw(layer.pointwise_kernel.value), f"{layer.name}_pointwise_kernel")
    y = builder.op(
        "Conv",
        [depthwise, kernel, *_bias(builder, layer)],
        f"{layer.name}_pointwise",
        kernel_shape=[1] * layer.rank,
        pads=[0] * (2 * layer.rank),
    )
    return _finish(conversion, y)


@converter(Conv1DTranspose, Conv2DTranspose, Conv3DTranspose)
def convert_conv_transpose(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    # Keras's kernel is (*k, filters, in); ONNX's ConvTranspose weight is (in, filters, *k).
    kernel = builder.constant(_oihw(layer.kernel.value), f"{layer.name}_kernel")
    crops = layer.crops()  # the same for every input length
    y = builder.op(
        "ConvTranspose",
        [_nc_input(conversion), kernel, *_bias(builder, layer)],
        f"{layer.name}_conv_transpose",
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
        dilations=list(layer.dilation_rate),
        pads=[c[0] for c in crops] + [c[1] for c in crops],
        output_padding=[c[2] for c in crops],
    )
    return _finish(conversion, y)
