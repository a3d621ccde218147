"""BatchNormalization: the moving statistics at inference, ``x * inv + (beta - mean * inv)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, ShapeError, received
from layerserve.layers.base import Layer, Variable
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.normalization import normalization_shapes as rules
from layerserve.layers.normalization.fused_epsilon import NO, effective_epsilon, fused_path
from layerserve.layers.normalization.normalization_utils import (
    epsilon_value,
    flag,
    moments,
    normalize,
    number,
    placed,
)
from layerserve.layers.weight_options import (
    positive_int,
    set_weight_options,
    weight_options_config,
)

_WEIGHTS = ("beta", "gamma")
_STATISTICS = ("beta", "gamma", "moving_mean", "moving_variance")
_CLIPPING_KEYS = ("rmax", "rmin", "dmax")


class BatchNormalization(Layer):
    """Normalizes the input per channel with the moving mean and variance (inference), or
    with the statistics of the batch (``training=True`` on a trainable layer).

    Args:
        axis: The channel axis (int), or a list of axes (tf.keras multi-axis BN).
        momentum: Momentum of the moving averages (kept; used in training only).
        epsilon: Added to the variance. Defaults to 1e-3 in every Keras.
        center: Add the offset ``beta``.
        scale: Multiply by ``gamma``.
        beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_variance_initializer: Initializers of the four weights.
        beta_regularizer, gamma_regularizer: Regularizers of ``beta`` and ``gamma``.
        beta_constraint, gamma_constraint: Constraints of ``beta`` and ``gamma``.
        renorm, renorm_clipping, renorm_momentum: Batch renormalization (Keras 3,
            tf.keras). Adds ``moving_stddev``, ``renorm_mean`` and ``renorm_stddev``;
            inference is unchanged.
        fused: tf.keras's fused-kernel switch (inference is unchanged).
        virtual_batch_size: tf.keras ghost batches. The weights gain a leading 1 at
            position 1 and the saved ``axis`` is shifted by one; inference is unchanged.
        adjustment: tf.keras's training-time adjustment callable: only None is accepted.
        synchronized: Cross-replica statistics in training (inference is unchanged).

    Input shape:
        Arbitrary.

    Output shape:
        Same as the input.
    """

    supports_masking = True
    casts_inputs = True

    def __init__(
        self,
        axis: Any = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        renorm: bool = False,
        renorm_clipping: dict[str, float] | None = None,
        renorm_momentum: float = 0.99,
        fused: bool | None = None,
        virtual_batch_size: int | None = None,
        adjustment: Any = None,
        synchronized: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        layer = type(self).__name__
        self.axis = rules.validate_axis(axis, layer)
        self.momentum = number(momentum, "momentum", layer)
        self.epsilon = epsilon_value(epsilon, layer)
        self.center = flag(center, "center", layer)
        self.scale = flag(scale, "scale", layer)
        set_weight_options(
            self,
            beta_initializer=beta_initializer,
            gamma_initializer=gamma_initializer,
            moving_mean_initializer=moving_mean_initializer,
            moving_variance_initializer=moving_variance_initializer,
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
        )
        self.renorm = flag(renorm, "renorm", layer)
        self.renorm_clipping = _clipping(renorm_clipping)
        self.renorm_momentum = number(renorm_momentum, "renorm_momentum", layer)
        if fused is not None:
            fused = flag(fused, "fused", layer)
        self.fused = fused
        self.virtual_batch_size = (
            None
            if virtual_batch_size is None
            else positive_int(virtual_batch_size, "virtual_batch_size")
        )
        if adjustment is not None:
            raise NotSupportedError(
                "BatchNormalization does not support `adjustment` (a Python callable that "
                "Keras never saves; it only changes training). "
                + received("adjustment", adjustment)
            )
        self.synchronized = flag(synchronized, "synchronized", layer)
        if fused:
            for name, conflict in (
                ("renorm", self.renorm),
                ("virtual_batch_size", self.virtual_batch_size is not None),
                ("synchronized", self.synchronized),
            ):
                if conflict:
                    raise ConfigError(
                        f"BatchNormalization: `fused=True` is not supported with `{name}`. "
                        f"Received: fused=True, {name}={getattr(self, name)!r}"
                    )
        self.gamma: Variable | None = None
        self.beta: Variable | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BatchNormalization:
        """tf.keras saves, with ``virtual_batch_size``, the axes of the reshaped input,
        one more than the layer's own (as a list of non-negative indices): undo it."""
        config = dict(config)
        axis = config.get("axis")
        if (
            config.get("virtual_batch_size") is not None
            and isinstance(axis, list)
            and axis
            and all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in axis)
        ):
            config["axis"] = [a - 1 for a in axis]
        return cls(**config)

    # ---- weights ------------------------------------------------------------------------
    def build(self, input_shape: tuple) -> None:
        rank = len(input_shape)
        self.axes = rules.resolve_axes(self.axis, rank, self.name)
        if self.virtual_batch_size is not None and 0 in self.axes:
            raise ConfigError(
                "BatchNormalization: with `virtual_batch_size` the axis cannot include the "
                f"batch axis 0. Received: axis={self.axis}"
            )
        sizes = rules.defined_sizes(input_shape, self.axes, self.name)
        self.broadcast = rules.broadcast_shape(input_shape, self.axes)
        if len(self.axes) == 1 and self.virtual_batch_size is None:
            param_shape: tuple[int, ...] = sizes
        else:
            # tf.keras: full-rank weights with 1s off the axes (and the ghost-batch axis).
            param_shape = self.broadcast
            if self.virtual_batch_size is not None:
                param_shape = (1, 1, *param_shape[1:])
        self.gamma = self._add("gamma", param_shape, True) if self.scale else None
        self.beta = self._add("beta", param_shape, True) if self.center else None
        self.moving_mean = self._add("moving_mean", param_shape, False)
        self.moving_variance = self._add("moving_variance", param_shape, False)
        if self.renorm:
            root = _sqrt_of(self.moving_variance_initializer)
            self.moving_stddev = self.add_weight(
                "moving_stddev", param_shape, root, trainable=False
            )
            self.renorm_mean = self.add_weight(
                "renorm_mean", param_shape, self.moving_mean_initializer, trainable=False
            )
            self.renorm_stddev = self.add_weight(
                "renorm_stddev", param_shape, root, trainable=False
            )
        self.input_spec = InputSpec(ndim=rank, axes={a: input_shape[a] for a in self.axes})

    def _add(self, name: str, shape: tuple[int, ...], trainable: bool) -> Variable:
        return self.add_weight(
            name,
            shape,
            getattr(self, f"{name}_initializer"),
            getattr(self, f"{name}_regularizer", None),
            getattr(self, f"{name}_constraint", None),
            trainable=trainable,
        )

    def inference_constants(self) -> tuple[np.ndarray, np.ndarray]:
        """``(inv, res)`` in the layer's dtype and the input's broadcast shape, with
        ``y = x * inv + res``: ``inv = gamma / sqrt(moving_variance + epsilon)``,
        ``res = beta - moving_mean * inv``, as Keras evaluates the layer."""
        dtype = np.dtype(self.dtype).type
        variance = placed(self.moving_variance, self.broadcast)
        inv = dtype(1) / np.sqrt(variance + dtype(self.epsilon_for(variance)))
        if self.gamma is not None:
            inv = inv * placed(self.gamma, self.broadcast)
        res = -placed(self.moving_mean, self.broadcast) * inv
        if self.beta is not None:
            res = res + placed(self.beta, self.broadcast)
        return inv.astype(self.dtype), res.astype(self.dtype)

    def epsilon_for(self, variance: np.ndarray) -> float:
        """The epsilon Keras added to ``variance`` (Keras 2 files: see fused_epsilon)."""
        return effective_epsilon(
            self.epsilon, variance, self.keras_version, self._fused(), self.name
        )

    def _fused(self) -> str:
        return fused_path(
            self.keras_version,
            self.axes,
            len(self.broadcast),
            fused=self.fused,
            renorm=self.renorm,
            virtual_batch=self.virtual_batch_size is not None,
        )

    # ---- calling ------------------------------------------------------------------------
    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        if mask is not None and self.keras_version >= (3, 0, 0):
            _check_mask_rank(inputs, mask)  # Keras 3 checks it in inference too
        if training and self.trainable:
            return self._batch_statistics_forward(inputs, mask)
        inv, res = self.inference_constants()
        return (inputs * inv + res).astype(inputs.dtype, copy=False)

    def _batch_statistics_forward(self, inputs: np.ndarray, mask: Any) -> np.ndarray:
        """Training mode: normalized with the batch's own mean and variance (the moving
        statistics are not updated: layerserve does not train)."""
        for name, used in (
            ("renorm", self.renorm),
            ("virtual_batch_size", self.virtual_batch_size is not None),
        ):
            if used:
                raise NotSupportedError(
                    f"BatchNormalization with `{name}` has no reference for training=True. "
                    + received(name, getattr(self, name))
                )
        reduction = tuple(i for i in range(inputs.ndim) if i not in self.axes)
        mean, variance = moments(inputs, reduction, self._moment_weights(inputs, mask))
        return normalize(
            inputs,
            mean,
            variance,
            self.epsilon_for(variance),
            placed(self.gamma, self.broadcast),
            placed(self.beta, self.broadcast),
        )

    def _moment_weights(self, inputs: np.ndarray, mask: Any) -> np.ndarray | None:
        """Keras 3 and tf.keras's unfused path weight the batch moments by the mask
        (one dimension less than the input); Keras 2.2 and the fused path ignore it."""
        if mask is None or self.keras_version < (2, 4, 0):
            return None
        if self.keras_version < (3, 0, 0) and self._fused() != NO:
            return None
        mask = _check_mask_rank(inputs, mask)
        return np.broadcast_to(mask[..., np.newaxis], inputs.shape).astype(inputs.dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return rules.normalization_output_shape(input_shape, self.axis, self.name)

    # ---- config -------------------------------------------------------------------------
    def _config_axis(self) -> int | list[int]:
        """tf.keras's saved form: with ``virtual_batch_size``, non-negative axes shifted
        by one (``from_config`` shifts them back)."""
        if self.virtual_batch_size is None:
            return self.axis
        if self.built:
            return [a + 1 for a in self.axes]
        if isinstance(self.axis, int):
            return self.axis
        if all(a >= 0 for a in self.axis):
            return [a + 1 for a in self.axis]
        return list(self.axis)

    def get_config(self) -> dict[str, Any]:
        config = {
            **super().get_config(),
            "axis": self._config_axis(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **weight_options_config(self, _STATISTICS, "initializer"),
            **weight_options_config(self, _WEIGHTS, "regularizer"),
            **weight_options_config(self, _WEIGHTS, "constraint"),
        }
        if self.renorm or self.renorm_clipping is not None or self.renorm_momentum != 0.99:
            config["renorm"] = self.renorm
            config["renorm_clipping"] = self.renorm_clipping
            config["renorm_momentum"] = self.renorm_momentum
        for key, default in (
            ("fused", None),
            ("virtual_batch_size", None),
            ("synchronized", False),
        ):
            if getattr(self, key) != default:
                config[key] = getattr(self, key)
        return config


def _check_mask_rank(inputs: np.ndarray, mask: Any) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != inputs.ndim - 1:
        raise ShapeError(
            "BatchNormalization: the mask should have one dimension less than the "
            f"inputs. Received: mask.shape={mask.shape}, inputs.shape={inputs.shape}"
        )
    return mask


def _clipping(value: Any) -> dict[str, float] | None:
    """``renorm_clipping``: None or a dict of optional ``rmax``, ``rmin``, ``dmax``."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(_CLIPPING_KEYS):
        raise ConfigError(
            f"BatchNormalization: expected `renorm_clipping` to be a dict with keys among "
            f"{list(_CLIPPING_KEYS)}. " + received("renorm_clipping", value)
        )
    clipping = {
        key: None if v is None else number(v, key, "BatchNormalization") for key, v in value.items()
    }
    rmax, rmin, dmax = (clipping.get(key) for key in _CLIPPING_KEYS)
    if rmax is not None and rmin is not None and rmax < rmin:
        raise ConfigError(
            "BatchNormalization: `rmax` should be greater than `rmin` in `renorm_clipping`. "
            + received("renorm_clipping", value)
        )
    if dmax is not None and dmax < 0:
        raise ConfigError(
            "BatchNormalization: `dmax` should be non-negative in `renorm_clipping`. "
            + received("renorm_clipping", value)
        )
    return clipping


def _sqrt_of(initializer: Any) -> Any:
    """The renorm standard deviations start at the square root of the variance's initial
    value, as Keras initializes them."""

    def initialize(shape: Any, dtype: Any = None) -> np.ndarray:
        return np.sqrt(np.asarray(initializer(shape, dtype=dtype)))

    return initialize
