"""ThresholdedReLU: ``x`` above ``theta``, else 0 (tf.keras and Keras 2 only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve.errors import UnknownObjectError
from layerserve.layers.activations.activation_arguments import number
from layerserve.layers.base import Layer


def thresholded_relu(x: np.ndarray, theta: float) -> np.ndarray:
    """``x * (x > theta)``, the product Keras 2 computes (NaN stays NaN, -inf gives NaN)."""
    with np.errstate(invalid="ignore"):  # -inf * 0 is NaN, as in Keras
        return x * (x > theta).astype(x.dtype)


class ThresholdedReLU(Layer):
    """Thresholded rectified linear unit: ``x`` for ``x > theta``, else 0.

    Keras 3 has no such layer; files written by Keras 2 and tf.keras load.

    Args:
        theta: Float, the threshold (default 1.0; >= 0 in tf.keras).

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    float_inputs_only = True

    supports_masking = True

    def __init__(self, theta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.keras_version >= (3, 0, 0) and activations.strict_names():
            raise UnknownObjectError(
                "Keras 3 has no ThresholdedReLU layer, so a Keras 3 file that names one "
                "uses a custom layer: pass it in custom_objects. "
                f"Received: class_name='ThresholdedReLU', theta={theta!r}"
            )
        self.theta = number(self, theta, "theta", non_negative=self.keras_version >= (2, 4, 0))

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        return thresholded_relu(inputs, self.theta)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "theta": self.theta}
