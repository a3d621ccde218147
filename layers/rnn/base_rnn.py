"""What LSTM, GRU and SimpleRNN share: the time loop, config keys, initial states, masks,
output shapes (spec 10.1 and 10.3).

:func:`rnn_forward` is the one time loop; a cell's step function
(``layers/rnn/cells_math.py``) says what happens at one step. :class:`RecurrentLayer`
is the base of the three layers: a subclass declares its gate and state counts, creates
its weights in ``build`` and returns its bound step function from ``_step``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from layerserve import activations
from layerserve.errors import ConfigError, NotSupportedError, ShapeError, received
from layerserve.layers import shapes
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.tensor import NOT_GIVEN
from layerserve.layers.weight_options import (
    positive_int,
    set_weight_options,
    weight_options_config,
)
from layerserve.serialization import semantics_version, serialize

Step = Callable[[np.ndarray, list[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]
# Marks an argument left out, where Keras's default depends on the version (None is an
# activation: linear).
VERSION_DEFAULT: Any = type("VersionDefault", (), {"__repr__": lambda self: "<version default>"})()
WEIGHTS = ("kernel", "recurrent", "bias")
# How a masked step's output is formed (see RecurrentLayer.masked_output).
PREVIOUS, ZEROS, ZEROS_BY_TIME = "previous", "zeros", "zeros_by_time"


def rnn_forward(
    step: Step,
    x: np.ndarray,
    states: list[np.ndarray],
    mask: np.ndarray | None = None,
    go_backwards: bool = False,
    zero_output_for_mask: bool = False,
    zero_first_output: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Runs ``step(x_t, states) -> (output, new_states)`` over the time axis of
    ``x (N, T, F)``; returns ``(last_output, outputs (N, T, u), final_states)``.

    ``go_backwards`` processes steps T−1 … 0, and ``outputs`` stays in processing order
    (Keras returns the reversed sequence). At a masked step (``mask (N, T)`` False) every
    state carries over and the output is the previous step's output, or zeros with
    ``zero_output_for_mask``. Before the first step the previous output is zeros
    (``zero_first_output``) or ``states[0]``. With no steps the last output is
    ``states[0]``.
    """
    batch, steps = x.shape[0], x.shape[1]
    states = [np.asarray(s, dtype=x.dtype) for s in states]
    units = states[0].shape[-1]
    if go_backwards:
        x = x[:, ::-1]
        mask = mask[:, ::-1] if mask is not None else None
    previous = np.zeros_like(states[0]) if zero_first_output else states[0]
    outputs = np.zeros((batch, steps, units), dtype=x.dtype)
    for t in range(steps):
        output, new_states = step(x[:, t], states)
        output = np.asarray(output, dtype=x.dtype)
        if mask is not None:
            keep = mask[:, t][:, np.newaxis]
            fill = np.zeros_like(output) if zero_output_for_mask else previous
            output = np.where(keep, output, fill)
            new_states = [
                np.where(keep, new, old) for new, old in zip(new_states, states, strict=True)
            ]
        states = [np.asarray(s, dtype=x.dtype) for s in new_states]
        previous = output
        outputs[:, t] = output
    last = outputs[:, -1] if steps else states[0]
    return last, outputs, states


def require_timesteps(kind: str, name: str, x: np.ndarray) -> None:
    """Keras (2.2, tf.keras 2.x and 3) cannot run a recurrent layer over no timesteps: its
    loop reads the last step's output, and the call fails. So does this one, rather than
    answer with the initial state, a number Keras never gives."""
    if np.ndim(x) == 3 and np.shape(x)[1] == 0:
        raise ShapeError(
            f"{kind} {name} expects at least one timestep, as Keras does. Expected input "
            "shape (batch, timesteps >= 1, features). " + received("input shape", np.shape(x))
        )


