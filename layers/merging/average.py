"""Average: the element-wise mean of a list of inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.merging.base_merge import Merge


class Average(Merge):
    """Averages a list of inputs element-wise: their sum (from the first input on)
    divided by the number of inputs.

    Args:
        **kwargs: standard layer keyword arguments.

    Input shape:
        A list of tensors ``(batch_size, ...)`` that broadcast once lower-rank inputs
        get size-1 axes after the batch axis.

    Output shape:
        The broadcast shape of the inputs.
    """

    def output_dtype(self, input_dtype: str) -> str:
        return super().output_dtype(input_dtype) if np.dtype(input_dtype).kind == "f" else "float32"

    def _merge_function(self, inputs: list[np.ndarray], masks: list[Any]) -> np.ndarray:
        output = inputs[0]
        for x in inputs[1:]:
            output = output + x
        # Keras 3 divides integer sums into float32 (JAX); floats keep their dtype.
        dtype = output.dtype if output.dtype.kind == "f" else np.dtype("float32")
        return (output / np.asarray(len(inputs), dtype=dtype)).astype(dtype, copy=False)
