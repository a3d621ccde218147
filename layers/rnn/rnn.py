"""RNN: the generic recurrent layer, running a cell (or a stack of cells) over time."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import NotSupportedError, ShapeError, received
from layerserve.layers.base import Layer, Variable
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.rnn.base_rnn import (
    PREVIOUS,
    ZEROS,
    ZEROS_BY_TIME,
    RecurrentLayer,
    require_timesteps,
    rnn_forward,
    states_as_inputs,
)
from layerserve.layers.rnn.cells import RecurrentCell
from layerserve.layers.rnn.nested import keras3_keys, nested_config
from layerserve.layers.rnn.stacked_rnn_cells import StackedRNNCells, build_cell
from layerserve.layers.tensor import NOT_GIVEN


def cells_of(cell: RecurrentCell | StackedRNNCells) -> list[RecurrentCell]:
    return list(cell.cells) if isinstance(cell, StackedRNNCells) else [cell]


class RNN(Layer):
    """Runs ``cell`` over the timesteps of a sequence, as LSTM/GRU/SimpleRNN run theirs.

    Args:
        cell: an LSTMCell, GRUCell or SimpleRNNCell, a StackedRNNCells, a list of cells
            (stacked), or the config of one.
        return_sequences: return every step's output, else the last one.
        return_state: also return the final states, cell by cell.
        go_backwards: process the steps from last to first (the returned sequence stays
            in processing order).
        unroll: accepted; it changes which masked-step rule applies, as in Keras.
        zero_output_for_mask: masked steps output zeros instead of the previous output.
        stateful, time_major: refused (True); ``num_constants`` other than 0 is refused.

    At a masked step every state carries over (spec 10.3).

    Input shape:
        ``(batch, timesteps, features)``; initial states, if given, follow as inputs.

    Output shape:
        ``(batch, timesteps, units)`` with ``return_sequences``, else ``(batch, units)``
        (the last cell's units); with ``return_state``, then each state ``(batch, size)``.
    """

    supports_masking = True
    casts_inputs = True
    # tf.keras records these call arguments (None, the states being extra inputs).
    call_arguments = ("initial_state", "constants")

    def __init__(
        self,
        cell: Any,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        time_major: bool = False,
        num_constants: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if stateful:
            raise NotSupportedError(
                f"Stateful RNN {self.name} is not supported: a served model must not keep "
                "state between requests. " + received("stateful", stateful)
            )
        if time_major:
            raise NotSupportedError(
                f"RNN {self.name}: time_major inputs are not supported; pass (batch, "
                "timesteps, features). " + received("time_major", time_major)
            )
        if num_constants:
            raise NotSupportedError(
                f"RNN {self.name}: constants are not supported (no built-in cell takes "
                "them). " + received("num_constants", num_constants)
            )
        self.cell = build_cell(cell, f"RNN {self.name}")
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = False
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.input_spec = InputSpec(ndim=3)

    # The masked-step rules depend on the version, unroll and zero_output_for_mask
    # exactly as for the built-in layers.
    zero_first_output = RecurrentLayer.zero_first_output
    masked_output = RecurrentLayer.masked_output

    @property
    def keras3_weight_entries(self) -> tuple[str, ...]:  # type: ignore[override]
        """A stack's cells in order: Keras 3 keys them by class (``gru_cell``,
        ``lstm_cell``), which do not sort in weight order."""
        if not isinstance(self.cell, StackedRNNCells):
            return ()
        return tuple(f"cell/cells/{key}" for key in keras3_keys(self.cell.cells))

    @property
    def state_size(self) -> list[int]:
        return list(self.cell.state_size)

    @property
    def units(self) -> int:
        return self.cell.output_size

    def _all_variables(self) -> list[Variable]:
        return self.cell._all_variables()

    def build(self, input_shape: Any) -> None:
        shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        features = tuple(shape)[-1]
        if features is None:
            raise ShapeError(
                f"The last dimension of the input to RNN {self.name} should be defined. "
                f"Received: input_shape={tuple(shape)}"
            )
        self.cell._maybe_build((None, features))
        self.input_spec = InputSpec(ndim=3, axes={-1: features})

    # ---- calling ----------------------------------------------------------------------
    def __call__(
        self,
        inputs: Any,
        training: bool | None = None,
        mask: Any = NOT_GIVEN,
        initial_state: Any = None,
        constants: Any = None,
    ) -> Any:
        """``initial_state``: one tensor per state, cell by cell; as in Keras 2 they
        become inputs 1, 2, ... of the call."""
        if constants is not None:
            raise NotSupportedError(
                f"RNN {self.name} does not support `constants`. " + received("constants", constants)
            )
        if initial_state is not None:
            states = (
                list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            )
            inputs, mask = states_as_inputs(
                f"RNN {self.name}", inputs, states, mask, keras3=self.keras_version >= (3, 0, 0)
            )
        return super().__call__(inputs, training=training, mask=mask)

    def _split(self, inputs: Any) -> tuple[Any, list[Any]]:
        if not isinstance(inputs, (list, tuple)):
            return inputs, []
        x, states = inputs[0], list(inputs[1:])
        if states and len(states) != len(self.state_size):
            raise ShapeError(
                f"RNN {self.name} expects its input, or its input and "
                f"{len(self.state_size)} initial states (cell by cell). "
                f"Received: {len(inputs)} tensors"
            )
        return x, states

    def _specs_for(self, count: int) -> list[InputSpec] | None:
        specs = self._specs()
        if count == 1 or specs is None:
            return specs
        sizes = self.state_size if count - 1 == len(self.state_size) else [None] * (count - 1)
        state_specs = [InputSpec(ndim=2, axes={} if s is None else {-1: s}) for s in sizes]
        return [specs[0], *state_specs]

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        x, states = self._split(inputs)
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        mask_array = None if mask is None else np.asarray(mask, dtype=bool)
        require_timesteps("RNN", self.name, x)
        if mask_array is not None and mask_array.shape != x.shape[:2]:
            raise ShapeError(
                f"RNN {self.name} expects a mask of shape (batch, timesteps) = "
                f"{x.shape[:2]}. Received: mask shape={mask_array.shape}"
            )
        if training and any(
            c.layer.dropout or c.layer.recurrent_dropout for c in cells_of(self.cell)
        ):
            raise NotSupportedError(
                f"RNN {self.name}: training-mode dropout of cells is not supported; "
                "layerserve runs inference."
            )
        self._check_stack_start(states, mask_array)
        if not states:
            states = [np.zeros((x.shape[0], size), dtype=x.dtype) for size in self.state_size]
        for state, size in zip(states, self.state_size, strict=True):
            if tuple(state.shape) != (x.shape[0], size):
                raise ShapeError(
                    f"RNN {self.name} expects initial states of shape (batch, size) = "
                    f"{(x.shape[0], size)}. Received: shape={tuple(state.shape)}"
                )
        rule = self.masked_output if mask_array is not None else PREVIOUS
        step, order = self._step_last_cell_first()
        last, outputs, final = rnn_forward(
            step,
            x,
            [states[i] for i in order],
            mask_array,
            self.go_backwards,
            zero_output_for_mask=rule == ZEROS,
            zero_first_output=self.zero_first_output,
        )
        final = [final[order.index(i)] for i in range(len(order))]
        if rule == ZEROS_BY_TIME and outputs.shape[1]:
            outputs = np.where(mask_array[:, :, np.newaxis], outputs, 0).astype(x.dtype)
            processed_last = mask_array[:, 0] if self.go_backwards else mask_array[:, -1]
            last = np.where(processed_last[:, np.newaxis], last, 0).astype(x.dtype)
        output = outputs if self.return_sequences else last
        return [output, *final] if self.return_state else output

    def _step_last_cell_first(self) -> tuple[Any, list[int]]:
        """The step over states reordered so the last cell's come first: the time loop
        sizes outputs (and starts the previous output) from ``states[0]``, which must be
        the output's. ``order[i]`` is the cell-by-cell index of reordered state i."""
        sizes = [len(c.state_size) for c in cells_of(self.cell)]
        start = sum(sizes[:-1])
        order = list(range(start, start + sizes[-1])) + list(range(start))
        step = self.cell.step()

        def reordered(x_t: Any, states: list[Any]) -> tuple[Any, list[Any]]:
            by_cell = [states[order.index(i)] for i in range(len(order))]
            output, new_states = step(x_t, by_cell)
            return output, [new_states[i] for i in order]

        return reordered, order

    def _check_stack_start(self, states: list[Any], mask: Any) -> None:
        """Keras 3 (JAX) and Keras 2.2 start a stack's "previous output" from the first
        cell's initial h, which layerserve does not reproduce; it matters only with
        given states, a mask and a first step masked."""
        if len(cells_of(self.cell)) > 1 and states and mask is not None:
            if not self.zero_first_output:
                raise NotSupportedError(
                    f"RNN {self.name}: a stack of cells with both `initial_state` and a "
                    "mask is not supported for this Keras version."
                )

    def compute_output_shape(self, input_shape: Any) -> Any:
        shape = tuple(input_shape[0] if isinstance(input_shape, list) else input_shape)
        batch = shape[0]
        output = (batch, shape[1], self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [output, *[(batch, size) for size in self.state_size]]
        return output

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self.state_size)
        return output_mask

    def get_config(self) -> dict[str, Any]:
        config = {
            **super().get_config(),
            "cell": nested_config(self.cell),
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
        }
        if self.zero_output_for_mask:
            config["zero_output_for_mask"] = True
        return config
