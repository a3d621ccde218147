"""LSTM: long short-term memory over ``(N, timesteps, features)`` inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve.errors import ConfigError, NotSupportedError, ShapeError, received
from layerserve.layers import shapes
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.tensor import NOT_GIVEN
from layerserve.layers.weight_options import (
    add_owned_weight,
    positive_int,
    set_weight_options,
    weight_options_config,
)
from layerserve.serialization import semantics_version, serialize


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
    """Returns ``(outputs (N, T, u), h_T, c_T)``; gate blocks are ordered i, f, c, o.

    At a masked step the states carry over and the step emits the previous step's
    output. Before the first step that "previous output" is zeros
    (``zero_first_output``: tf.keras) or the initial h (Keras 3 on JAX, multi-backend
    Keras); the two differ only with a non-zero initial state. The last output is
    ``outputs[:, -1]``. ``input_dropout`` / ``recurrent_dropout`` hold one multiplier per
    gate: ``(4, N, F)``.
    """
    batch, steps = x.shape[0], x.shape[1]
    units = recurrent_kernel.shape[0]
    if go_backwards:
        x = x[:, ::-1]
        mask = mask[:, ::-1] if mask is not None else None
    if initial_state is None:
        h = np.zeros((batch, units), dtype=x.dtype)
        c = np.zeros((batch, units), dtype=x.dtype)
    else:
        h, c = (np.asarray(s, dtype=x.dtype) for s in initial_state)
    last = np.zeros_like(h) if zero_first_output else h
    outputs = np.zeros((batch, steps, units), dtype=x.dtype)
    gate_kernels = np.split(kernel, 4, axis=1)
    gate_recurrent = np.split(recurrent_kernel, 4, axis=1)
    gate_bias = np.split(bias, 4) if bias is not None else [0.0] * 4
    for t in range(steps):
        x_t = x[:, t]
        pre = []
        for gate in range(4):
            xg = x_t * input_dropout[gate] if input_dropout is not None else x_t
            hg = h * recurrent_dropout[gate] if recurrent_dropout is not None else h
            pre.append(xg @ gate_kernels[gate] + hg @ gate_recurrent[gate] + gate_bias[gate])
        i = recurrent_activation(pre[0])
        f = recurrent_activation(pre[1])
        c_new = f * c + i * activation(pre[2])
        o = recurrent_activation(pre[3])
        h_new = o * activation(c_new)
        output = h_new
        if mask is not None:
            keep = mask[:, t][:, np.newaxis]
            output = np.where(keep, h_new, last)
            h_new = np.where(keep, h_new, h)
            c_new = np.where(keep, c_new, c)
        h, c = h_new.astype(x.dtype), c_new.astype(x.dtype)
        last = output.astype(x.dtype)
        outputs[:, t] = last
    return outputs, h, c


def _clamped_rate(name: str, value: Any) -> float:
    """Keras 2.2 clamps LSTM dropout rates into [0, 1]; anything but a number is an error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ConfigError(
            f"Expected `{name}` to be a float between 0 and 1. " + received(name, value)
        )
    return min(1.0, max(0.0, float(value)))


_WEIGHTS = ("kernel", "recurrent", "bias")


