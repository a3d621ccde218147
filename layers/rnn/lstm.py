"""LSTM: long short-term memory over ``(N, timesteps, features)`` inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import activations
from layerserve.errors import ConfigError, NotSupportedError, ShapeError, received
from layerserve.layers import shapes
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``(outputs (N, T, u), h_T, c_T)``; gate blocks are ordered i, f, c, o.

    At a masked step both states and the emitted output carry over from the step before.
    ``input_dropout`` / ``recurrent_dropout`` hold one multiplier per gate: ``(4, N, F)``.
    """
    batch, steps = x.shape[0], x.shape[1]
    units = recurrent_kernel.shape[0]
    if go_backwards:
        x = x[:, ::-1]
        mask = mask[:, ::-1] if mask is not None else None
    h = np.zeros((batch, units), dtype=x.dtype)
    c = np.zeros((batch, units), dtype=x.dtype)
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
        if mask is not None:
            keep = mask[:, t][:, np.newaxis]
            h_new = np.where(keep, h_new, h)
            c_new = np.where(keep, c_new, c)
        h, c = h_new.astype(x.dtype), c_new.astype(x.dtype)
        outputs[:, t] = h
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

    def build(self, input_shape: tuple) -> None:
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

    def call(self, inputs: np.ndarray, training: bool = False, mask: Any = None) -> Any:
        input_drop, recurrent_drop = self._dropout_masks(inputs, training)
        mask_array = None if mask is None else np.asarray(mask, dtype=bool)
        if mask_array is not None and mask_array.shape != inputs.shape[:2]:
            raise ShapeError(
                f"LSTM {self.name} expects a mask of shape (batch, timesteps) = "
                f"{inputs.shape[:2]}. Received: mask shape={mask_array.shape}"
            )
        outputs, h, c = lstm_forward(
            inputs,
            self.kernel.value,
            self.recurrent_kernel.value,
            self.bias.value if self.bias is not None else None,
            self.activation,
            self.recurrent_activation,
            mask_array,
            self.go_backwards,
            input_drop,
            recurrent_drop,
        )
        output = outputs if self.return_sequences else h
        return [output, h, c] if self.return_state else output

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

    def compute_output_shape(self, input_shape: tuple) -> Any:
        return shapes.rnn_output_shapes(
            input_shape, self.units, self.return_sequences, self.return_state
        )

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
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
