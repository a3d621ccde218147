"""GlobalAveragePooling1D: the mean over the steps, of the unmasked steps under a mask."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import NotSupportedError, ShapeError
from layerserve.layers.pooling.base_global_pooling import BaseGlobalPooling
from layerserve.layers.pooling.pooling_utils import SEQUENCE_DEFAULT, require_float
from layerserve.serialization import version_string


def masked_mean(
    x: np.ndarray, mask: np.ndarray, steps_axis: int, keepdims: bool, zero_masked: bool
) -> np.ndarray:
    """``sum_t x_t * m_t / sum_t m_t`` over ``steps_axis`` (1 or 2) of a rank-3 ``x``; the
    ``(N, steps)`` mask is broadcast along the features. A row without any unmasked step
    gives 0/0 = NaN. ``zero_masked`` (Keras 3) selects the unmasked values with ``where``,
    so NaN or inf at masked steps cannot leak; Keras 2 multiplies by the 0/1 mask."""
    expanded = np.expand_dims(mask, 3 - steps_axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        if zero_masked:
            keep = expanded.astype(bool)
            values = np.where(keep, x, np.zeros((), dtype=x.dtype))
            weights = keep.astype(x.dtype)
        else:
            weights = expanded.astype(x.dtype)
            values = x * weights
        total = np.sum(values, axis=steps_axis, keepdims=keepdims)
        return total / np.sum(weights, axis=steps_axis, keepdims=keepdims)


class GlobalAveragePooling1D(BaseGlobalPooling):
    """Global average pooling operation for temporal data.

    With a mask (from ``Masking`` or ``Embedding(mask_zero=True)``) only the unmasked steps
    are averaged; the output carries no mask. Keras 2.2.0-2.2.2 refuse masks here.

    Args:
        data_format: 'channels_last' or 'channels_first'. The default is
            'channels_last' under Keras 2 semantics and ``image_data_format()`` for
            Keras 3; None means ``image_data_format()``.
        keepdims: Keep the steps axis, with length 1.

    Input shape:
        channels_last ``(batch, steps, features)``,
        channels_first ``(batch, features, steps)``.

    Output shape:
        ``(batch, features)``; with ``keepdims``, channels_last ``(batch, 1, features)``,
        channels_first ``(batch, features, 1)``.
    """

    rank = 1
    mode = "average"

    def __init__(
        self, data_format: Any = SEQUENCE_DEFAULT, keepdims: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(data_format, keepdims, **kwargs)
        self.supports_masking = self.keras_version >= (2, 2, 3)

    @property
    def zeroes_masked_steps(self) -> bool:
        """Keras 3 selects with ``where``; Keras 2 multiplies by the mask."""
        return self.keras_version >= (3, 0, 0)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        if mask is None or not self.supports_masking:
            return super().call(inputs)
        require_float(self, inputs.dtype)
        mask = np.asarray(mask)
        self.check_mask(inputs.shape, mask.shape)
        steps_axis = self.axes[0]
        return masked_mean(inputs, mask, steps_axis, self.keepdims, self.zeroes_masked_steps)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if mask is None or not self.supports_masking:
            return super().compute_mask(inputs, mask)
        mask_shape = mask.shape if hasattr(mask, "shape") else np.shape(mask)
        self.check_mask(tuple(inputs.shape), tuple(mask_shape))
        return None

    def check_mask(self, input_shape: tuple, mask_shape: tuple) -> None:
        """The mask must be ``(batch, steps)``; Keras 2.2/2.3 mishandle channels_first."""
        if self.data_format == "channels_first" and self.keras_version < (2, 4, 0):
            raise NotSupportedError(
                f"{type(self).__name__} {self.name!r}: Keras "
                f"{version_string(self.keras_version)} reshapes the mask against the features "
                "axis under data_format='channels_first' (its result is not a masked mean), "
                "which layerserve does not reproduce. "
                "Received: data_format='channels_first' with a mask"
            )
        steps = input_shape[self.axes[0]]
        expected = (input_shape[0], steps)
        if len(mask_shape) != 2 or any(
            a is not None and b is not None and a != b
            for a, b in zip(mask_shape, expected, strict=True)
        ):
            raise ShapeError(
                f"{type(self).__name__} {self.name!r} expects a mask of shape (batch, steps) = "
                f"{expected} for its input of shape {tuple(input_shape)}. "
                f"Received: mask.shape={tuple(mask_shape)}"
            )
