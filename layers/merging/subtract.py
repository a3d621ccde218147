"""Subtract: the first of two inputs minus the second."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.merging.base_merge import Merge


class Subtract(Merge):
    """Subtracts the second of exactly two inputs from the first, element-wise.

    Args:
        **kwargs: standard layer keyword arguments.

    Input shape:
        A list of two tensors ``(batch_size, ...)`` that broadcast once a lower-rank
        input gets size-1 axes after the batch axis.

    Output shape:
        The broadcast shape of the inputs.
    """

    exact_inputs = 2

    def _merge_function(self, inputs: list[np.ndarray], masks: list[Any]) -> np.ndarray:
        return inputs[0] - inputs[1]
