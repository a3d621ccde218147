"""Dense: Gemm on rank 2; above, Reshape -> Gemm -> Reshape for small kernels and
MatMul + Add for large ones; then the activation."""

from __future__ import annotations

from layerserve.export.activations import emit_activation
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.core.dense import Dense

# benchmarks/dense_layout.py: on rank-3 inputs one 2-D Gemm with its bias fused runs up
# to 1.5x faster than MatMul + Add for kernels up to this many weights (the more rows,
# the larger the gain), and up to 1.25x slower for kernels of 32,768 weights and more.
GEMM_MAX_KERNEL_SIZE = 8192


@converter(Dense)
def convert_dense(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    kernel = builder.constant(layer.kernel.value, f"{layer.name}_kernel")
    inputs = [x.name, kernel]
    if layer.bias is not None:
        inputs.append(builder.constant(layer.bias.value, f"{layer.name}_bias"))
    features, units = layer.kernel.value.shape
    middle = x.shape[1:-1]
    if x.rank == 2:
        y = builder.op("Gemm", inputs, f"{layer.name}_linear")
    elif features * units <= GEMM_MAX_KERNEL_SIZE and all(d is not None for d in middle):
        rows = builder.int64s([-1, features], f"{layer.name}_rows")
        flat = builder.op("Reshape", [x.name, rows], f"{layer.name}_flat")
        product = builder.op("Gemm", [flat, *inputs[1:]], f"{layer.name}_gemm")
        back = builder.int64s([-1, *middle, units], f"{layer.name}_shape")
        y = builder.op("Reshape", [product, back], f"{layer.name}_linear")
    else:
        y = builder.op("MatMul", inputs[:2], f"{layer.name}_matmul")
        if len(inputs) == 3:
            y = builder.op("Add", [y, inputs[2]], f"{layer.name}_linear")
    out = emit_activation(builder, layer.activation, conversion.value(y), layer.name)
    return Converted([out])
