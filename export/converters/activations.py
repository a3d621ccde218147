"""Activation: the activation's ONNX form."""

from __future__ import annotations

from layerserve.export.activations import emit_activation
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.activations.activation import Activation


@converter(Activation)
def convert_activation(conversion: Conversion) -> Converted:
    layer = conversion.layer
    return Converted(
        [emit_activation(conversion.builder, layer.activation, conversion.inputs[0], layer.name)]
    )