def clamped_rate(name: str, value: Any) -> float:
    """Keras clamps recurrent dropout rates into [0, 1]; anything but a number is an error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ConfigError(
            f"Expected `{name}` to be a float between 0 and 1. " + received(name, value)
        )
    return min(1.0, max(0.0, float(value)))


def default_recurrent_activation() -> str:
    """Keras 2.3 and later (tf.keras, Keras 3) default to sigmoid, Keras 2.2 to
    hard_sigmoid (Keras 2.3.0's release notes)."""
    return "sigmoid" if semantics_version() >= (2, 3, 0) else "hard_sigmoid"


class RecurrentLayer(Layer):
    """Base of LSTM, GRU and SimpleRNN over ``(N, timesteps, features)`` inputs.

    Subclasses set ``gate_count`` (columns of the kernels are ``gate_count * units``) and
    ``state_names``, create ``kernel``, ``recurrent_kernel`` and ``bias`` in ``build``,
    and return their step function from ``_step``.
    """

    supports_masking = True
    casts_inputs = True
    gate_count = 1
    state_names: tuple[str, ...] = ("h",)
    has_recurrent_activation = True

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
        seed: int | None = None,
        use_cudnn: Any = "auto",
        time_major: bool = False,
        zero_output_for_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        kind = type(self).__name__
        if stateful:
            raise NotSupportedError(
                f"Stateful {kind} layers are not supported: a served model must not keep "
                "state between requests. " + received("stateful", stateful)
            )
        if time_major:
            raise NotSupportedError(
                "time_major inputs are not supported; pass "
                "(batch, timesteps, features). " + received("time_major", time_major)
            )
        if use_cudnn not in ("auto", True, False):  # as Keras 3 checks it
            raise ConfigError(
                "Expected `use_cudnn` to be one of 'auto', True, False. "
                + received("use_cudnn", use_cudnn)
            )
        if isinstance(implementation, bool) or implementation not in (0, 1, 2):
            raise ConfigError(
                "Expected `implementation` to be 1 or 2. "
                + received("implementation", implementation)
            )
        self.units = positive_int(units, "units")
        self.activation = activations.get(activation)
        if self.has_recurrent_activation:
            if recurrent_activation is VERSION_DEFAULT:
                recurrent_activation = default_recurrent_activation()
            self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
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
        self.dropout = clamped_rate("dropout", dropout)
        self.recurrent_dropout = clamped_rate("recurrent_dropout", recurrent_dropout)
        # Keras 1's implementation 0 ("cpu") is Keras 2's 1; the math never differs.
        self.implementation = 1 if implementation == 0 else int(implementation)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = False
        self.unroll = bool(unroll)
        self.seed = seed
        self.use_cudnn = use_cudnn  # cuDNN computes the same numbers (spec 10.5)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self._rng = np.random.default_rng(seed)
        self.kernel: Any = None
        self.recurrent_kernel: Any = None
        self.bias: Any = None
        self.input_spec = InputSpec(ndim=3)

    # ---- hooks ---------------------------------------------------------------------
    def _step(self, input_dropout: Any, recurrent_dropout: Any) -> Step:
        raise NotImplementedError

    def _own_config(self) -> dict[str, Any]:
        """The subclass's config keys, placed after ``use_bias``."""
        return {}

    # ---- semantics that vary by version --------------------------------------------
    @property
    def state_count(self) -> int:
        return len(self.state_names)

    @property
    def zero_first_output(self) -> bool:
        """The "previous output" of a leading masked step: zeros in every unrolled loop,
        on tf.keras (the "2.x-tf" files of TensorFlow 1.13-2.3 from 2.2.4-tf on, and
        2.4+) and on multi-backend Keras from 2.2.5 (whose TensorFlow loop took
        tf.keras's); the initial h on Keras 3 (JAX) and multi-backend Keras 2.2.0-2.2.4
        when not unrolled (spec 10.3; 2.2.4, 2.2.5 and TensorFlow 1.15's 2.2.4-tf checked
        by running them). The two differ only with a non-zero initial state."""
        if self.unroll or (2, 2, 5) <= self.keras_version < (3, 0, 0):
            return True
        return self.tf_keras_file and self.keras_version >= (2, 2, 4)

    @property
    def masked_output(self) -> str:
        """What a masked step outputs: ``"previous"`` (the previous step's output),
        ``"zeros"`` (``zero_output_for_mask``), or ``"zeros_by_time"``: tf.keras's unrolled
        loop zeroes the processing-order outputs where the *time-order* mask is False (the
        same positions unless ``go_backwards``) and the last output where the last
        processed step is masked. Keras 3's unrolled loop ignores
        ``zero_output_for_mask``."""
        if not self.zero_output_for_mask:
            return PREVIOUS
        if self.unroll and self.keras_version >= (3, 0, 0):
            return PREVIOUS
        if self.unroll and (2, 4, 0) <= self.keras_version < (3, 0, 0):
            return ZEROS_BY_TIME
        return ZEROS

    # ---- building ------------------------------------------------------------------
    def _features(self, input_shape: Any) -> int:
        if isinstance(input_shape, list):
            input_shape = input_shape[0]
        features = input_shape[-1]
        if features is None:
            raise ShapeError(
                f"The last dimension of the input to {type(self).__name__} should be "
                f"defined. Received: input_shape={tuple(input_shape)}"
            )
        return int(features)

    def _finish_build(self, features: int) -> None:
        self.input_spec = InputSpec(ndim=3, axes={-1: features})

    # ---- calling -------------------------------------------------------------------
    def __call__(
        self,
        inputs: Any,
        training: bool | None = None,
        mask: Any = NOT_GIVEN,
        initial_state: Any = None,
    ) -> Any:
        """``initial_state`` starts the recurrence from those states instead of zeros;
        as in Keras 2, the states become inputs 1, 2, ... of the call."""
        if initial_state is not None:
            inputs, mask = states_as_inputs(
                f"{type(self).__name__} {self.name}",
                inputs,
                self._initial_state_list(initial_state),
                mask,
                keras3=self.keras_version >= (3, 0, 0),
            )
        return super().__call__(inputs, training=training, mask=mask)

    def _initial_state_list(self, initial_state: Any) -> list[Any]:
        names = ", ".join(self.state_names)
        if not isinstance(initial_state, (list, tuple)) and self.state_count == 1:
            return [initial_state]  # Keras takes one tensor for a one-state layer
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else None
        if states is None or len(states) != self.state_count:
            raise ShapeError(
                f"{type(self).__name__} {self.name} expects `initial_state` to be a list of "
                f"{self.state_count} tensors [{names}]. "
                f"Received: initial_state={initial_state!r}"[:300]
            )
        return states

    def _split(self, inputs: Any) -> tuple[Any, list[Any]]:
        """``x`` and the initial states (none, or one per state) of a call's inputs."""
        if not isinstance(inputs, (list, tuple)):
            return inputs, []
        if len(inputs) == 1:
            return inputs[0], []
        if len(inputs) != 1 + self.state_count:
            raise ShapeError(
                f"{type(self).__name__} {self.name} expects its input, or its input and "
                f"{self.state_count} initial state(s) [{', '.join(self.state_names)}]. "
                f"Received: {len(inputs)} tensors"
            )
        return inputs[0], list(inputs[1:])

    def _specs_for(self, count: int) -> list[InputSpec] | None:
        specs = self._specs()
        if count == 1 or specs is None:
            return specs
        return [specs[0], *[InputSpec(ndim=2, axes={-1: self.units})] * (count - 1)]

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        x, states = self._split(inputs)
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        mask_array = None if mask is None else np.asarray(mask, dtype=bool)
        kind = type(self).__name__
        require_timesteps(kind, self.name, x)
        if mask_array is not None and mask_array.shape != x.shape[:2]:
            raise ShapeError(
                f"{kind} {self.name} expects a mask of shape (batch, timesteps) = "
                f"{x.shape[:2]}. Received: mask shape={mask_array.shape}"
            )
        for state in states:
            if state.shape != (x.shape[0], self.units):
                raise ShapeError(
                    f"{kind} {self.name} expects initial states of shape (batch, units) = "
                    f"{(x.shape[0], self.units)}. Received: shape={state.shape}"
                )
        if not states:
            states = [np.zeros((x.shape[0], self.units), dtype=x.dtype)] * self.state_count
        step = self._step(*self._dropout_masks(x, training))
        rule = self.masked_output if mask_array is not None else PREVIOUS
        last, outputs, final = rnn_forward(
            step,
            x,
            states,
            mask_array,
            self.go_backwards,
            zero_output_for_mask=rule == ZEROS,
            zero_first_output=self.zero_first_output,
        )
        if rule == ZEROS_BY_TIME and outputs.shape[1]:
            outputs = np.where(mask_array[:, :, np.newaxis], outputs, 0).astype(x.dtype)
            processed_last = mask_array[:, 0] if self.go_backwards else mask_array[:, -1]
            last = np.where(processed_last[:, np.newaxis], last, 0).astype(x.dtype)
        output = outputs if self.return_sequences else last
        return [output, *final] if self.return_state else output

    def _dropout_masks(self, inputs: np.ndarray, training: bool) -> tuple[Any, Any]:
        """Per-gate multipliers ``(gates, N, width)`` drawn once per call (every step
        reuses them), or None; implementation 1 draws one per gate, 2 one for all."""
        if not training:
            return None, None
        batch, gates = inputs.shape[0], self.gate_count
        count = gates if self.implementation == 1 else 1

        def draw(rate: float, width: int) -> np.ndarray | None:
            if not 0.0 < rate < 1.0:
                return None
            keep = self._rng.random((count, batch, width)) >= rate
            masks = (keep / (1.0 - rate)).astype(inputs.dtype)
            return np.repeat(masks, gates // count, axis=0)

        return draw(self.dropout, inputs.shape[-1]), draw(self.recurrent_dropout, self.units)

    # ---- shapes, masks, config -----------------------------------------------------
    def compute_output_shape(self, input_shape: Any) -> Any:
        if isinstance(input_shape, list):
            input_shape = input_shape[0]
        return shapes.rnn_output_shapes(
            input_shape, self.units, self.return_sequences, self.return_state, self.state_count
        )

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * self.state_count
        return output_mask

    def _owns_activity_regularizer(self) -> bool:
        return True

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "units": self.units}
        config["activation"] = activations.serialize(self.activation)
        if self.has_recurrent_activation:
            config["recurrent_activation"] = activations.serialize(self.recurrent_activation)
        config["use_bias"] = self.use_bias
        config.update(weight_options_config(self, WEIGHTS, "initializer"))
        config.update(self._own_config())
        config.update(weight_options_config(self, WEIGHTS, "regularizer"))
        config["activity_regularizer"] = serialize(self.activity_regularizer)
        config.update(weight_options_config(self, WEIGHTS, "constraint"))
        config.update(
            {
                "dropout": self.dropout,
                "recurrent_dropout": self.recurrent_dropout,
                "implementation": self.implementation,
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "stateful": self.stateful,
                "unroll": self.unroll,
            }
        )
        if self.zero_output_for_mask:  # written as tf.keras writes it: only when True
            config["zero_output_for_mask"] = True
        if self.seed is not None:  # Keras 3 stores the dropout seed; Keras 2 has none
            config["seed"] = self.seed
        return config


def states_as_inputs(
    label: str, inputs: Any, states: list[Any], mask: Any, keras3: bool
) -> tuple[list[Any], Any]:
    """A call's ``initial_state`` as Keras 2 records it: inputs ``[x, *states]``, and the
    mask of ``x`` given as ``[mask, None, ...]``. ``keras3``: Keras 3 hands a call's mask
    over only when its inputs are one tensor argument, so with ``initial_state`` and no
    explicit mask the steps run unmasked (the output still carries the input's mask)."""
    if isinstance(inputs, (list, tuple)):
        raise ShapeError(
            f"{label} received its initial state twice: as inputs and as `initial_state`."
        )
    if mask is not NOT_GIVEN and mask is not None and not isinstance(mask, list):
        mask = [mask] + [None] * len(states)
    elif mask is NOT_GIVEN and keras3:
        mask = None
    return [inputs, *states], mask