class LSTM(Layer):
    """Long short-term memory layer (Hochreiter 1997), Keras 2.2 defaults.

    Weights are ``[kernel (F, 4u), recurrent_kernel (u, 4u), bias (4u,)]`` with gates in
    the order input, forget, cell, output.
    """

    supports_masking = True
    casts_inputs = True

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = None,
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
        **kwargs: Any,
    ) -> None:
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if stateful:
            raise NotSupportedError(
                "Stateful LSTMs are not supported: a served model must "
                "not keep state between requests. " + received("stateful", stateful)
            )
        if time_major:
            raise NotSupportedError(
                "time_major inputs are not supported; pass "
                "(batch, timesteps, features). " + received("time_major", time_major)
            )
        if recurrent_activation is None:
            # Keras 2.3 and later (tf.keras, Keras 3) default to sigmoid.
            recurrent_activation = "sigmoid" if semantics_version() >= (2, 3, 0) else "hard_sigmoid"
        self.units = positive_int(units, "units")
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.unit_forget_bias = bool(unit_forget_bias)
        set_weight_options(
            self,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
        )
        self.dropout = _clamped_rate("dropout", dropout)
        self.recurrent_dropout = _clamped_rate("recurrent_dropout", recurrent_dropout)
        if isinstance(implementation, bool) or implementation not in (0, 1, 2):
            raise ConfigError(
                "Expected `implementation` to be 1 or 2. "
                + received("implementation", implementation)
            )
        self.implementation = 1 if implementation == 0 else int(implementation)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = False
        self.unroll = bool(unroll)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.input_spec = InputSpec(ndim=3)

    def build(self, input_shape: Any) -> None:
        if isinstance(input_shape, list):
            input_shape = input_shape[0]
        features = input_shape[-1]
        if features is None:
            raise ShapeError(
                "The last dimension of the input to LSTM should be defined. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        u = self.units
        self.kernel = add_owned_weight(self, "kernel", (features, 4 * u))
        self.recurrent_kernel = add_owned_weight(self, "recurrent_kernel", (u, 4 * u))
        self.bias = None
        if self.use_bias:
            self.bias = add_owned_weight(self, "bias", (4 * u,), self._bias_initializer())
        self.input_spec = InputSpec(ndim=3, axes={-1: features})

    def _bias_initializer(self) -> Any:
        if not self.unit_forget_bias:
            return self.bias_initializer
        base, u = self.bias_initializer, self.units

        def forget_bias_one(shape: tuple, dtype: Any = None) -> np.ndarray:
            return np.concatenate(
                [base((u,), dtype=dtype), np.ones(u, dtype=dtype), base((2 * u,), dtype=dtype)]
            )

        return forget_bias_one

    def __call__(
        self,
        inputs: Any,
        training: bool | None = None,
        mask: Any = NOT_GIVEN,
        initial_state: Any = None,
    ) -> Any:
        """``initial_state=[h, c]`` starts the recurrence from those states instead of
        zeros; as in Keras 2, the states become inputs 1 and 2 of the call."""
        if initial_state is not None:
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else None
            if states is None or len(states) != 2:
                raise ShapeError(
                    f"LSTM {self.name} expects `initial_state` to be a list of 2 tensors "
                    f"[h, c]. Received: initial_state={initial_state!r}"[:300]
                )
            if isinstance(inputs, (list, tuple)):
                raise ShapeError(
                    f"LSTM {self.name} received its initial state twice: as inputs and as "
                    "`initial_state`."
                )
            inputs = [inputs, *states]
            if mask is not NOT_GIVEN and mask is not None and not isinstance(mask, list):
                mask = [mask, None, None]
            elif mask is NOT_GIVEN and self.keras_version >= (3, 0, 0):
                # Keras 3 hands a call's mask over only when its inputs are one tensor
                # argument; with `initial_state` the steps run unmasked (the output
                # still carries the input's mask).
                mask = None
        return super().__call__(inputs, training=training, mask=mask)

    def _split(self, inputs: Any) -> tuple[Any, list[Any]]:
        """``x`` and the initial states (none, or ``[h, c]``) of a call's inputs."""
        if not isinstance(inputs, (list, tuple)):
            return inputs, []
        if len(inputs) == 1:
            return inputs[0], []
        if len(inputs) != 3:
            raise ShapeError(
                f"LSTM {self.name} expects its input, or its input and 2 initial states "
                f"[h, c]. Received: {len(inputs)} tensors"
            )
        return inputs[0], list(inputs[1:])

    def _specs_for(self, count: int) -> list[InputSpec] | None:
        specs = self._specs()
        if count == 1 or specs is None:
            return specs
        return [specs[0], *[InputSpec(ndim=2, axes={-1: self.units})] * (count - 1)]

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        x, states = self._split(inputs)
        mask, _ = self._split(mask) if isinstance(mask, (list, tuple)) else (mask, [])
        input_drop, recurrent_drop = self._dropout_masks(x, training)
        mask_array = None if mask is None else np.asarray(mask, dtype=bool)
        if mask_array is not None and mask_array.shape != x.shape[:2]:
            raise ShapeError(
                f"LSTM {self.name} expects a mask of shape (batch, timesteps) = "
                f"{x.shape[:2]}. Received: mask shape={mask_array.shape}"
            )
        for state in states:
            if state.shape != (x.shape[0], self.units):
                raise ShapeError(
                    f"LSTM {self.name} expects initial states of shape (batch, units) = "
                    f"{(x.shape[0], self.units)}. Received: shape={state.shape}"
                )
        outputs, h, c = lstm_forward(
            x,
            self.kernel.value,
            self.recurrent_kernel.value,
            self.bias.value if self.bias is not None else None,
            self.activation,
            self.recurrent_activation,
            mask_array,
            self.go_backwards,
            input_drop,
            recurrent_drop,
            initial_state=(states[0], states[1]) if states else None,
            zero_first_output=self.zero_first_output,
        )
        output = outputs if self.return_sequences else outputs[:, -1]
        if outputs.shape[1] == 0:
            output = outputs if self.return_sequences else h
        return [output, h, c] if self.return_state else output

    @property
    def zero_first_output(self) -> bool:
        """tf.keras (and Keras 3 on TensorFlow) start the "previous output" of masked steps
        from zeros; Keras 3 on JAX and multi-backend Keras from the initial h (spec 10.3)."""
        return (2, 4, 0) <= self.keras_version < (3, 0, 0)

    def _dropout_masks(self, inputs: np.ndarray, training: bool) -> tuple[Any, Any]:
        if not training:
            return None, None
        batch = inputs.shape[0]
        count = 4 if self.implementation == 1 else 1

        def draw(rate: float, width: int) -> np.ndarray | None:
            if not 0.0 < rate < 1.0:
                return None
            keep = self._rng.random((count, batch, width)) >= rate
            masks = (keep / (1.0 - rate)).astype(inputs.dtype)
            return np.repeat(masks, 4 // count, axis=0)

        return draw(self.dropout, inputs.shape[-1]), draw(self.recurrent_dropout, self.units)

    def compute_output_shape(self, input_shape: Any) -> Any:
        if isinstance(input_shape, list):
            input_shape = input_shape[0]
        return shapes.rnn_output_shapes(
            input_shape, self.units, self.return_sequences, self.return_state
        )

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask, None, None]
        return output_mask

    def _owns_activity_regularizer(self) -> bool:
        return True

    def get_config(self) -> dict[str, Any]:
        config = {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            **weight_options_config(self, _WEIGHTS, "initializer"),
            "unit_forget_bias": self.unit_forget_bias,
            **weight_options_config(self, _WEIGHTS, "regularizer"),
            "activity_regularizer": serialize(self.activity_regularizer),
            **weight_options_config(self, _WEIGHTS, "constraint"),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "implementation": self.implementation,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
        }
        if self.seed is not None:  # Keras 3 stores the dropout seed; Keras 2.2 has none
            config["seed"] = self.seed
        return config
