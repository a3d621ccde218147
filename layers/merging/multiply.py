"""Multiply: the element-wise product of a list of inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.merging.base_merge import Merge, broadcast_mask


class Multiply(Merge):
    """Multiplies a list of inputs element-wise, from the first to the last. In Keras
    >= 3.4 masked positions count as 1, and when every input has a mask the positions
    masked in all of them are 0.

    Args:
        **kwargs: standard layer keyword arguments.

    Input shape:
        A list of tensors ``(batch_size, ...)`` that broadcast once lower-rank inputs
        get size-1 axes after the batch axis.

    Output shape:
        The broadcast shape of the inputs.
    """

    def _merge_function(self, inputs: list[np.ndarray], masks: list[Any]) -> np.ndarray:
        every_input_masked = all(m is not None for m in masks)
        output, output_mask = None, None
        for x, mask in zip(inputs, masks, strict=True):
            if mask is not None:
                mask = broadcast_mask(mask, x)
                x = np.where(mask, x, np.ones((), dtype=x.dtype))
                if every_input_masked:
                    output_mask = mask if output_mask is None else output_mask | mask
            output = x if output is None else output * x
        if output_mask is not None:
            output = np.where(output_mask, output, np.zeros((), dtype=output.dtype))
        return output
