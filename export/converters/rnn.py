"""LSTM to ONNX: the native ``LSTM`` op where it matches Keras exactly, else a ``Scan``.

Strategy (spec sections 10 and 13):

* **Native ONNX ``LSTM``** when there is no input mask and both activations are ones the
  ONNX LSTM op implements with Keras's exact parameters. Keras gate blocks i, f, c, o are
  reordered to ONNX's i, o, f, c. ``go_backwards`` runs ``direction="reverse"``; Keras
  then returns the sequence in processing order (reversed time) while ONNX's ``Y`` is in
  time order, so ``Y`` is reversed along time. onnxruntime aborts the whole process when
  an ``LSTM`` node gets an empty batch, so the op sits in the ``else`` branch of an ``If``
  whose ``then`` branch (batch 0) returns empty outputs of the right shapes.
* **``Scan``** otherwise: with a mask (``sequence_lens`` only expresses trailing padding
  and ONNX zeroes ``Y`` there, while Keras carries the previous state and output through
  every masked step, wherever it is), or an activation the op lacks (composed with
  ``emit_activation`` inside the step body). Each step computes the gates with
  MatMul/Add, and a masked step keeps h and c with ``Where``. The scanned output is the
  carried h; ``scan_input_directions`` = 1 for ``go_backwards`` emits the outputs in
  processing order, as Keras does.

Every name derives from the layer's name through the builder, so exports are
deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerserve import activations
from layerserve.export.activations import emit_activation
from layerserve.export.builder import GraphBuilder, Value
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.rnn.lstm import LSTM

# Keras blocks are i, f, c, o; ONNX wants i, o, f, c.
_ONNX_GATE_ORDER = (0, 3, 1, 2)
_INT64_MIN = np.iinfo(np.int64).min


@dataclass(frozen=True)
class _RnnActivation:
    """An ONNX RNN activation; ``alpha``/``beta`` are None where the function takes none."""

    op: str
    alpha: float | None = None
    beta: float | None = None


# ONNX's own defaults for the parameterised functions (used where a value is omitted).
_ONNX_DEFAULTS = {"HardSigmoid": (0.2, 0.5), "Elu": (1.0, None)}

_RNN_ACTIVATIONS: dict[str, _RnnActivation] = {
    "sigmoid": _RnnActivation("Sigmoid"),
    "tanh": _RnnActivation("Tanh"),
    "relu": _RnnActivation("Relu"),
    "softsign": _RnnActivation("Softsign"),
    "softplus": _RnnActivation("Softplus"),
    "elu": _RnnActivation("Elu", alpha=1.0),
    "hard_sigmoid": _RnnActivation("HardSigmoid", alpha=0.2, beta=0.5),
    "hard_sigmoid_v3": _RnnActivation("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
}


@converter(LSTM)
def convert_lstm(conversion: Conversion) -> Converted:
    layer = conversion.layer
    x, states = conversion.inputs[0], conversion.inputs[1:]
    mask = conversion.masks[0] if conversion.masks else None
    attributes = None if mask is not None else _native_activation_attributes(layer)
    if attributes is not None and np.dtype(x.dtype) == np.float32:
        outputs = _native_lstm(conversion, attributes, states)
    else:
        outputs = _scan_lstm(conversion, mask, states)
    previous = conversion.previous_masks[0] if conversion.previous_masks else None
    output_mask = previous.name if previous is not None and layer.return_sequences else None
    if layer.return_state:
        return Converted(outputs=outputs, masks=[output_mask, None, None])
    return Converted(outputs=outputs[:1], masks=[output_mask])


# ---------------------------------------------------------------------------- weights


def _reorder_gates(array: np.ndarray) -> np.ndarray:
    """Keras gate blocks (i, f, c, o) along the last axis, in ONNX order (i, o, f, c)."""
    blocks = np.split(array, 4, axis=-1)
    return np.concatenate([blocks[g] for g in _ONNX_GATE_ORDER], axis=-1)


def onnx_lstm_weights(
    layer: LSTM, dtype: Any = np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``W [1, 4u, F]``, ``R [1, 4u, u]`` and ``B [1, 8u]`` for the ONNX ``LSTM`` op."""
    units = layer.units
    kernel = np.asarray(layer.kernel.value, dtype=dtype)
    recurrent = np.asarray(layer.recurrent_kernel.value, dtype=dtype)
    bias = (
        np.asarray(layer.bias.value, dtype=dtype)
        if layer.bias is not None
        else np.zeros(4 * units, dtype=dtype)
    )
    w = _reorder_gates(kernel).T[np.newaxis]
    r = _reorder_gates(recurrent).T[np.newaxis]
    b = np.concatenate([_reorder_gates(bias), np.zeros(4 * units, dtype=dtype)])[np.newaxis]
    return (np.ascontiguousarray(w), np.ascontiguousarray(r), np.ascontiguousarray(b))


