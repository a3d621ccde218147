"""Bidirectional: a recurrent layer run forward and backward in time, outputs merged."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, ShapeError, received
from layerserve.layers.base import Layer, Variable
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.rnn.base_rnn import states_as_inputs
from layerserve.layers.rnn.nested import (
    build_nested,
    copy_layer,
    keras3_entries_under,
    nested_config,
)
from layerserve.layers.tensor import NOT_GIVEN

MERGE_MODES = ("concat", "sum", "mul", "ave", None)
# The recurrent layers whose flags (go_backwards, return_sequences, return_state) and
# masked-step rules Bidirectional relies on.
RECURRENT_CLASSES = ("LSTM", "GRU", "SimpleRNN", "RNN", "CuDNNLSTM", "CuDNNGRU")


def forces_zero_output(keras_version: tuple[int, int, int], tf_keras_file: bool) -> bool:
    """tf.keras (the "2.x-tf" files of TensorFlow 1.13-2.3 from 2.2.4-tf on, checked with
    TensorFlow 1.15, and 2.4+) and Keras 3 set ``zero_output_for_mask = return_sequences``
    on both halves; multi-backend Keras 2.2 and 2.3 have no such option: the halves
    repeat their previous output at masked steps (spec 10.4; 2.2.4, 2.2.5 and 2.3.1
    checked by running them)."""
    return keras_version >= (2, 4, 0) or (tf_keras_file and keras_version >= (2, 2, 4))


def merge_outputs(forward: np.ndarray, backward: np.ndarray, merge_mode: str | None) -> Any:
    if merge_mode == "concat":
        return np.concatenate([forward, backward], axis=-1)
    if merge_mode == "sum":
        return forward + backward
    if merge_mode == "mul":
        return forward * backward
    if merge_mode == "ave":
        return (forward + backward) / np.asarray(2, forward.dtype)
    return [forward, backward]


def merged_shape(forward: tuple, backward: tuple, merge_mode: str | None) -> Any:
    """The static shape of the merged output, given each direction's output shape (a
    given backward layer may have other units: concat adds them)."""
    if merge_mode == "concat":
        last = None if None in (forward[-1], backward[-1]) else forward[-1] + backward[-1]
        return (*forward[:-1], last)
    if merge_mode is None:
        return [tuple(forward), tuple(backward)]
    return tuple(forward)


class Bidirectional(Layer):
    """Runs a recurrent layer forward and a copy of it backward, then merges the two.

    Args:
        layer: the recurrent layer (LSTM, GRU, SimpleRNN or RNN) run forward in time, or
            its ``{"class_name", "config"}``.
        merge_mode: ``"concat"`` (forward first), ``"sum"``, ``"mul"``, ``"ave"``, or None
            for the list ``[forward, backward]``.
        weights: initial weights, the forward layer's then the backward layer's.
        backward_layer: the layer run backward; by default a copy of ``layer`` with
            ``go_backwards`` flipped. It must return what ``layer`` returns.

    The backward result is flipped back into time order when the layers return
    sequences. With ``return_state`` the result is ``[merged, *forward_states,
    *backward_states]`` (merge_mode None: ``[forward, backward, *states]``); an
    ``initial_state`` is split in halves, the first half for the forward layer.

    Input shape:
        ``(batch, timesteps, features)``, plus the initial states if given.

    Output shape:
        The inner layer's output, with the last axis doubled for ``"concat"``.
    """

    supports_masking = True
    # tf.keras records these call arguments (None, the states being extra inputs).
    call_arguments = ("initial_state", "constants")

    def __init__(
        self,
        layer: Any,
        merge_mode: str | None = "concat",
        weights: list[np.ndarray] | None = None,
        backward_layer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(weights=weights, **kwargs)
        if merge_mode not in MERGE_MODES:
            raise ConfigError(
                f"Invalid merge mode for Bidirectional {self.name}. Expected one of "
                f"{list(MERGE_MODES)}. " + received("merge_mode", merge_mode)
            )
        forward = build_nested(layer, "layer", f"Bidirectional {self.name}")
        _check_recurrent(self.name, forward, "layer")
        if backward_layer is None:
            # Keras 3 sets go_backwards on the copy (the pair check then refuses a
            # forward layer that runs backwards); Keras 2 flips it.
            flipped = True if self.keras_version >= (3, 0, 0) else not forward.go_backwards
            backward = copy_layer(forward, go_backwards=flipped)
        else:
            backward = build_nested(backward_layer, "backward_layer", f"Bidirectional {self.name}")
            _check_recurrent(self.name, backward, "backward_layer")
        _check_pair(self.name, forward, backward)
        self._backward_given = backward_layer is not None
        _prefix_name(forward, "forward_")
        _prefix_name(backward, "backward_")
        self.forward_layer, self.backward_layer = forward, backward
        self.merge_mode = merge_mode
        self.return_sequences = bool(forward.return_sequences)
        self.return_state = bool(forward.return_state)
        if forces_zero_output(self.keras_version, self.tf_keras_file):
            for inner in (forward, backward):
                # As Keras does; the halves (and their converters) then emit zeros at
                # masked steps when they return sequences.
                inner.zero_output_for_mask = inner.return_sequences
        self.input_spec = InputSpec(ndim=3)

    # ---- weights: the forward layer's, then the backward layer's ----------------------
    @property
    def keras3_weight_entries(self) -> tuple[str, ...]:  # type: ignore[override]
        """``forward_layer`` before ``backward_layer`` (and, for halves that order their
        own sub-objects, the paths into them)."""
        return keras3_entries_under("forward_layer", self.forward_layer) + keras3_entries_under(
            "backward_layer", self.backward_layer
        )

    @property
    def trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return []
        return self.forward_layer.trainable_weights + self.backward_layer.trainable_weights

    @property
    def non_trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return self.forward_layer.weights + self.backward_layer.weights
        return self.forward_layer.non_trainable_weights + self.backward_layer.non_trainable_weights

    def _all_variables(self) -> list[Variable]:
        return self.forward_layer._all_variables() + self.backward_layer._all_variables()

    @property
    def losses(self) -> list[float]:
        """Weight penalties (the halves' weights are this layer's), then the activity
        penalties of the halves' last call and of this layer's."""
        inner = self.forward_layer._activity_losses + self.backward_layer._activity_losses
        return super().losses + inner

    def build(self, input_shape: Any) -> None:
        sequence_shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        for inner in (self.forward_layer, self.backward_layer):
            inner._maybe_build(tuple(sequence_shape))

    # ---- calling ----------------------------------------------------------------------
    def __call__(
        self,
        inputs: Any,
        training: bool | None = None,
        mask: Any = NOT_GIVEN,
        initial_state: Any = None,
        constants: Any = None,
    ) -> Any:
        """``initial_state``: the forward layer's states, then the backward layer's; as
        in Keras 2 they become inputs 1, 2, ... of the call. ``constants`` (tf.keras,
        for cells that take them) are refused: no built-in cell does."""
        if constants is not None:
            raise NotSupportedError(
                f"Bidirectional {self.name} does not support `constants`: the built-in "
                "recurrent layers take none. " + received("constants", constants)
            )
        if initial_state is not None:
            states = (
                list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            )
            # a mask not given stays so here, in every Keras version
            inputs, mask = states_as_inputs(
                f"Bidirectional {self.name}", inputs, states, mask, keras3=False
            )
        return super().__call__(inputs, training=training, mask=mask)

    def _split(self, inputs: Any) -> tuple[Any, list[Any]]:
        if not isinstance(inputs, (list, tuple)):
            return inputs, []
        x, states = inputs[0], list(inputs[1:])
        if len(states) % 2:
            raise ShapeError(
                f"Bidirectional {self.name} expects an even number of initial states (the "
                "forward layer's, then the backward layer's). "
                f"Received: {len(states)} initial states"
            )
        return x, states

    def _specs_for(self, count: int) -> list[InputSpec] | None:
        return [InputSpec(ndim=3), *[InputSpec(ndim=2)] * (count - 1)]

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        x, states = self._split(inputs)
        sequence_mask = mask[0] if isinstance(mask, (list, tuple)) else mask
        half = len(states) // 2
        forward = self._run_half(self.forward_layer, x, states[:half], sequence_mask, training)
        backward = self._run_half(self.backward_layer, x, states[half:], sequence_mask, training)
        y, y_reversed = forward[0], backward[0]
        if self.return_sequences:
            y_reversed = y_reversed[:, ::-1]
        merged = merge_outputs(y, y_reversed, self.merge_mode)
        if not self.return_state:
            return merged
        head = merged if isinstance(merged, list) else [merged]
        return [*head, *forward[1:], *backward[1:]]

    def _run_half(
        self, layer: Layer, x: np.ndarray, states: list[Any], mask: Any, training: bool
    ) -> list[np.ndarray]:
        """``[output, *states]`` of one direction."""
        inputs = [x, *states] if states else x
        layer_mask = ([mask] + [None] * len(states)) if states and mask is not None else mask
        outputs, _ = layer.run(inputs, training=training, mask=layer_mask)
        return list(outputs) if self.return_state else [outputs]

    def compute_output_shape(self, input_shape: Any) -> Any:
        sequence_shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        forward = self.forward_layer.compute_output_shape(tuple(sequence_shape))
        backward = self.backward_layer.compute_output_shape(tuple(sequence_shape))
        if self.return_state:
            (output, *states), (backward_output, *backward_states) = forward, backward
        else:
            output, states, backward_output, backward_states = forward, [], backward, []
        merged = merged_shape(tuple(output), tuple(backward_output), self.merge_mode)
        if not self.return_state:
            return merged
        head = merged if isinstance(merged, list) else [merged]
        return [*head, *states, *backward_states]

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        output_mask = mask if self.return_sequences else None
        heads = [output_mask] * (2 if self.merge_mode is None else 1)
        if self.return_state:
            state_count = len(self.forward_layer.compute_output_shape((None, None, 1))) - 1
            return [*heads, *[None] * (2 * state_count)]
        return heads if self.merge_mode is None else heads[0]

    def _sublayers(self) -> list[Layer]:
        return [self.forward_layer, self.backward_layer]

    def get_config(self) -> dict[str, Any]:
        config = {
            **super().get_config(),
            "layer": nested_config(self.forward_layer),
            "merge_mode": self.merge_mode,
        }
        if self._backward_given:
            config["backward_layer"] = nested_config(self.backward_layer)
        return config


def _check_recurrent(name: str, layer: Layer, argument: str) -> None:
    if type(layer).__name__ not in RECURRENT_CLASSES or not hasattr(layer, "go_backwards"):
        raise NotSupportedError(
            f"Bidirectional {name} wraps recurrent layers only: expected `{argument}` to be "
            f"one of {', '.join(RECURRENT_CLASSES)}. "
            f"Received: {argument}={type(layer).__name__} ({layer.name!r})"
        )


def _check_pair(name: str, forward: Layer, backward: Layer) -> None:
    """Keras's rules for a given ``backward_layer``: it returns what ``layer`` returns
    and runs the other way."""
    for attribute in ("return_sequences", "return_state"):
        if getattr(forward, attribute) != getattr(backward, attribute):
            raise ConfigError(
                f"Bidirectional {name}: forward layer and backward layer should have the "
                f"same `{attribute}`. Expected {attribute}={getattr(forward, attribute)}. "
                f"Received: backward_layer.{attribute}={getattr(backward, attribute)}"
            )
    if forward.go_backwards == backward.go_backwards:
        raise ConfigError(
            f"Bidirectional {name}: forward layer and backward layer should have different "
            f"`go_backwards` values. Expected backward_layer.go_backwards="
            f"{not forward.go_backwards}. "
            f"Received: backward_layer.go_backwards={backward.go_backwards}"
        )


def _prefix_name(layer: Layer, prefix: str) -> None:
    if not layer.name.startswith(prefix):
        layer.name = prefix + layer.name
