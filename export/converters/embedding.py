"""Embedding: ``Gather(embeddings, indices, axis=0)``; its mask is ``Not(Equal(x, 0))``."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.core.embedding import Embedding

_INDEX_DTYPES = ("int32", "int64")


@converter(Embedding)
def convert_embedding(conversion: Conversion) -> Converted:
    """Indices that are not int32/int64 are cast to int64 (floats truncate toward zero,
    as Keras's cast to int32 does). ONNX Gather counts negative indices from the end, as
    Keras 3 does; for Keras 2 files a negative index is replaced by ``input_dim`` so that
    onnxruntime refuses it (out of bounds) instead of wrapping it. onnxruntime also
    refuses indices ``>= input_dim`` (its CPU provider; a service must still validate
    indices, see ``Embedding.input_value_range``)."""
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    indices, index_dtype = x.name, x.dtype
    if x.dtype not in _INDEX_DTYPES:
        indices = builder.op("Cast", [x.name], f"{layer.name}_indices", to=TensorProto.INT64)
        index_dtype = "int64"
    # The mask reads the uncast input: 0.5 is not padding although it selects row 0.
    # Integer inputs are compared after their exact cast (onnxruntime's Equal has no
    # kernels for the small integer types).
    unmasked, unmasked_dtype = (
        (x.name, x.dtype) if np.dtype(x.dtype).kind == "f" else (indices, index_dtype)
    )
    # uint64 indices >= 2**63 turn negative in the cast: refuse them too.
    if layer.keras_version < (3, 0, 0) or x.dtype == "uint64":
        zero = builder.constant(np.zeros((), dtype=index_dtype), f"{layer.name}_zero_index")
        negative = builder.op("Less", [indices, zero], f"{layer.name}_negative")
        invalid = builder.constant(
            np.asarray(layer.input_dim, dtype=index_dtype), f"{layer.name}_invalid_index"
        )
        indices = builder.op("Where", [negative, invalid, indices], f"{layer.name}_checked")
    table = builder.constant(layer.embeddings.value, f"{layer.name}_embeddings")
    out = builder.op("Gather", [table, indices], layer.name, axis=0)
    if not layer.mask_zero:
        return Converted([out], masks=[None])
    zero = builder.constant(np.zeros((), dtype=unmasked_dtype), f"{layer.name}_padding_value")
    padding = builder.op("Equal", [unmasked, zero], f"{layer.name}_padding")
    mask = builder.op("Not", [padding], f"{layer.name}_mask")
    return Converted([out], masks=[mask])
