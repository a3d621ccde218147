"""The three recurrent cells (LSTM, GRU, SimpleRNN) as the RNN converters see them.

A :class:`Cell` knows, for its layer class: the ONNX op and its weights ``W, R, B``
(spec 10.6), which activation functions the op must apply (to decide whether the op can
match Keras exactly), and one step of the recurrence written with plain ONNX ops for the
``Scan`` path (spec 10.2). Everything else (masks, initial states, directions, outputs)
is shared by the emitters in ``rnn_native`` and ``rnn_scan``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerserve import activations
from layerserve.export.activations import emit_activation
from layerserve.export.builder import GraphBuilder, Value


@dataclass(frozen=True)
class _RnnActivation:
    """An ONNX RNN activation; ``alpha``/``beta`` are None where the function takes none."""

    op: str
    alpha: float | None = None
    beta: float | None = None


# ONNX's own defaults for the parameterised functions (used where a value is omitted).
_ONNX_DEFAULTS = {"HardSigmoid": (0.2, 0.5), "Elu": (1.0, None)}

# Not softplus: onnxruntime's fused ops compute log(1 + exp(x)), infinite past x = 88
# where Keras (and the Scan's Softplus) stays finite; a softplus layer takes the Scan.
_RNN_ACTIVATIONS: dict[str, _RnnActivation] = {
    "sigmoid": _RnnActivation("Sigmoid"),
    "tanh": _RnnActivation("Tanh"),
    "relu": _RnnActivation("Relu"),
    "softsign": _RnnActivation("Softsign"),
    "elu": _RnnActivation("Elu", alpha=1.0),
    "hard_sigmoid": _RnnActivation("HardSigmoid", alpha=0.2, beta=0.5),
    "hard_sigmoid_v3": _RnnActivation("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
}


def _rnn_activation(function: Callable) -> _RnnActivation | None:
    key = activations.serialize(function)
    if not isinstance(key, str) or getattr(activations, key, None) is not function:
        return None  # a user function, an activation layer, or a parameterised built-in
    return _RNN_ACTIVATIONS.get(key)


def activation_attributes(functions: tuple[Callable, ...]) -> dict[str, Any] | None:
    """The op's ``activations`` (and alpha/beta) attributes, or None if it cannot match.

    ONNX says alpha/beta values are "consumed in the order of activation functions";
    onnxruntime hands them out only to the functions that take one, other runtimes by
    position. Lists are written only where both readings agree (the functions taking the
    parameter come first), or omitted where every value is ONNX's default.
    """
    found = [_rnn_activation(f) for f in functions]
    if any(f is None for f in found):
        return None
    onnx_functions = [f for f in found if f is not None]
    attributes: dict[str, Any] = {"activations": [f.op for f in onnx_functions]}
    for index, field in enumerate(("alpha", "beta")):
        values = [getattr(f, field) for f in onnx_functions]
        taken = [i for i, v in enumerate(values) if v is not None]
        if not taken:
            continue
        if taken == list(range(len(taken))):
            attributes[f"activation_{field}"] = [float(values[i]) for i in taken]
        elif any(values[i] != _ONNX_DEFAULTS[onnx_functions[i].op][index] for i in taken):
            return None
    return attributes


def _array(variable: Any, dtype: Any) -> np.ndarray:
    return np.asarray(variable.value, dtype=dtype)


class Cell:
    """The per-cell facts; subclasses fill them in."""

    op_type: str = ""
    gates: int = 1
    state_labels: tuple[str, ...] = ("h",)

    def functions(self, layer: Any) -> tuple[Callable, ...]:
        """The activation functions the ONNX op applies, in its ``activations`` order."""
        raise NotImplementedError

    def op_attributes(self, layer: Any) -> dict[str, Any]:
        return {}

    def onnx_weights(self, layer: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``W [1, g·u, F]``, ``R [1, g·u, u]`` and ``B [1, 2·g·u]`` for the ONNX op."""
        units = layer.units
        kernel, recurrent = _array(layer.kernel, dtype), _array(layer.recurrent_kernel, dtype)
        bias = self.bias_pair(layer, dtype)
        w, r = kernel.T[np.newaxis], recurrent.T[np.newaxis]
        b = np.concatenate([bias[0], bias[1]])[np.newaxis] if bias is not None else None
        if b is None:
            b = np.zeros((1, 2 * self.gates * units), dtype=dtype)
        return (np.ascontiguousarray(w), np.ascontiguousarray(r), np.ascontiguousarray(b))

    def bias_pair(self, layer: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """(input bias, recurrent bias), each ``(g·u,)``; None without a bias."""
        if layer.bias is None:
            return None
        bias = _array(layer.bias, dtype)
        if bias.ndim == 2:  # GRU reset_after: rows are the input and the recurrent bias
            return bias[0], bias[1]
        return bias, np.zeros_like(bias)

    def recurrent_constants(self, builder: GraphBuilder, layer: Any, dtype: Any) -> list[str]:
        """Outer initializers the Scan step reads (recurrent kernel and the like)."""
        return [builder.constant(_array(layer.recurrent_kernel, dtype), f"{layer.name}_recurrent")]

    def step(
        self,
        body: GraphBuilder,
        layer: Any,
        constants: list[str],
        states: list[str],
        x_t: str,
        dtype: str,
    ) -> list[str]:
        """New states (h first) from the previous ones and ``x_t @ kernel + input bias``."""
        raise NotImplementedError


def _act(
    body: GraphBuilder, layer: Any, function: Callable, value: str, label: str, dtype: str
) -> str:
    return emit_activation(
        body, function, Value(value, (None, layer.units), dtype), f"{layer.name}_{label}"
    )


def _split(body: GraphBuilder, value: str, parts: int, name: str) -> list[str]:
    # Equal parts: no `split` sizes input, whose value (an outer initializer) shape
    # inference inside the body could not see; opset 18 names the count instead.
    return body.op(
        "Split",
        [value],
        name,
        outputs=parts,
        axis=1,
        num_outputs=parts if body.opset >= 18 else None,
    )


class LstmCell(Cell):
    """Keras blocks i, f, c, o; ONNX wants i, o, f, c."""

    op_type, gates, state_labels = "LSTM", 4, ("h", "c")
    onnx_gate_order = (0, 3, 1, 2)

    def functions(self, layer: Any) -> tuple[Callable, ...]:
        return (layer.recurrent_activation, layer.activation, layer.activation)

    def reorder(self, array: np.ndarray) -> np.ndarray:
        blocks = np.split(array, 4, axis=-1)
        return np.concatenate([blocks[g] for g in self.onnx_gate_order], axis=-1)

    def onnx_weights(self, layer: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w, r, b = super().onnx_weights(layer, dtype)
        units = layer.units
        w = self.reorder(w[0].T).T[np.newaxis]
        r = self.reorder(r[0].T).T[np.newaxis]
        b = np.concatenate([self.reorder(b[0, : 4 * units]), b[0, 4 * units :]])[np.newaxis]
        return (np.ascontiguousarray(w), np.ascontiguousarray(r), np.ascontiguousarray(b))

    def step(
        self,
        body: GraphBuilder,
        layer: Any,
        constants: list[str],
        states: list[str],
        x_t: str,
        dtype: str,
    ) -> list[str]:
        name = layer.name
        h_prev, c_prev = states
        hidden = body.op("MatMul", [h_prev, constants[0]], f"{name}_h_recurrent")
        pre = body.op("Add", [x_t, hidden], f"{name}_preactivation")
        gates = _split(body, pre, 4, f"{name}_gate")
        rec, act = layer.recurrent_activation, layer.activation
        i = _act(body, layer, rec, gates[0], "input_gate", dtype)
        f = _act(body, layer, rec, gates[1], "forget_gate", dtype)
        candidate = _act(body, layer, act, gates[2], "candidate", dtype)
        o = _act(body, layer, rec, gates[3], "output_gate", dtype)
        forget = body.op("Mul", [f, c_prev], f"{name}_forget_c")
        c_new = body.op(
            "Add", [forget, body.op("Mul", [i, candidate], f"{name}_input_c")], f"{name}_c_new"
        )
        h_new = body.op(
            "Mul", [o, _act(body, layer, act, c_new, "c_activated", dtype)], f"{name}_h_new"
        )
        return [h_new, c_new]


class GruCell(Cell):
    """Blocks z, r, h in Keras and ONNX alike; ``linear_before_reset = reset_after``."""

    op_type, gates = "GRU", 3

    def functions(self, layer: Any) -> tuple[Callable, ...]:
        return (layer.recurrent_activation, layer.activation)

    def op_attributes(self, layer: Any) -> dict[str, Any]:
        return {"linear_before_reset": int(bool(layer.reset_after))}

    def recurrent_constants(self, builder: GraphBuilder, layer: Any, dtype: Any) -> list[str]:
        name, units = layer.name, layer.units
        recurrent = _array(layer.recurrent_kernel, dtype)
        if not layer.reset_after:
            # ĥ needs (r ⊙ h) @ U_h: keep U_zr and U_h apart rather than split a product.
            return [
                builder.constant(recurrent[:, : 2 * units], f"{name}_recurrent_zr"),
                builder.constant(recurrent[:, 2 * units :], f"{name}_recurrent_h"),
            ]
        constants = [builder.constant(recurrent, f"{name}_recurrent")]
        bias = self.bias_pair(layer, dtype)
        if bias is not None:
            constants.append(builder.constant(bias[1], f"{name}_recurrent_bias"))
        return constants

    def step(
        self,
        body: GraphBuilder,
        layer: Any,
        constants: list[str],
        states: list[str],
        x_t: str,
        dtype: str,
    ) -> list[str]:
        name = layer.name
        (h_prev,) = states
        xz, xr, xh = _split(body, x_t, 3, f"{name}_x_gate")
        rec = layer.recurrent_activation
        if layer.reset_after:
            hidden = body.op("MatMul", [h_prev, constants[0]], f"{name}_h_recurrent")
            if len(constants) > 1:
                hidden = body.op("Add", [hidden, constants[1]], f"{name}_h_recurrent_biased")
            hz, hr, hh = _split(body, hidden, 3, f"{name}_h_gate")
            z = _act(
                body, layer, rec, body.op("Add", [xz, hz], f"{name}_z_pre"), "update_gate", dtype
            )
            r = _act(
                body, layer, rec, body.op("Add", [xr, hr], f"{name}_r_pre"), "reset_gate", dtype
            )
            reset = body.op("Mul", [r, hh], f"{name}_reset_hidden")
        else:
            hidden = body.op("MatMul", [h_prev, constants[0]], f"{name}_h_recurrent")
            hz, hr = _split(body, hidden, 2, f"{name}_h_gate")
            z = _act(
                body, layer, rec, body.op("Add", [xz, hz], f"{name}_z_pre"), "update_gate", dtype
            )
            r = _act(
                body, layer, rec, body.op("Add", [xr, hr], f"{name}_r_pre"), "reset_gate", dtype
            )
            reset_h = body.op("Mul", [r, h_prev], f"{name}_reset_h")
            reset = body.op("MatMul", [reset_h, constants[1]], f"{name}_reset_hidden")
        candidate_pre = body.op("Add", [xh, reset], f"{name}_candidate_pre")
        candidate = _act(body, layer, layer.activation, candidate_pre, "candidate", dtype)
        # Keras: h = z ⊙ h_prev + (1 − z) ⊙ ĥ, written the same way.
        one = body.constant(np.ones((), dtype=dtype), f"{name}_one")
        keep = body.op("Mul", [z, h_prev], f"{name}_kept")
        fresh = body.op(
            "Mul", [body.op("Sub", [one, z], f"{name}_one_minus_z"), candidate], f"{name}_fresh"
        )
        return [body.op("Add", [keep, fresh], f"{name}_h_new")]


class SimpleRnnCell(Cell):
    """``h' = act(x·W + b + h·U)``: the ONNX ``RNN`` op."""

    op_type = "RNN"

    def functions(self, layer: Any) -> tuple[Callable, ...]:
        return (layer.activation,)

    def step(
        self,
        body: GraphBuilder,
        layer: Any,
        constants: list[str],
        states: list[str],
        x_t: str,
        dtype: str,
    ) -> list[str]:
        name = layer.name
        hidden = body.op("MatMul", [states[0], constants[0]], f"{name}_h_recurrent")
        pre = body.op("Add", [x_t, hidden], f"{name}_preactivation")
        return [_act(body, layer, layer.activation, pre, "h_new", dtype)]


LSTM_CELL, GRU_CELL, SIMPLE_RNN_CELL = LstmCell(), GruCell(), SimpleRnnCell()
