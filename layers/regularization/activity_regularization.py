"""ActivityRegularization: the identity, adding ``l1*sum|x| + l2*sum x^2`` to the losses."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import regularizers
from layerserve.errors import ConfigError, received
from layerserve.layers.base import Layer


class ActivityRegularization(Layer):
    """Passes its input through; the penalty shows in ``losses`` after each call."""

    supports_masking = True

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kwargs: Any) -> None:
        kwargs.pop("activity_regularizer", None)
        for label, value in (("l1", l1), ("l2", l2)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.number))
                or not (np.isfinite(value) and value >= 0)
            ):
                raise ConfigError(
                    f"Expected `{label}` to be a non-negative finite number. "
                    + received(label, value)
                )
        super().__init__(activity_regularizer=regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.l1 = l1
        self.l2 = l2

    def _owns_activity_regularizer(self) -> bool:
        return True

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}
