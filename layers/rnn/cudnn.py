"""Keras 2's GPU-only ``CuDNNGRU`` and ``CuDNNLSTM`` (multi-backend Keras 2.x and
``tf.compat.v1.keras.layers``), computed as the GRU and LSTM they equal (spec 10.5).

Their arithmetic is GRU(reset_after=True, sigmoid, tanh) and LSTM(sigmoid, tanh); only
the weight layout differs, and ``layerserve/saving/cudnn_weights.py`` converts weights
saved in cuDNN layout when a Keras 2 file is loaded, as Keras 2 does. The weights these
layers hold are in Keras layout (``get_weights`` differs from Keras's here).

Masks: the cuDNN kernels ignore them. Keras 2.2 refuses a mask reaching these layers;
tf.keras runs every step and drops the mask. Both are reproduced (``supports_masking``
is False, so the base Layer raises or drops as the version did).
"""

from __future__ import annotations

from typing import Any

from layerserve.errors import ConfigError, received
from layerserve.layers.base import Layer
from layerserve.layers.rnn.gru import GRU
from layerserve.layers.rnn.lstm import LSTM

# GRU/LSTM arguments a cuDNN layer fixes; a config may carry them only with these values
# (layerserve's own to_json writes them).
_FIXED = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "use_bias": True,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "unroll": False,
    "implementation": None,
    "zero_output_for_mask": False,
}


def _without_fixed(class_name: str, config: dict[str, Any], fixed: dict[str, Any]) -> dict:
    config = dict(config)
    for key, value in fixed.items():
        if key in config:
            given = config.pop(key)
            if value is not None and given != value:
                raise ConfigError(
                    f"Expected {class_name} to have `{key}={value!r}`; the cuDNN kernel "
                    f"computes nothing else. " + received(key, given)
                )
    return config


class _CuDNNMixin:
    """Mask handling and config of the cuDNN layers."""

    supports_masking = False
    fixed: dict[str, Any] = _FIXED

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        return super().call(inputs, training=training, mask=None)  # type: ignore[misc]

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return Layer.compute_mask(self, inputs, mask)  # type: ignore[arg-type]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()  # type: ignore[misc]
        for key in self.fixed:
            config.pop(key, None)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        return cls(**_without_fixed(cls.__name__, config, cls.fixed))


class CuDNNGRU(_CuDNNMixin, GRU):
    """Keras 2's cuDNN GRU: ``GRU(reset_after=True, recurrent_activation="sigmoid")``.

    Args: those of GRU except the activations, ``use_bias``, dropout, ``reset_after``
    and ``unroll``, which the cuDNN kernel fixes.

    Input shape: ``(N, T, F)``. Output shape: as GRU's. Weights: as GRU(reset_after=True)
    (files in cuDNN layout are converted when loaded).
    """

    fixed = {**_FIXED, "reset_after": True}

    def __init__(self, units: int, **kwargs: Any) -> None:
        kwargs = _without_fixed("CuDNNGRU", kwargs, self.fixed)
        super().__init__(
            units,
            activation="tanh",
            recurrent_activation="sigmoid",
            reset_after=True,
            **kwargs,
        )


class CuDNNLSTM(_CuDNNMixin, LSTM):
    """Keras 2's cuDNN LSTM: ``LSTM(recurrent_activation="sigmoid")``.

    Args: those of LSTM except the activations, ``use_bias``, dropout and ``unroll``,
    which the cuDNN kernel fixes.

    Input shape: ``(N, T, F)``. Output shape: as LSTM's. Weights: as LSTM's (files in
    cuDNN layout are converted when loaded).
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        kwargs = _without_fixed("CuDNNLSTM", kwargs, self.fixed)
        super().__init__(units, activation="tanh", recurrent_activation="sigmoid", **kwargs)

    @property
    def params_beyond_weights(self) -> int:
        """Keras counts cuDNN's input and recurrent biases, 8 x units, which the LSTM
        layout held here sums into 4 x units."""
        return 4 * self.units
