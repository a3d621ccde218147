"""Add: the element-wise sum of a list of inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.merging.base_merge import Merge


class Add(Merge):
    """Adds a list of inputs element-wise, from the first to the last.

    Args:
        **kwargs: standard layer keyword arguments.

    Input shape:
        A list of tensors ``(batch_size, ...)`` that broadcast once lower-rank inputs
        get size-1 axes after the batch axis.

    Output shape:
        The broadcast shape of the inputs.
    """

    def _merge_function(self, inputs: list[np.ndarray], masks: list[Any]) -> np.ndarray:
        output = inputs[0]
        for x in inputs[1:]:
            output = output + x
        return output
