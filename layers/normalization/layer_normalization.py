"""LayerNormalization: each sample normalized over ``axis``, then ``* gamma + beta``."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.base import Layer, Variable
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.normalization import normalization_shapes as rules
from layerserve.layers.normalization.normalization_utils import (
    epsilon_value,
    flag,
    moments,
    normalize,
    placed,
)
from layerserve.layers.weight_options import (
    add_owned_weight,
    set_weight_options,
    weight_options_config,
)

_WEIGHTS = ("beta", "gamma")


def layer_normalize(
    x: np.ndarray,
    axes: tuple[int, ...],
    epsilon: float,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    rms_scaling: bool = False,
) -> np.ndarray:
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` over ``axes`` (two-pass variance);
    with ``rms_scaling`` (Keras 3): ``x / sqrt(var + eps) * gamma``, the *centred*
    variance but no centring and no beta."""
    mean, variance = moments(x, axes)
    if not rms_scaling:
        return normalize(x, mean, variance, epsilon, gamma, beta)
    y = x / np.sqrt(variance + x.dtype.type(epsilon))
    return (y if gamma is None else y * gamma).astype(x.dtype, copy=False)


class LayerNormalization(Layer):
    """Normalizes each sample over ``axis`` (any axes, not only the trailing ones).

    Args:
        axis: An int or a list of ints: the axes to normalize over.
        epsilon: Added to the variance. Defaults to 1e-3.
        center: Add the offset ``beta``.
        scale: Multiply by ``gamma``.
        beta_initializer, gamma_initializer: Initializers of ``beta`` and ``gamma``.
        beta_regularizer, gamma_regularizer: Regularizers of ``beta`` and ``gamma``.
        beta_constraint, gamma_constraint: Constraints of ``beta`` and ``gamma``.
        rms_scaling: Keras 3 (deprecated there, still honoured): ``x / sqrt(var + eps)
            * gamma`` with no centring and no ``beta``; ``gamma`` exists even when
            ``scale=False``.

    The weights span the sizes of ``axis`` in Keras's stored order (Keras 3 sorts the
    list, tf.keras keeps it) and are reshaped onto the input's axes, as Keras does.

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
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        rms_scaling: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        layer = type(self).__name__
        self.axis = rules.validate_axis(axis, layer)
        self.epsilon = epsilon_value(epsilon, layer)
        self.center = flag(center, "center", layer)
        self.scale = flag(scale, "scale", layer)
        self.rms_scaling = flag(rms_scaling, "rms_scaling", layer)
        set_weight_options(
            self,
            beta_initializer=beta_initializer,
            gamma_initializer=gamma_initializer,
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
        )
        self.gamma: Variable | None = None
        self.beta: Variable | None = None

    def build(self, input_shape: tuple) -> None:
        rank = len(input_shape)
        self.axes = rules.resolve_axes(self.axis, rank, self.name)
        stored = rules.weight_axes(self.axis, rank, self.name, self.keras_version >= (3, 0, 0))
        weighted = self.scale or self.rms_scaling or self.center
        # only weights need the sizes: without gamma and beta any size normalizes
        shape = rules.defined_sizes(input_shape, stored, self.name) if weighted else ()
        known = all(input_shape[a] is not None for a in self.axes)
        # The weights' shape on the input's axes (None: no weights, sizes unknown).
        self.broadcast = rules.broadcast_shape(input_shape, self.axes) if known else None
        if self.scale or self.rms_scaling:
            self.gamma = add_owned_weight(self, "gamma", shape)
        if self.center and not self.rms_scaling:
            self.beta = add_owned_weight(self, "beta", shape)
        self.input_spec = InputSpec(
            ndim=rank, axes={a: input_shape[a] for a in self.axes if input_shape[a] is not None}
        )

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        return layer_normalize(
            inputs,
            self.axes,
            self.epsilon,
            placed(self.gamma, self.broadcast),
            placed(self.beta, self.broadcast),
            self.rms_scaling,
        )

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return rules.normalization_output_shape(input_shape, self.axis, self.name)

    def get_config(self) -> dict[str, Any]:
        config = {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **weight_options_config(self, _WEIGHTS, "initializer"),
            **weight_options_config(self, _WEIGHTS, "regularizer"),
            **weight_options_config(self, _WEIGHTS, "constraint"),
        }
        if self.rms_scaling:
            config["rms_scaling"] = True
        return config
