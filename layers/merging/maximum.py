"""Maximum: the element-wise maximum of a list of inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.merging.base_merge import Merge, masked_pairwise


class Maximum(Merge):
    """The element-wise maximum of a list of inputs. In Keras >= 3.4 a masked position
    of one input takes the other input's value first.

    Args:
        **kwargs: standard layer keyword arguments.

    Input shape:
        A list of tensors ``(batch_size, ...)`` that broadcast once lower-rank inputs
        get size-1 axes after the batch axis.

    Output shape:
        The broadcast shape of the inputs.
    """

    def _merge_function(self, inputs: list[np.ndarray], masks: list[Any]) -> np.ndarray:
        return masked_pairwise(np.maximum, inputs, masks)