# ----------------------------------------------------------------- native LSTM path


def _rnn_activation(function: Callable) -> _RnnActivation | None:
    key = activations.serialize(function)
    if not isinstance(key, str) or getattr(activations, key, None) is not function:
        return None  # a user function, an activation layer, or a parameterised built-in
    return _RNN_ACTIVATIONS.get(key)


def _native_activation_attributes(layer: LSTM) -> dict[str, Any] | None:
    """The LSTM op's activation attributes (f, g, h), or None if the op cannot match.

    ONNX says alpha/beta values are "consumed in the order of activation functions";
    onnxruntime hands them out only to the functions that take one, other runtimes by
    position. Lists are written only where both readings agree (the functions taking the
    parameter come first), or omitted where every value is ONNX's default.
    """
    gate = _rnn_activation(layer.recurrent_activation)
    cell = _rnn_activation(layer.activation)
    if gate is None or cell is None:
        return None
    functions = (gate, cell, cell)
    attributes: dict[str, Any] = {"activations": [f.op for f in functions]}
    for index, field in enumerate(("alpha", "beta")):
        values = [getattr(f, field) for f in functions]
        taken = [i for i, v in enumerate(values) if v is not None]
        if not taken:
            continue
        if taken == list(range(len(taken))):
            attributes[f"activation_{field}"] = [float(values[i]) for i in taken]
        elif any(values[i] != _ONNX_DEFAULTS[functions[i].op][index] for i in taken):
            return None
    return attributes


def _native_lstm(
    conversion: Conversion, attributes: dict[str, Any], states: list[Value]
) -> list[str]:
    """``If(batch == 0, empty outputs, native LSTM)``; returns [y] or [y, h_T, c_T]."""
    builder, layer, x = conversion.builder, conversion.layer, conversion.inputs[0]
    name = layer.name
    w, r, b = onnx_lstm_weights(layer, x.dtype)
    weights = [
        builder.constant(w, f"{name}_W"),
        builder.constant(r, f"{name}_R"),
        builder.constant(b, f"{name}_B"),
    ]

    shape = builder.op("Shape", [x.name], f"{name}_shape")
    batch = builder.op(
        "Gather", [shape, builder.int64s([0], f"{name}_batch_index")], f"{name}_batch", axis=0
    )
    empty = builder.op(
        "Equal", [batch, builder.int64s([0], f"{name}_no_samples")], f"{name}_empty_batch"
    )
    count = 3 if layer.return_state else 1
    shapes = (list(conversion.output_shapes) + [(None, layer.units)] * 2)[:count]

    then_branch = builder.subgraph(f"{name}_empty_batch_branch")
    _branch_outputs(then_branch, _empty_outputs(then_branch, layer, x)[:count], x.dtype, shapes)
    else_branch = builder.subgraph(f"{name}_lstm_branch")
    if states:
        # sequence_lens (absent), then initial_h and initial_c as (directions, N, u).
        axis0 = else_branch.int64s([0], f"{name}_direction_axis")
        weights = [
            *weights,
            "",
            *(
                else_branch.op("Unsqueeze", [s.name, axis0], f"{name}_initial_{label}")
                for s, label in zip(states, ("h", "c"), strict=True)
            ),
        ]
    _branch_outputs(
        else_branch,
        _emit_native(else_branch, layer, x, weights, attributes)[:count],
        x.dtype,
        shapes,
    )
    outputs = builder.op(
        "If",
        [empty],
        name,
        outputs=count,
        then_branch=then_branch.graph(),
        else_branch=else_branch.graph(),
    )
    return outputs if count > 1 else [outputs]


