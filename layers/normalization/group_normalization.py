"""GroupNormalization: the channels split into groups, each normalized over the group's
channels and every other non-batch axis, then ``* gamma + beta`` per channel."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from layerserve.errors import ConfigError, ShapeError, received
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


def group_normalize(
    x: np.ndarray,
    axis: int,
    groups: int,
    epsilon: float,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Channel ``c`` of ``axis`` is in group ``c // (C / groups)``; the moments run over
    the group's channels and all non-batch axes. ``weights`` (``x``'s shape) are
    frequency weights of the moments (tf.keras's masked form). ``gamma``/``beta`` are
    already placed on ``axis``."""
    moved = np.moveaxis(x, axis, -1)
    batch, channels = moved.shape[0], moved.shape[-1]
    spatial = math.prod(moved.shape[1:-1])
    grouped_shape = (batch, spatial, groups, channels // groups)
    grouped = moved.reshape(grouped_shape)
    if weights is not None:
        weights = np.moveaxis(weights, axis, -1).reshape(grouped_shape)
    mean, variance = moments(grouped, (1, 3), weights)
    y = normalize(grouped, mean, variance, epsilon, None, None)
    y = np.moveaxis(y.reshape(moved.shape), -1, axis)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype, copy=False)


class GroupNormalization(Layer):
    """Group normalization (Wu & He, 2018); ``groups=-1`` is instance normalization.

    Args:
        groups: The number of groups, dividing the channels; -1: one per channel.
        axis: The channel axis (an int).
        epsilon: Added to the variance. Defaults to 1e-3.
        center: Add the per-channel offset ``beta``.
        scale: Multiply by the per-channel ``gamma``.
        beta_initializer, gamma_initializer: Initializers of ``beta`` and ``gamma``.
        beta_regularizer, gamma_regularizer: Regularizers of ``beta`` and ``gamma``.
        beta_constraint, gamma_constraint: Constraints of ``beta`` and ``gamma``.

    Masks: tf.keras uses the mask given to the call as frequency weights of the moments
    (broadcast to the input's shape with NumPy's rules, as ``tf.broadcast_to`` does);
    Keras 3 ignores it. Both pass it on.

    Input shape:
        Arbitrary, with a defined channel axis.

    Output shape:
        Same as the input.
    """

    supports_masking = True
    casts_inputs = True

    def __init__(
        self,
        groups: int = 32,
        axis: int = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        layer = type(self).__name__
        if (
            isinstance(groups, bool)
            or not isinstance(groups, (int, np.integer))
            or (groups <= 0 and groups != -1)
        ):
            raise ConfigError(
                f"{layer}: expected `groups` to be a positive integer (or -1 for instance "
                "normalization). " + received("groups", groups)
            )
        self.groups = int(groups)
        self.axis = rules.validate_axis(axis, layer, allow_list=False)
        self.epsilon = epsilon_value(epsilon, layer)
        self.center = flag(center, "center", layer)
        self.scale = flag(scale, "scale", layer)
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
        (self.channel_axis,) = rules.resolve_axes(self.axis, rank, self.name)
        (channels,) = rules.defined_sizes(input_shape, (self.channel_axis,), self.name)
        self.group_count = rules.group_count(self.groups, channels, self.name)
        self.broadcast = rules.broadcast_shape(input_shape, (self.channel_axis,))
        self.gamma = add_owned_weight(self, "gamma", (channels,)) if self.scale else None
        self.beta = add_owned_weight(self, "beta", (channels,)) if self.center else None
        self.input_spec = InputSpec(ndim=rank, axes={self.channel_axis: channels})

    def uses_mask(self) -> bool:
        """tf.keras weights the moments by the mask; Keras 3 ignores it."""
        return self.keras_version < (3, 0, 0)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        weights = None
        if mask is not None and self.uses_mask():
            weights = mask_weights(mask, inputs.shape, self.name).astype(inputs.dtype)
        return group_normalize(
            inputs,
            self.channel_axis,
            self.group_count,
            self.epsilon,
            placed(self.gamma, self.broadcast),
            placed(self.beta, self.broadcast),
            weights,
        )

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return rules.normalization_output_shape(input_shape, self.axis, self.name)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "groups": self.groups,
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **weight_options_config(self, _WEIGHTS, "initializer"),
            **weight_options_config(self, _WEIGHTS, "regularizer"),
            **weight_options_config(self, _WEIGHTS, "constraint"),
        }


def mask_weights(mask: Any, shape: tuple[int, ...], layer: str) -> np.ndarray:
    """The mask broadcast to the input's shape by NumPy's rules (aligned on the *last*
    axes, as ``tf.broadcast_to`` aligns them): a ``(N, T)`` mask of an ``(N, T, C)``
    input only broadcasts when its sizes happen to fit, and tf.keras fails otherwise."""
    mask = np.asarray(mask)
    try:
        return np.broadcast_to(mask, shape)
    except ValueError as exc:
        raise ShapeError(
            f"Layer {layer} (GroupNormalization, tf.keras) broadcasts its mask to the input "
            f"shape, which fails here as in tf.keras. Received: mask.shape={mask.shape}, "
            f"inputs.shape={tuple(shape)}"
        ) from exc
