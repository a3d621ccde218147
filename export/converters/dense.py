"""Dense: Gemm on rank 2, MatMul + Add above; then the activation."""

from __future__ import annotations

from layerserve.export.activations import emit_activation
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.core.dense import Dense


@converter(Dense)
def convert_dense(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    kernel = builder.constant(layer.kernel.value, f"{layer.name}_kernel")
    inputs = [x.name, kernel]
    if layer.bias is not None:
        inputs.append(builder.constant(layer.bias.value, f"{layer.name}_bias"))
    if x.rank == 2:
        y = builder.op("Gemm", inputs, f"{layer.name}_linear")
    else:
        y = builder.op("MatMul", inputs[:2], f"{layer.name}_matmul")
        if len(inputs) == 3:
            y = builder.op("Add", [y, inputs[2]], f"{layer.name}_linear")
    out = emit_activation(builder, layer.activation, conversion.value(y), layer.name)
    return Converted([out])
