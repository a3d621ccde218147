"""GRU: gated recurrent unit over ``(N, timesteps, features)`` inputs."""

from __future__ import annotations

from functools import partial
from typing import Any

from layerserve.layers.rnn.base_rnn import VERSION_DEFAULT, RecurrentLayer, Step
from layerserve.layers.rnn.cells_math import gru_step
from layerserve.layers.weight_options import add_owned_weight
from layerserve.serialization import semantics_version


def default_reset_after() -> bool:
    """Keras 2.2/2.3 (and tf.keras 1.x's GRU) apply the reset gate before the recurrent
    product; tf.keras 2.x and Keras 3 after it (spec 10.1)."""
    return semantics_version() >= (2, 4, 0)


class GRU(RecurrentLayer):
    """Gated recurrent unit (Cho et al. 2014).

    Args:
        units: size of the output and of the state h.
        activation: for the candidate (default tanh).
        recurrent_activation: for the update and reset gates; default sigmoid,
            hard_sigmoid (0.2x+0.5) in Keras 2.2.
        use_bias: whether the layer has a bias.
        dropout, recurrent_dropout: training-only rates.
        implementation: 1 or 2; the same numbers either way.
        reset_after: apply the reset gate after the recurrent product (bias ``(2, 3u)``:
            input row, recurrent row) or before it (bias ``(3u,)``); default True, False in
            Keras 2.2.
        return_sequences, return_state, go_backwards, unroll: as in Keras.
        zero_output_for_mask: masked steps output zeros instead of the previous output.
        seed, use_cudnn: Keras 3; dropout seed, and cuDNN (the same numbers).
        stateful, time_major: refused (True).

    Input shape: ``(N, T, F)``; with ``initial_state=h`` (or inputs ``[x, h]``) the
    state is ``(N, units)``.

    Output shape: ``(N, T, units)`` with ``return_sequences``, else ``(N, units)``; with
    ``return_state`` followed by h, ``(N, units)``.

    Weights are ``[kernel (F, 3u), recurrent_kernel (u, 3u), bias]`` with gate blocks in
    the order update (z), reset (r), candidate (h).
    """

    gate_count = 3
    state_names = ("h",)

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = VERSION_DEFAULT,
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
        implementation: int = 1,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        reset_after: Any = VERSION_DEFAULT,
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
        self.reset_after = (
            default_reset_after() if reset_after is VERSION_DEFAULT else bool(reset_after)
        )

    def build(self, input_shape: Any) -> None:
        features = self._features(input_shape)
        u = self.units
        self.kernel = add_owned_weight(self, "kernel", (features, 3 * u))
        self.recurrent_kernel = add_owned_weight(self, "recurrent_kernel", (u, 3 * u))
        self.bias = None
        if self.use_bias:
            shape = (2, 3 * u) if self.reset_after else (3 * u,)
            self.bias = add_owned_weight(self, "bias", shape)
        self._finish_build(features)

    def _step(self, input_dropout: Any, recurrent_dropout: Any) -> Step:
        return partial(
            gru_step,
            kernel=self.kernel.value,
            recurrent_kernel=self.recurrent_kernel.value,
            bias=self.bias.value if self.bias is not None else None,
            activation=self.activation,
            recurrent_activation=self.recurrent_activation,
            reset_after=self.reset_after,
            input_dropout=input_dropout,
            recurrent_dropout=recurrent_dropout,
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "reset_after": self.reset_after}