def _emit_native(
    builder: GraphBuilder, layer: LSTM, x: Value, weights: list[str], attributes: dict[str, Any]
) -> list[str]:
    """[y, h_T, c_T] from the ONNX ``LSTM`` op (y is h_T without return_sequences)."""
    name = layer.name
    time_major = builder.op("Transpose", [x.name], f"{name}_time_major", perm=[1, 0, 2])
    y, y_h, y_c = builder.op(
        "LSTM",
        [time_major, *weights],
        f"{name}_lstm",
        outputs=3,
        hidden_size=layer.units,
        direction="reverse" if layer.go_backwards else "forward",
        # layout=0 (time-major) is the default; the attribute exists from opset 14.
        layout=0 if builder.opset >= 14 else None,
        **attributes,
    )
    axis0 = builder.int64s([0], f"{name}_axis0")
    h = builder.op("Squeeze", [y_h, axis0], f"{name}_h")
    c = builder.op("Squeeze", [y_c, axis0], f"{name}_c")
    if not layer.return_sequences:
        return [h, h, c]
    sequence = builder.op(
        "Squeeze", [y, builder.int64s([1], f"{name}_axis1")], f"{name}_y_time_major"
    )
    if layer.go_backwards:
        # Keras returns the steps in processing order: reverse ONNX's time-ordered Y.
        sequence = builder.op(
            "Slice",
            [
                sequence,
                builder.int64s([-1], f"{name}_starts"),
                builder.int64s([_INT64_MIN], f"{name}_ends"),
                axis0,
                builder.int64s([-1], f"{name}_steps"),
            ],
            f"{name}_y_processing_order",
        )
    return [builder.op("Transpose", [sequence], f"{name}_output", perm=[1, 0, 2]), h, c]


def _empty_outputs(builder: GraphBuilder, layer: LSTM, x: Value) -> list[str]:
    """[y, h_T, c_T] for an empty batch, by ops whose shape inference keeps every dim.

    ``x @ zeros(F, u)`` is ``(0, T, u)`` and ``sum_t(x) @ zeros(F, u)`` is ``(0, u)``;
    with no elements nothing is computed.
    """
    name = f"{layer.name}_empty"
    zeros = builder.constant(np.zeros((x.shape[-1], layer.units), dtype=x.dtype), f"{name}_zeros")
    summed = builder.op(
        "ReduceSum", [x.name, builder.int64s([1], f"{name}_axes")], f"{name}_sum", keepdims=0
    )
    h = builder.op("MatMul", [summed, zeros], f"{name}_h")
    y = builder.op("MatMul", [x.name, zeros], f"{name}_output") if layer.return_sequences else h
    return [y, h, h]


def _branch_outputs(
    builder: GraphBuilder, names: list[str], dtype: str, shapes: list[tuple[int | None, ...]]
) -> None:
    """Declare a branch's outputs; a value listed twice is copied, as outputs need
    distinct names."""
    seen: set[str] = set()
    for name, shape in zip(names, shapes, strict=True):
        if name in seen:
            name = builder.op("Identity", [name], f"{name}_copy")
        seen.add(name)
        builder.add_output(name, dtype, (None, *shape[1:]))


# ------------------------------------------------------------------------ Scan path


def _scan_lstm(conversion: Conversion, mask: Value | None, states: list[Value]) -> list[str]:
    """A Scan over time-major steps; returns [y] or [y, h_T, c_T], distinct names."""
    builder, layer, x = conversion.builder, conversion.layer, conversion.inputs[0]
    name, units, dtype = layer.name, layer.units, x.dtype
    kernel = builder.constant(np.asarray(layer.kernel.value, dtype=dtype), f"{name}_kernel")
    recurrent = builder.constant(
        np.asarray(layer.recurrent_kernel.value, dtype=dtype), f"{name}_recurrent_kernel"
    )

    # The input projection of every step at once: (T, N, F) @ (F, 4u) [+ b].
    time_major = builder.op("Transpose", [x.name], f"{name}_time_major", perm=[1, 0, 2])
    projected = builder.op("MatMul", [time_major, kernel], f"{name}_x_kernel")
    if layer.bias is not None:
        bias = builder.constant(np.asarray(layer.bias.value, dtype=dtype), f"{name}_bias")
        projected = builder.op("Add", [projected, bias], f"{name}_x_projected")
    scanned = [projected]
    if mask is not None:
        scanned.append(builder.op("Transpose", [mask.name], f"{name}_mask_time_major", perm=[1, 0]))

    # States h, c and, where it can differ from h or must be a distinct value, the last
    # output y: with a mask and an initial state (tf.keras starts y from zeros), or with
    # return_state but not return_sequences (graph outputs need distinct names).
    initial = [s.name for s in states] or [_zero_state(builder, x, units, name)] * 2
    track_output = mask is not None and states and layer.zero_first_output
    count = 3 if track_output or (layer.return_state and not layer.return_sequences) else 2
    if count == 3:
        initial.append(_zero_state(builder, x, units, name) if track_output else initial[0])
    body = _step_body(builder, layer, dtype, recurrent, states=count, masked=mask is not None)
    outputs = builder.op(
        "Scan",
        initial + scanned,
        f"{name}_scan",
        outputs=count + int(layer.return_sequences),
        body=body,
        num_scan_inputs=len(scanned),
        scan_input_directions=[1] * len(scanned) if layer.go_backwards else None,
    )
    h, c = outputs[:2]
    if layer.return_sequences:
        y = builder.op("Transpose", [outputs[-1]], f"{name}_output", perm=[1, 0, 2])
    else:
        y = outputs[2] if count == 3 else h
    return [y, h, c] if layer.return_state else [y]


