"""LSTM: long short-term memory over ``(N, timesteps, features)`` inputs."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from layerserve.layers.rnn.base_rnn import VERSION_DEFAULT, RecurrentLayer, Step, rnn_forward
from layerserve.layers.rnn.cells_math import lstm_step
from layerserve.layers.weight_options import add_owned_weight


def lstm_forward(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None,
    activation: Any,
    recurrent_activation: Any,
    mask: np.ndarray | None = None,
    go_backwards: bool = False,
    input_dropout: np.ndarray | None = None,
    recurrent_dropout: np.ndarray | None = None,
    initial_state: tuple[np.ndarray, np.ndarray] | None = None,
    zero_first_output: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(outputs (N, T, u), h_T, c_T)`` of :func:`lstm_step` run by :func:`rnn_forward`
    (kept for callers of the former LSTM-only loop)."""
    units = recurrent_kernel.shape[0]
    if initial_state is None:
        zeros = np.zeros((x.shape[0], units), dtype=x.dtype)
        initial_state = (zeros, zeros)
    step = partial(
        lstm_step,
        kernel=kernel,
        recurrent_kernel=recurrent_kernel,
        bias=bias,
        activation=activation,
        recurrent_activation=recurrent_activation,
        input_dropout=input_dropout,
        recurrent_dropout=recurrent_dropout,
    )
    _, outputs, (h, c) = rnn_forward(
        step, x, list(initial_state), mask, go_backwards, False, zero_first_output
    )
    return outputs, h, c


class LSTM(RecurrentLayer):
    """Long short-term memory layer (Hochreiter 1997).

    Args:
        units: size of the output and of the states h and c.
        activation: for the candidate and the output (default tanh).
        recurrent_activation: for the gates; default sigmoid, hard_sigmoid (0.2x+0.5)
            in Keras 2.2.
        use_bias: whether the layer has a bias.
        unit_forget_bias: initialise the forget gate's bias to 1.
        dropout, recurrent_dropout: training-only rates.
        implementation: 1 or 2; the same numbers either way.
        return_sequences, return_state, go_backwards, unroll: as in Keras.
        zero_output_for_mask: masked steps output zeros instead of the previous output.
        seed, use_cudnn: Keras 3; dropout seed, and cuDNN (the same numbers).
        stateful, time_major: refused (True).

    Input shape: ``(N, T, F)``; with ``initial_state=[h, c]`` (or inputs ``[x, h, c]``)
    the states are ``(N, units)``.

    Output shape: ``(N, T, units)`` with ``return_sequences``, else ``(N, units)``; with
    ``return_state`` followed by h and c, ``(N, units)`` each.

    Weights are ``[kernel (F, 4u), recurrent_kernel (u, 4u), bias (4u,)]`` with gates in
    the order input, forget, cell, output.
    """

    gate_count = 4
    state_names = ("h", "c")

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = VERSION_DEFAULT,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        implementation: int = 1,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        seed: int | None = None,
        use_cudnn: Any = "auto",
        time_major: bool = False,
        zero_output_for_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
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
            use_cudnn=use_cudnn,
            time_major=time_major,
            zero_output_for_mask=zero_output_for_mask,
            **kwargs,
        )
        self.unit_forget_bias = bool(unit_forget_bias)

    def build(self, input_shape: Any) -> None:
        features = self._features(input_shape)
        u = self.units
        self.kernel = add_owned_weight(self, "kernel", (features, 4 * u))
        self.recurrent_kernel = add_owned_weight(self, "recurrent_kernel", (u, 4 * u))
        self.bias = None
        if self.use_bias:
            self.bias = add_owned_weight(self, "bias", (4 * u,), self._bias_initializer())
        self._finish_build(features)

    def _bias_initializer(self) -> Any:
        if not self.unit_forget_bias:
            return self.bias_initializer
        base, u = self.bias_initializer, self.units

        def forget_bias_one(shape: tuple, dtype: Any = None) -> np.ndarray:
            return np.concatenate(
                [base((u,), dtype=dtype), np.ones(u, dtype=dtype), base((2 * u,), dtype=dtype)]
            )

        return forget_bias_one

    def _step(self, input_dropout: Any, recurrent_dropout: Any) -> Step:
        return partial(
            lstm_step,
            kernel=self.kernel.value,
            recurrent_kernel=self.recurrent_kernel.value,
            bias=self.bias.value if self.bias is not None else None,
            activation=self.activation,
            recurrent_activation=self.recurrent_activation,
            input_dropout=input_dropout,
            recurrent_dropout=recurrent_dropout,
        )

    def _own_config(self) -> dict[str, Any]:
        return {"unit_forget_bias": self.unit_forget_bias}
