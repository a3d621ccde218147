"""One time step of each Keras recurrent cell, in NumPy (spec 10.2).

Every step has the signature ``step(x_t, states, *weights, ...) -> (output, new_states)``
with ``x_t (N, F)`` and ``states`` a list of ``(N, u)`` arrays; bind the weights with
``functools.partial`` to get the ``step(x_t, states)`` that :func:`rnn_forward` runs.
Gate blocks are contiguous column blocks of the kernels: SimpleRNN one block, GRU
``z, r, h``, LSTM ``i, f, c, o``.

``input_dropout`` / ``recurrent_dropout`` (training only) hold one multiplier per gate,
``(gates, N, F)`` and ``(gates, N, u)``: Keras 2's implementation 1 draws a mask per gate,
the others reuse one (the caller repeats it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Activation = Callable[[Any], Any]


def _gate_inputs(
    value: np.ndarray, dropout: np.ndarray | None, gates: int
) -> list[np.ndarray] | None:
    """``value`` times each gate's dropout multiplier, or None without dropout."""
    if dropout is None:
        return None
    return [value * dropout[g] for g in range(gates)]


def _projections(
    value: np.ndarray, matrix: np.ndarray, dropout: np.ndarray | None, gates: int
) -> list[np.ndarray]:
    """``value @ matrix`` split into the gate blocks; with dropout, each block from its own
    masked copy of ``value``."""
    masked = _gate_inputs(value, dropout, gates)
    if masked is None:
        return np.split(value @ matrix, gates, axis=-1)
    blocks = np.split(matrix, gates, axis=-1)
    return [masked[g] @ blocks[g] for g in range(gates)]


def simple_rnn_step(
    x_t: np.ndarray,
    states: list[np.ndarray],
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None,
    activation: Activation,
    input_dropout: np.ndarray | None = None,
    recurrent_dropout: np.ndarray | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``h = act(x·W + b + h_prev·U)``; the output is the new ``h``."""
    (h_prev,) = states
    (x_part,) = _projections(x_t, kernel, input_dropout, 1)
    if bias is not None:
        x_part = x_part + bias
    (h_part,) = _projections(h_prev, recurrent_kernel, recurrent_dropout, 1)
    h = np.asarray(activation(x_part + h_part), dtype=x_t.dtype)
    return h, [h]


def gru_step(
    x_t: np.ndarray,
    states: list[np.ndarray],
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None,
    activation: Activation,
    recurrent_activation: Activation,
    reset_after: bool,
    input_dropout: np.ndarray | None = None,
    recurrent_dropout: np.ndarray | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Gates ``z, r``, candidate ``ĥ``, and ``h = z·h_prev + (1 − z)·ĥ``.

    ``reset_after`` (bias ``(2, 3u)``: input row, recurrent row) applies the reset gate
    after the recurrent product, ``ĥ = act(x·W_h + b⁰_h + r·(h·U_h + b¹_h))``; otherwise
    (bias ``(3u,)``) before it, ``ĥ = act(x·W_h + b_h + (r·h)·U_h)``.
    """
    (h_prev,) = states
    if bias is None:
        input_bias = recurrent_bias = None
    elif reset_after:
        input_bias, recurrent_bias = bias[0], bias[1]
    else:
        input_bias, recurrent_bias = bias, None
    x_z, x_r, x_h = _projections(x_t, kernel, input_dropout, 3)
    if input_bias is not None:
        b_z, b_r, b_h = np.split(input_bias, 3)
        x_z, x_r, x_h = x_z + b_z, x_r + b_r, x_h + b_h
    h_gates = _gate_inputs(h_prev, recurrent_dropout, 3) or [h_prev] * 3
    u_z, u_r, u_h = np.split(recurrent_kernel, 3, axis=-1)
    if reset_after:
        if recurrent_dropout is None:
            h_z, h_r, h_h = np.split(h_prev @ recurrent_kernel, 3, axis=-1)
        else:
            h_z, h_r, h_h = h_gates[0] @ u_z, h_gates[1] @ u_r, h_gates[2] @ u_h
        if recurrent_bias is not None:
            c_z, c_r, c_h = np.split(recurrent_bias, 3)
            h_z, h_r, h_h = h_z + c_z, h_r + c_r, h_h + c_h
        z = recurrent_activation(x_z + h_z)
        r = recurrent_activation(x_r + h_r)
        candidate = activation(x_h + r * h_h)
    else:
        if recurrent_dropout is None:
            h_z, h_r = np.split(h_prev @ recurrent_kernel[:, : 2 * u_z.shape[1]], 2, axis=-1)
        else:
            h_z, h_r = h_gates[0] @ u_z, h_gates[1] @ u_r
        z = recurrent_activation(x_z + h_z)
        r = recurrent_activation(x_r + h_r)
        candidate = activation(x_h + (r * h_gates[2]) @ u_h)
    h = np.asarray(z * h_prev + (1 - z) * candidate, dtype=x_t.dtype)
    return h, [h]


def lstm_step(
    x_t: np.ndarray,
    states: list[np.ndarray],
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None,
    activation: Activation,
    recurrent_activation: Activation,
    input_dropout: np.ndarray | None = None,
    recurrent_dropout: np.ndarray | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Gates ``i, f, o``, candidate ``g``: ``c = f·c_prev + i·g``, ``h = o·act(c)``.
    States ``[h, c]``; the output is ``h``."""
    h_prev, c_prev = states
    x_parts = _projections(x_t, kernel, input_dropout, 4)
    h_parts = _projections(h_prev, recurrent_kernel, recurrent_dropout, 4)
    biases = np.split(bias, 4) if bias is not None else [0.0] * 4
    pre = [x_parts[g] + h_parts[g] + biases[g] for g in range(4)]
    i = recurrent_activation(pre[0])
    f = recurrent_activation(pre[1])
    c = np.asarray(f * c_prev + i * activation(pre[2]), dtype=x_t.dtype)
    o = recurrent_activation(pre[3])
    h = np.asarray(o * activation(c), dtype=x_t.dtype)
    return h, [h, c]
