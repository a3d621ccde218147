"""SimpleRNN: a fully connected recurrence over ``(N, timesteps, features)`` inputs."""

from __future__ import annotations

from functools import partial
from typing import Any

from layerserve.layers.rnn.base_rnn import RecurrentLayer, Step
from layerserve.layers.rnn.cells_math import simple_rnn_step
from layerserve.layers.weight_options import add_owned_weight


class SimpleRNN(RecurrentLayer):
    """Fully connected RNN whose output is fed back: ``h_t = act(x_t·W + b + h_{t−1}·U)``.

    Args:
        units: size of the output and of the state h.
        activation: default tanh.
        use_bias: whether the layer has a bias.
        dropout, recurrent_dropout: training-only rates.
        return_sequences, return_state, go_backwards, unroll: as in Keras.
        zero_output_for_mask: masked steps output zeros instead of the previous output.
        seed: Keras 3's dropout seed.
        implementation: accepted and unused, as Keras 2 does (it warns and drops it).
        stateful, time_major: refused (True).

    Input shape: ``(N, T, F)``; with ``initial_state=h`` (or inputs ``[x, h]``) the
    state is ``(N, units)``.

    Output shape: ``(N, T, units)`` with ``return_sequences``, else ``(N, units)``; with
    ``return_state`` followed by h, ``(N, units)``.

    Weights are ``[kernel (F, u), recurrent_kernel (u, u), bias (u,)]``.
    """

    gate_count = 1
    state_names = ("h",)
    has_recurrent_activation = False

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        seed: int | None = None,
        time_major: bool = False,
        zero_output_for_mask: bool = False,
        implementation: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            implementation=implementation,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            seed=seed,
            time_major=time_major,
            zero_output_for_mask=zero_output_for_mask,
            **kwargs,
        )

    def build(self, input_shape: Any) -> None:
        features = self._features(input_shape)
        u = self.units
        self.kernel = add_owned_weight(self, "kernel", (features, u))
        self.recurrent_kernel = add_owned_weight(self, "recurrent_kernel", (u, u))
        self.bias = add_owned_weight(self, "bias", (u,)) if self.use_bias else None
        self._finish_build(features)

    def _step(self, input_dropout: Any, recurrent_dropout: Any) -> Step:
        return partial(
            simple_rnn_step,
            kernel=self.kernel.value,
            recurrent_kernel=self.recurrent_kernel.value,
            bias=self.bias.value if self.bias is not None else None,
            activation=self.activation,
            input_dropout=input_dropout,
            recurrent_dropout=recurrent_dropout,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["implementation"]  # Keras 2 drops it from SimpleRNN; Keras 3 refuses it
        return config
