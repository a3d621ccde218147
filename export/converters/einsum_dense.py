"""EinsumDense: ``Einsum(equation)`` with the kernel, ``Add`` the bias, then the
activation."""

from __future__ import annotations

import numpy as np

from layerserve.errors import NotSupportedError
from layerserve.export.activations import emit_activation
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.core.einsum_dense import EinsumDense


@converter(EinsumDense)
def convert_einsum_dense(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    if np.dtype(x.dtype) != np.float32:
        raise NotSupportedError(
            f"Layer {layer.name!r} (EinsumDense): only float32 inputs are exported. "
            f"Received: dtype={x.dtype}"
        )
    kernel = builder.constant(layer.kernel.value, f"{layer.name}_kernel")
    y = builder.op("Einsum", [x.name, kernel], f"{layer.name}_einsum", equation=layer.equation)
    if layer.bias is not None:
        bias = builder.constant(layer.bias.value, f"{layer.name}_bias")
        y = builder.op("Add", [y, bias], f"{layer.name}_biased")
    return Converted([emit_activation(builder, layer.activation, conversion.value(y), layer.name)])


__all__ = ["convert_einsum_dense"]
