"""Normalization: ``(x - mean) / max(sqrt(variance), epsilon)`` per kept axis."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import _config, initializers
from layerserve.errors import ConfigError, ShapeError, received
from layerserve.layers.base import Layer
from layerserve.layers.tensor import Shape


def normalization_axes(axis: Any) -> tuple[int, ...]:
    """The kept axes as given: ``None`` keeps none (one scalar mean and variance)."""
    if axis is None:
        return ()
    values = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in values):
        raise ConfigError(
            "Expected `axis` to be an integer, a list of integers or None. "
            + received("axis", axis)
        )
    return tuple(int(a) for a in values)


def kept_axes(axis: tuple[int, ...], input_shape: Shape, layer_name: str) -> tuple[int, ...]:
    """The kept axes of ``input_shape``, positive and sorted; each must have a known size."""
    ndim = len(input_shape)
    if any(a < -ndim or a >= ndim for a in axis):
        raise ShapeError(
            f"Normalization {layer_name}: all `axis` values must be in the range "
            f"[-ndim, ndim). Received inputs with ndim={ndim}, while axis={axis}"
        )
    keep = tuple(sorted({a % ndim for a in axis}))
    unknown = [d for d in keep if input_shape[d] is None]
    if unknown:
        raise ShapeError(
            f"Normalization {layer_name}: all `axis` values to be kept must have a known "
            f"shape. Received axis={axis}, inputs.shape={tuple(input_shape)}, with unknown "
            f"axis at index {unknown[0]}"
        )
    return keep


def normalization_constants(
    mean: np.ndarray, variance: np.ndarray, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, deviation)`` with ``deviation = max(sqrt(variance), epsilon)``: Keras bounds
    the standard deviation by epsilon (it does not add epsilon to the variance)."""
    deviation = np.maximum(np.sqrt(variance), np.asarray(epsilon, dtype=variance.dtype))
    return mean, deviation


class Normalization(Layer):
    """Shifts and scales inputs by a mean and variance kept per feature.

    Args:
        axis: The axes that keep their own statistics (default the last); ``None`` for a
            single scalar mean and variance.
        mean, variance: Statistics given in the config (then the layer has no weights),
            broadcast into the kept axes from the right. Without them the layer holds the
            adapted, non-trainable weights ``mean``, ``variance`` and ``count``.
        invert: Apply the inverse transformation, ``mean + x * std``.

    Input shape:
        Arbitrary; kept axes must have a known size. Inputs are cast to the float dtype.

    Output shape:
        Same as the input.
    """

    casts_inputs = True

    def __init__(
        self,
        axis: Any = -1,
        mean: Any = None,
        variance: Any = None,
        invert: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.axis = normalization_axes(axis)
        if (mean is None) != (variance is None):
            raise ConfigError(
                "When setting values directly, both `mean` and `variance` must be set. "
                f"Received: mean={mean!r} and variance={variance!r}"
            )
        self.input_mean, self.input_variance = mean, variance
        if mean is not None:
            self._given = tuple(
                self._statistic(v, n) for v, n in ((mean, "mean"), (variance, "variance"))
            )
            if self.keras_version >= (3, 0, 0):
                self._check_keras3_statistics()
        if not isinstance(invert, (bool, np.bool_)):
            raise ConfigError("Expected `invert` to be a boolean. " + received("invert", invert))
        self.invert = bool(invert)
        self.supports_masking = self.keras_version >= (3, 0, 0)  # tf.keras drops masks

    def _check_keras3_statistics(self) -> None:
        """Keras 3 checks the statistics' shapes; tf.keras broadcasts them (``mean`` may be
        a list and ``variance`` a number) and fails only if they do not fit the input."""
        mean, variance = self._given
        if mean.shape != variance.shape:
            raise ConfigError(
                "When setting values directly, `mean` and `variance` must have the same "
                f"shape. Received: mean shape {mean.shape} and variance shape {variance.shape}"
            )
        if mean.ndim > len(self.axis):
            raise ConfigError(
                "The rank of `mean` must be less than or equal to the number of axes "
                f"({len(self.axis)}). Received: mean shape {mean.shape} for axis {self.axis}"
            )

    @staticmethod
    def _statistic(value: Any, name: str) -> np.ndarray:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
        if array is None or isinstance(value, (bool, str)):
            raise ConfigError(
                f"Expected `{name}` to be a number or an array of numbers. " + received(name, value)
            )
        return array

    def build(self, input_shape: Shape) -> None:
        keep = kept_axes(self.axis, input_shape, self.name)
        self._broadcast_shape = tuple(
            input_shape[d] if d in keep else 1 for d in range(len(input_shape))
        )
        kept_shape = tuple(input_shape[d] for d in keep)
        if self.input_mean is None:
            self.adapt_mean = self.add_weight(
                "mean", kept_shape, initializers.get("zeros"), trainable=False
            )
            self.adapt_variance = self.add_weight(
                "variance", kept_shape, initializers.get("ones"), trainable=False
            )
            self.count = self.add_weight("count", (), initializers.get("zeros"), trainable=False)
            self.count.value = np.zeros((), dtype=np.int64)  # Keras keeps an int count
        else:
            self._fixed = self._broadcast_statistics(kept_shape, input_shape)
        self.built = True

    def _broadcast_statistics(self, kept_shape: Shape, input_shape: Shape) -> tuple:
        try:
            return tuple(np.broadcast_to(v, kept_shape) for v in self._given)
        except ValueError as exc:
            raise ShapeError(
                f"Normalization {self.name}: `mean` and `variance` of shape "
                f"{self._given[0].shape} do not broadcast to the kept axes {kept_shape} of "
                f"the input shape {tuple(input_shape)}."
            ) from exc

    def constants(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, deviation)`` in the layer's dtype, shaped to broadcast over the input."""
        if self.input_mean is None:
            mean, variance = self.adapt_mean.value, self.adapt_variance.value
        else:
            mean, variance = self._fixed
        dtype = np.dtype(self.dtype)
        return normalization_constants(
            np.asarray(mean, dtype=dtype).reshape(self._broadcast_shape),
            np.asarray(variance, dtype=dtype).reshape(self._broadcast_shape),
            _config.epsilon(),
        )

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        mean, deviation = self.constants()
        if self.invert:
            return mean + inputs * deviation
        return (inputs - mean) / deviation

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "axis": list(self.axis),
            "invert": self.invert,
            "mean": _listify(self.input_mean),
            "variance": _listify(self.input_variance),
        }


def _listify(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value
