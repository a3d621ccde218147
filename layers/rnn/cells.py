"""LSTMCell, GRUCell and SimpleRNNCell: one step of a recurrent layer, for ``RNN(cell)``.

A cell holds the weights and the per-step math of its layer (``LSTMCell`` is one step
of ``LSTM``): it keeps an instance of that layer, built with the cell's arguments, so
defaults that changed between Keras versions (recurrent activation, ``reset_after``)
and the step functions of ``cells_math`` are exactly the layer's.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from layerserve.errors import ShapeError
from layerserve.layers.base import Layer, Variable
from layerserve.layers.rnn.base_rnn import RecurrentLayer, Step
from layerserve.layers.rnn.gru import GRU
from layerserve.layers.rnn.lstm import LSTM
from layerserve.layers.rnn.simple_rnn import SimpleRNN

# The arguments every cell takes besides ``units``, and what each cell adds.
_SHARED = (
    "activation",
    "use_bias",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "recurrent_regularizer",
    "bias_regularizer",
    "kernel_constraint",
    "recurrent_constraint",
    "bias_constraint",
    "dropout",
    "recurrent_dropout",
    "seed",
)


class RecurrentCell(Layer):
    """Base of the built-in cells: ``layer_class`` is the layer the cell is one step of,
    ``cell_arguments`` its arguments besides ``units`` and the shared ones."""

    layer_class: type[RecurrentLayer] = RecurrentLayer
    cell_arguments: tuple[str, ...] = ()

    def __init__(self, units: int, **kwargs: Any) -> None:
        own = (*_SHARED, *self.cell_arguments)
        arguments = {key: kwargs.pop(key) for key in own if key in kwargs}
        super().__init__(**kwargs)
        self.layer = self.layer_class(
            units, name=self.name, dtype=self.dtype, trainable=self.trainable, **arguments
        )
        self.units = self.layer.units
        self._given = set(arguments)

    @property
    def state_size(self) -> list[int]:
        return [self.units] * self.layer.state_count

    @property
    def output_size(self) -> int:
        return self.units

    def _all_variables(self) -> list[Variable]:
        return self.layer._all_variables()

    def build(self, input_shape: Any) -> None:
        """``input_shape`` is one step's, ``(batch, features)``."""
        self.layer._maybe_build((None, None, tuple(input_shape)[-1]))

    def step(self) -> Step:
        """``step(x_t, states) -> (output, new_states)`` with the cell's weights."""
        return self.layer._step(None, None)

    def as_layer(self, **flags: Any) -> RecurrentLayer:
        """The recurrent layer that runs this cell over time, sharing its weights (the
        export converts ``RNN(cell)`` as this layer)."""
        layer = copy.copy(self.layer)
        for key, value in flags.items():
            setattr(layer, key, value)
        return layer

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        """``[x_t, *states]`` to ``[output, *new_states]``: one step, as Keras calls a cell."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 1 + self.layer.state_count:
            raise ShapeError(
                f"{type(self).__name__} {self.name} expects [inputs, "
                f"{', '.join(self.layer.state_names)}]. Received: {_count(inputs)} tensors"
            )
        output, states = self.step()(np.asarray(inputs[0]), [np.asarray(s) for s in inputs[1:]])
        return [output, *states]

    def compute_output_shape(self, input_shape: Any) -> Any:
        batch = tuple(input_shape[0])[0]
        return [(batch, self.units)] * (1 + self.layer.state_count)

    def get_config(self) -> dict[str, Any]:
        full = self.layer.get_config()
        config = {**super().get_config(), "units": self.units}
        for key in (*_SHARED, *self.cell_arguments):
            if key in full and (key != "seed" or full[key] is not None):
                config[key] = full[key]
        return config


def _count(inputs: Any) -> int:
    return len(inputs) if isinstance(inputs, (list, tuple)) else 1


class SimpleRNNCell(RecurrentCell):
    """One step of SimpleRNN: ``h = activation(x·W + b + h_prev·U)``.

    Args:
        units, activation, use_bias, initializers, regularizers, constraints, dropout,
        recurrent_dropout, seed: as for SimpleRNN.

    Input shape: ``(batch, features)`` per step; state ``[h (batch, units)]``.

    Output shape: ``(batch, units)``.
    """

    layer_class = SimpleRNN


class GRUCell(RecurrentCell):
    """One step of GRU (gates z, r, candidate h).

    Args:
        units, activation, recurrent_activation, use_bias, reset_after, initializers,
        regularizers, constraints, dropout, recurrent_dropout, implementation, seed: as
        for GRU (the same version-dependent defaults).

    Input shape: ``(batch, features)`` per step; state ``[h (batch, units)]``.

    Output shape: ``(batch, units)``.
    """

    layer_class = GRU
    cell_arguments = ("recurrent_activation", "reset_after", "implementation")


class LSTMCell(RecurrentCell):
    """One step of LSTM (gates i, f, c, o).

    Args:
        units, activation, recurrent_activation, use_bias, unit_forget_bias,
        initializers, regularizers, constraints, dropout, recurrent_dropout,
        implementation, seed: as for LSTM.

    Input shape: ``(batch, features)`` per step; states ``[h, c]``, each
    ``(batch, units)``.

    Output shape: ``(batch, units)``.
    """

    layer_class = LSTM
    cell_arguments = ("recurrent_activation", "unit_forget_bias", "implementation")


CELLS = (SimpleRNNCell, GRUCell, LSTMCell)
