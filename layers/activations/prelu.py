"""PReLU: a leaky rectifier whose slope ``alpha`` is a weight."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, ShapeError, received
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.weight_options import (
    add_owned_weight,
    set_weight_options,
    weight_options_config,
)


def prelu(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``relu(x) - alpha * relu(-x)``, as Keras writes it."""
    return np.maximum(x, 0) + (-alpha) * np.maximum(-x, 0)


def prelu_alpha_shape(input_shape: tuple, shared_axes: list[int] | None) -> tuple[int, ...]:
    """``input_shape[1:]`` with 1 on each shared axis. Keras sets ``shape[axis - 1] = 1``
    with Python indexing, so axis 0 marks the last axis and -1 the second to last
    (reproduced: the saved weight has that shape)."""
    shape = list(input_shape[1:])
    for axis in shared_axes or []:
        if not -len(shape) <= axis - 1 < len(shape):
            raise ShapeError(
                f"PReLU cannot share axis {axis} of an input of rank {len(input_shape)}. "
                + received("input_shape", tuple(input_shape))
            )
        shape[axis - 1] = 1
    if any(d is None for d in shape):
        raise ShapeError(
            "PReLU needs every non-shared axis of its input to have a known size "
            "(its alpha has one value per position). " + received("input_shape", tuple(input_shape))
        )
    return tuple(int(d) for d in shape)


def _shared_axes(value: Any) -> list[int] | None:
    if value is None:
        return None
    axes = list(value) if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes):
        raise ConfigError(
            "Expected `shared_axes` to be an integer or a list of integers. "
            + received("shared_axes", value)
        )
    return [int(a) for a in axes]


class PReLU(Layer):
    """Parametric rectified linear unit: ``x`` for ``x >= 0``, else ``alpha * x``, with
    ``alpha`` learned per position.

    Args:
        alpha_initializer: Initializer of ``alpha`` (default zeros).
        alpha_regularizer: Regularizer of ``alpha``.
        alpha_constraint: Constraint on ``alpha``.
        shared_axes: Axes (1 = the first after the batch) along which one ``alpha`` is
            shared, e.g. ``[1, 2]`` for one slope per channel of ``(N, H, W, C)`` inputs.

    Input shape:
        Arbitrary, with known sizes on the axes that are not shared.

    Output shape:
        Same as the input.
    """

    supports_masking = True
    casts_inputs = True

    def __init__(
        self,
        alpha_initializer: Any = "zeros",
        alpha_regularizer: Any = None,
        alpha_constraint: Any = None,
        shared_axes: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        set_weight_options(
            self,
            alpha_initializer=alpha_initializer,
            alpha_regularizer=alpha_regularizer,
            alpha_constraint=alpha_constraint,
        )
        self.shared_axes = _shared_axes(shared_axes)

    def build(self, input_shape: tuple) -> None:
        self.alpha = add_owned_weight(
            self, "alpha", prelu_alpha_shape(input_shape, self.shared_axes)
        )
        # Keras checks the sizes of the unshared axes only when some axis is shared; they
        # are always checked here, since alpha would otherwise broadcast to another shape.
        rank = len(input_shape)
        shared = {(a - 1) % (rank - 1) + 1 for a in self.shared_axes or []}
        axes = {i: input_shape[i] for i in range(1, rank) if i not in shared}
        self.input_spec = InputSpec(ndim=rank, axes=axes)

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> np.ndarray:
        return prelu(inputs, self.alpha.value)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            **weight_options_config(self, ("alpha",), "initializer"),
            **weight_options_config(self, ("alpha",), "regularizer"),
            **weight_options_config(self, ("alpha",), "constraint"),
            "shared_axes": self.shared_axes,
        }
