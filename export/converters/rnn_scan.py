"""A recurrent layer as a ``Scan``: for what the fused ONNX ops cannot express.

Used for activations the ONNX ``LSTM`` / ``GRU`` / ``RNN`` ops lack (composed with
``emit_activation`` inside the step body) and for dtypes other than float32. Each step
computes the cell with MatMul/Add (``rnn_cells``); a masked step keeps the states with
``Where`` and emits the previous step's output (or zeros under ``zero_output_for_mask``).
The scanned output is that per-step output; ``scan_input_directions`` = 1 for
``go_backwards`` emits the outputs in processing order, as Keras does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.export.builder import GraphBuilder, Value
from layerserve.export.converters.rnn_cells import Cell
from layerserve.export.registry import Conversion
from layerserve.layers.rnn.base_rnn import PREVIOUS, ZEROS, ZEROS_BY_TIME


def scan_rnn(
    conversion: Conversion,
    cell: Cell,
    mask: Value | None,
    states: list[Value],
    rule: str = PREVIOUS,
) -> list[str]:
    """A Scan over time-major steps; returns ``[y]`` or ``[y, *states]``, distinct names.
    ``rule`` is what a masked step outputs (``RecurrentLayer.masked_output``); tf.keras's
    unrolled "zeros by time" runs as "previous" and zeroes the outputs afterwards."""
    builder, layer, x = conversion.builder, conversion.layer, conversion.inputs[0]
    name, units, dtype = layer.name, layer.units, x.dtype
    kernel = builder.constant(np.asarray(layer.kernel.value, dtype=dtype), f"{name}_kernel")
    constants = cell.recurrent_constants(builder, layer, dtype)

    # The input projection of every step at once: (T, N, F) @ (F, g·u) [+ input bias].
    time_major = builder.op("Transpose", [x.name], f"{name}_time_major", perm=[1, 0, 2])
    projected = builder.op("MatMul", [time_major, kernel], f"{name}_x_kernel")
    bias = cell.bias_pair(layer, dtype)
    if bias is not None:
        input_bias = builder.constant(bias[0], f"{name}_bias")
        projected = builder.op("Add", [projected, input_bias], f"{name}_x_projected")
    scanned = [projected]
    if mask is not None:
        scanned.append(builder.op("Transpose", [mask.name], f"{name}_mask_time_major", perm=[1, 0]))

    # The cell's states and, where it can differ from h or must be a distinct value, the
    # last output y: with a mask under zero_output_for_mask, or with an initial state
    # where tf.keras starts y from zeros; or with return_state but not return_sequences
    # (graph outputs need distinct names).
    state_count = len(cell.state_labels)
    zero_output = mask is not None and rule == ZEROS
    zero_first = mask is not None and bool(states) and layer.zero_first_output
    track_output = zero_output or zero_first
    zero = _zero_state(builder, x, units, name) if not states or track_output else None
    initial = [s.name for s in states] or [zero] * state_count
    carried = state_count + int(track_output or (layer.return_state and not layer.return_sequences))
    if carried > state_count:
        initial.append(zero if track_output else initial[0])
    body = _step_body(
        builder, cell, layer, dtype, constants, carried, mask is not None, zero_output
    )
    outputs = builder.op(
        "Scan",
        initial + scanned,
        f"{name}_scan",
        outputs=carried + int(layer.return_sequences),
        body=body,
        num_scan_inputs=len(scanned),
        scan_input_directions=[1] * len(scanned) if layer.go_backwards else None,
    )
    outputs = [outputs] if isinstance(outputs, str) else outputs  # a single output
    finals = outputs[:state_count]
    if layer.return_sequences:
        y = builder.op("Transpose", [outputs[-1]], f"{name}_output", perm=[1, 0, 2])
    else:
        y = outputs[state_count] if carried > state_count else finals[0]
    if mask is not None and rule == ZEROS_BY_TIME:
        y = _zeros_by_time(builder, layer, mask, y, dtype)
    return [y, *finals] if layer.return_state else [y]


def _zeros_by_time(builder: GraphBuilder, layer: Any, mask: Value, y: str, dtype: str) -> str:
    """tf.keras unrolled: the processing-order outputs zeroed where the time-order mask
    is False, or the last output where the last processed step is masked."""
    name = layer.name
    zero = builder.constant(np.zeros((), dtype=dtype), f"{name}_masked_zero")
    if layer.return_sequences:
        keep = builder.op(
            "Unsqueeze", [mask.name, builder.int64s([-1], f"{name}_mask_axis")], f"{name}_keep"
        )
        return builder.op("Where", [keep, y, zero], f"{name}_output_zeroed")
    last = builder.int64s([0 if layer.go_backwards else -1], f"{name}_last_step")
    last_kept = builder.op("Gather", [mask.name, last], f"{name}_last_kept", axis=1)
    return builder.op("Where", [last_kept, y, zero], f"{name}_last_output_zeroed")


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
    builder: GraphBuilder,
    cell: Cell,
    layer: Any,
    dtype: str,
    constants: list[str],
    carried: int,
    masked: bool,
    zero_output: bool,
) -> Any:
    """One step: ``(*states[, y], x_t @ kernel + b[, mask_t])`` to
    ``(*states'[, y'][, output])``: the carried values, then (with return_sequences) the
    step's output."""
    name, units = layer.name, layer.units
    state_count = len(cell.state_labels)
    body = builder.subgraph(f"{name}_step")
    labels = [*cell.state_labels, "y"][:carried]
    previous = [body.unique(f"{name}_{label}_prev") for label in labels]
    for value in previous:
        body.add_input(value, dtype, (None, units))
    x_t = body.unique(f"{name}_x_t")
    body.add_input(x_t, dtype, (None, cell.gates * units))
    if masked:
        mask_t = body.unique(f"{name}_mask_t")
        body.add_input(mask_t, np.bool_, (None,))

    new_states = cell.step(body, layer, constants, previous[:state_count], x_t, dtype)
    output = new_states[0]
    if masked:
        # A masked step carries the states over and emits the previous step's output
        # (zeros under zero_output_for_mask).
        keep = body.op("Unsqueeze", [mask_t, body.int64s([1], f"{name}_mask_axis")], f"{name}_keep")
        if zero_output:
            last = body.constant(np.zeros((), dtype=dtype), f"{name}_masked_output")
        else:
            last = previous[state_count] if carried > state_count else previous[0]
        output = body.op("Where", [keep, new_states[0], last], f"{name}_y_carried")
        new_states = [
            body.op("Where", [keep, new, old], f"{name}_{label}_carried")
            for new, old, label in zip(new_states, previous, cell.state_labels, strict=False)
        ]
    results = list(new_states)
    if carried > state_count:
        results.append(
            output if output != new_states[0] else body.op("Identity", [output], f"{name}_y")
        )
    if layer.return_sequences:
        results.append(body.op("Identity", [output], f"{name}_step_output"))
    for value in results:
        body.add_output(value, dtype, (None, units))
    return body.graph()