def _zero_state(builder: GraphBuilder, x: Value, units: int, name: str) -> str:
    """Zeros ``(N, u)`` for any batch size N, 0 included, that shape inference sees as
    ``(batch, u)`` (``ConstantOfShape`` of a computed shape would lose the batch symbol).

    ``x[:, :, 0:0]`` summed over time is ``(N, 0)``, with no elements; times a ``(0, u)``
    matrix it is ``(N, u)`` of empty sums, which are 0 whatever the values of ``x``.
    """
    axis = builder.int64s([2], f"{name}_feature_axis")
    start = builder.int64s([0], f"{name}_no_features")
    featureless = builder.op("Slice", [x.name, start, start, axis], f"{name}_featureless")
    per_sample = builder.op(
        "ReduceSum",
        [featureless, builder.int64s([1], f"{name}_time_axis")],
        f"{name}_per_sample",
        keepdims=0,
    )
    empty = builder.constant(np.zeros((0, units), dtype=x.dtype), f"{name}_empty_kernel")
    return builder.op("MatMul", [per_sample, empty], f"{name}_initial_state")


def _step_body(
    builder: GraphBuilder, layer: LSTM, dtype: str, recurrent: str, states: int, masked: bool
) -> Any:
    """One LSTM step: ``(h, c[, h], x_t @ kernel + b[, mask_t])`` to ``(h', c'[, h'][, h'])``:
    the states, then (with return_sequences) the step's output."""
    name, units = layer.name, layer.units
    body = builder.subgraph(f"{name}_step")
    state_names = [body.unique(f"{name}_{label}_prev") for label in ("h", "c", "y")[:states]]
    for state in state_names:
        body.add_input(state, dtype, (None, units))
    h_prev, c_prev = state_names[:2]
    x_t = body.unique(f"{name}_x_t")
    body.add_input(x_t, dtype, (None, 4 * units))
    if masked:
        mask_t = body.unique(f"{name}_mask_t")
        body.add_input(mask_t, np.bool_, (None,))

    hidden = body.op("MatMul", [h_prev, recurrent], f"{name}_h_recurrent")
    pre = body.op("Add", [x_t, hidden], f"{name}_preactivation")
    # Four equal parts: no `split` sizes input, whose value (an outer initializer) shape
    # inference inside the body could not see; opset 18 names the count instead.
    gates = body.op(
        "Split",
        [pre],
        f"{name}_gate",
        outputs=4,
        axis=1,
        num_outputs=4 if body.opset >= 18 else None,
    )

    def act(function: Callable, value: str, label: str) -> str:
        return emit_activation(
            body, function, Value(value, (None, units), dtype), f"{name}_{label}"
        )

    i = act(layer.recurrent_activation, gates[0], "input_gate")
    f = act(layer.recurrent_activation, gates[1], "forget_gate")
    candidate = act(layer.activation, gates[2], "candidate")
    o = act(layer.recurrent_activation, gates[3], "output_gate")
    c_new = body.op(
        "Add",
        [
            body.op("Mul", [f, c_prev], f"{name}_forget_c"),
            body.op("Mul", [i, candidate], f"{name}_input_c"),
        ],
        f"{name}_c_new",
    )
    h_new = body.op("Mul", [o, act(layer.activation, c_new, "c_activated")], f"{name}_h_new")
    output = h_new
    if masked:
        # A masked step carries h and c over and emits the previous step's output.
        keep = body.op("Unsqueeze", [mask_t, body.int64s([1], f"{name}_mask_axis")], f"{name}_keep")
        last = state_names[2] if states == 3 else h_prev
        output = body.op("Where", [keep, h_new, last], f"{name}_y_carried")
        h_new = body.op("Where", [keep, h_new, h_prev], f"{name}_h_carried")
        c_new = body.op("Where", [keep, c_new, c_prev], f"{name}_c_carried")
    outputs = [h_new, c_new]
    if states == 3:
        outputs.append(output if output != h_new else body.op("Identity", [h_new], f"{name}_y"))
    if layer.return_sequences:
        outputs.append(body.op("Identity", [output], f"{name}_step_output"))
    for value in outputs:
        body.add_output(value, dtype, (None, units))
    return body.graph()
