"""ZeroPadding1D: zeros before and after the steps of ``(N, steps, features)``."""

from __future__ import annotations

from typing import Any

from layerserve.layers.reshaping.base_zero_padding import BaseZeroPadding


class ZeroPadding1D(BaseZeroPadding):
    """Zero-padding layer for 1D input (e.g. temporal sequence).

    Args:
        padding: int (zeros at both ends of the step axis) or a pair ``(before, after)``.
        data_format: ``"channels_last"`` (steps on axis 1) or ``"channels_first"`` (steps
            on axis 2). Keras 3 only; Keras 2 files are always channels_last, and so is
            ``None`` under Keras 2 semantics (Keras 3 resolves it to the global
            ``image_data_format``).

    Input shape:
        3D tensor ``(batch, steps, features)`` (channels_last) or
        ``(batch, features, steps)`` (channels_first).

    Output shape:
        The same with ``steps + before + after`` steps.
    """

    rank = 1

    def __init__(self, padding: Any = 1, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(padding, data_format, **kwargs)

    def _resolve_format(self, data_format: str | None) -> str:
        if data_format is None and self.keras_version < (3, 0, 0):
            return "channels_last"  # Keras 2's ZeroPadding1D has no data_format
        return super()._resolve_format(data_format)
