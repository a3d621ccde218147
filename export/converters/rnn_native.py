"""The fused ONNX ``LSTM`` / ``GRU`` / ``RNN`` op, with or without a Keras mask.

* **Unmasked.** ``X`` is the input transposed to time-major. ``go_backwards`` runs
  ``direction="reverse"``; Keras returns the sequence in processing order (reversed
  time) while ONNX's ``Y`` is in time order, so ``Y`` is reversed along time.
* **Masked: reorder + ``sequence_lens``.** Keras carries the state unchanged through a
  masked step, so the states equal those of running the cell over the row's unmasked
  steps only, in processing order (``go_backwards``: reversed time first). Each row's
  unmasked steps are moved to the front (a ``TopK`` over the mask gives their time
  indices in processing order, one ``GatherND`` moves the data) and their count is the
  op's ``sequence_lens``; the op always runs forward. These nodes sit before the ``If``
  and read Masking's ``(N, T, 1)`` flags where they can. The output at processing step
  ``j`` is then ``Y[cumsum(mask)[j] − 1]`` (one ``GatherND``): the last processed output.
  Where Keras emits zeros instead (a masked step under ``zero_output_for_mask``, or a
  step before any valid one under ``zero_first_output``) the index is −1, which wraps to
  ``Y[T − 1]``: onnxruntime writes zeros beyond a row's length, and such a row is
  shorter than T. Keras 3 emits the initial h before the first valid step: a ``Where``.
  A fully masked row (length 0) gets zeros for ``Y_h``/``Y_c`` from onnxruntime; with an
  initial state a ``Where`` restores it. (Both onnxruntime behaviours are pinned by
  ``tests/export/test_rnn_masked_export.py``.)
* **Empty batch.** onnxruntime aborts the whole process when a recurrent node gets an
  empty batch, so the op sits in the ``else`` branch of an ``If`` whose ``then`` branch
  (batch 0) returns empty outputs of the right shapes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import numpy_helper

from layerserve.export.builder import GraphBuilder, Value
from layerserve.export.converters.rnn_cells import Cell
from layerserve.export.registry import Conversion
from layerserve.layers.rnn.base_rnn import PREVIOUS, ZEROS_BY_TIME

_INT64_MIN = np.iinfo(np.int64).min


def native_rnn(
    conversion: Conversion,
    cell: Cell,
    attributes: dict[str, Any],
    states: list[Value],
    mask: Value | None,
    rule: str = PREVIOUS,
) -> list[str]:
    """``If(batch == 0, empty outputs, fused op)``; returns ``[y]`` or ``[y, *states]``.
    ``rule`` is what a masked step outputs (``RecurrentLayer.masked_output``)."""
    builder, layer, x = conversion.builder, conversion.layer, conversion.inputs[0]
    name = layer.name
    w, r, b = cell.onnx_weights(layer, x.dtype)
    weights = [
        builder.constant(w, f"{name}_W"),
        builder.constant(r, f"{name}_R"),
        builder.constant(b, f"{name}_B"),
    ]
    guarded, batch_axis = x.name, 0
    if mask is not None:
        # The reorder runs before the If (an empty batch passes through it unharmed, and
        # the fewer nodes a branch holds, the cheaper onnxruntime runs it); the guard
        # reads the batch size off the reordered, time-major input.
        reordered = _reorder(builder, layer, x, mask)
        guarded, batch_axis = reordered[0], 1
    shape = builder.op("Shape", [guarded], f"{name}_shape")
    batch = builder.op(
        "Gather",
        [shape, builder.int64s([batch_axis], f"{name}_batch_index")],
        f"{name}_batch",
        axis=0,
    )
    empty = builder.op(
        "Equal", [batch, builder.int64s([0], f"{name}_no_samples")], f"{name}_empty_batch"
    )
    state_count = len(cell.state_labels)
    count = 1 + state_count if layer.return_state else 1
    shapes = (list(conversion.output_shapes) + [(None, layer.units)] * state_count)[:count]

    then_branch = builder.subgraph(f"{name}_empty_batch_branch")
    empty_outputs = _empty_outputs(then_branch, layer, x, state_count)
    _branch_outputs(then_branch, empty_outputs[:count], x.dtype, shapes)
    else_branch = builder.subgraph(f"{name}_{cell.op_type.lower()}_branch")
    if mask is None:
        outputs = _emit_unmasked(else_branch, cell, layer, x, weights, attributes, states)
    else:
        outputs = _emit_masked(
            else_branch, cell, layer, weights, attributes, states, mask, rule, reordered
        )
    _branch_outputs(else_branch, outputs[:count], x.dtype, shapes)
    result = builder.op(
        "If",
        [empty],
        name,
        outputs=count,
        then_branch=then_branch.graph(),
        else_branch=else_branch.graph(),
    )
    return result if count > 1 else [result]


def _initial_states(
    builder: GraphBuilder, cell: Cell, layer: Any, states: list[Value]
) -> list[str]:
    """The op's optional initial-state inputs, ``(directions, N, u)``."""
    axis0 = builder.int64s([0], f"{layer.name}_direction_axis")
    return [
        builder.op("Unsqueeze", [s.name, axis0], f"{layer.name}_initial_{label}")
        for s, label in zip(states, cell.state_labels, strict=True)
    ]


def _run_op(
    builder: GraphBuilder,
    cell: Cell,
    layer: Any,
    time_major: str,
    weights: list[str],
    sequence_lens: str,
    initial: list[str],
    attributes: dict[str, Any],
    direction: str,
) -> tuple[str, list[str]]:
    """The fused op; returns ``Y (T, 1, N, u)`` and the final states squeezed to (N, u)
    (h only, unless the layer returns its states)."""
    name = layer.name
    inputs = [time_major, *weights]
    if sequence_lens or initial:
        inputs.append(sequence_lens)
    inputs += initial
    outputs = builder.op(
        cell.op_type,
        inputs,
        f"{name}_{cell.op_type.lower()}",
        outputs=1 + len(cell.state_labels),
        hidden_size=layer.units,
        direction=direction,
        # layout=0 (time-major) is the default; the attribute exists from opset 14.
        layout=0 if builder.opset >= 14 else None,
        **cell.op_attributes(layer),
        **attributes,
    )
    # Only the states returned need squeezing (h is also the last output).
    needed = len(cell.state_labels) if layer.return_state else 1
    axis0 = builder.int64s([0], f"{name}_axis0")
    finals = [
        builder.op("Squeeze", [value, axis0], f"{name}_{label}_final")
        for value, label in zip(outputs[1 : 1 + needed], cell.state_labels, strict=False)
    ]
    return outputs[0], finals


def _batch_major(builder: GraphBuilder, name: str, y: str) -> str:
    """``Y (T, 1, N, u)`` to ``(N, T, u)``."""
    sequence = builder.op(
        "Squeeze", [y, builder.int64s([1], f"{name}_axis1")], f"{name}_y_time_major"
    )
    return builder.op("Transpose", [sequence], f"{name}_y_batch_major", perm=[1, 0, 2])


def _emit_unmasked(
    builder: GraphBuilder,
    cell: Cell,
    layer: Any,
    x: Value,
    weights: list[str],
    attributes: dict[str, Any],
    states: list[Value],
) -> list[str]:
    """``[y, *states]`` of the op over every step (y is h without return_sequences)."""
    name = layer.name
    time_major = builder.op("Transpose", [x.name], f"{name}_time_major", perm=[1, 0, 2])
    y, finals = _run_op(
        builder,
        cell,
        layer,
        time_major,
        weights,
        "",
        _initial_states(builder, cell, layer, states) if states else [],
        attributes,
        "reverse" if layer.go_backwards else "forward",
    )
    if not layer.return_sequences:
        return [finals[0], *finals]
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
                builder.int64s([0], f"{name}_time_axis"),
                builder.int64s([-1], f"{name}_steps"),
            ],
            f"{name}_y_processing_order",
        )
    return [builder.op("Transpose", [sequence], f"{name}_output", perm=[1, 0, 2]), *finals]


def _valid_steps_first(
    builder: GraphBuilder, layer: Any, mask: Value, keep: str, flags: str
) -> str:
    """``(N, T, 1)`` int64: per row, the time indices of the unmasked steps in
    processing order, then those of the masked steps. ``flags`` is ``keep`` as int32.

    With a known T, a ``TopK`` over T: going forwards, of the flags themselves (largest
    first; ONNX breaks ties by the lower index, so each group stays in time order);
    backwards, of distinct keys (smallest first): a step's position in processing order,
    plus T if it is masked. With an unknown T, whose ``TopK`` would lose every dim to
    shape inference, a ``ScatterElements`` writes each step's time index at its
    destination (``cumsum − 1`` if kept, else the length plus the masked steps before).
    """
    name, steps = layer.name, mask.shape[1]
    if steps is not None:
        count = builder.int64s([steps], f"{name}_step_count")
        if not layer.go_backwards:
            _, order = builder.op(
                "TopK", [flags, count], f"{name}_step_order", outputs=2, axis=1, sorted=1
            )
            return order
        # Position in processing order + T, less T where the step is kept (int32).
        position = np.arange(steps, dtype=np.int32)[::-1, np.newaxis]
        shift = builder.op(
            "Mul",
            [flags, builder.constant(np.array(steps, dtype=np.int32), f"{name}_step_total")],
            f"{name}_kept_shift",
        )
        keys = builder.op(
            "Sub",
            [builder.constant(position + steps, f"{name}_masked_step_position"), shift],
            f"{name}_step_keys",
        )
        _, order = builder.op(
            "TopK", [keys, count], f"{name}_step_order", outputs=2, axis=1, largest=0, sorted=1
        )
        return order
    shape = builder.op("Shape", [mask.name], f"{name}_mask_shape")
    count = builder.op(
        "Gather", [shape, builder.int64s(1, f"{name}_step_axis")], f"{name}_steps", axis=0
    )
    zero, one = (builder.constant(np.array(v, dtype=np.int64), f"{name}_range_{v}") for v in (0, 1))
    times = builder.op("Range", [zero, count, one], f"{name}_times")
    position = builder.op(
        "Unsqueeze", [times, builder.int64s([1], f"{name}_column_axis")], f"{name}_step_position"
    )
    in_order = _processing_order(builder, layer, keep)
    time_index = position
    if layer.go_backwards:
        last = builder.op("Sub", [count, one], f"{name}_last_step")
        time_index = builder.op("Sub", [last, position], f"{name}_step_time")
    kept = builder.op(
        "Cast", [_processing_order(builder, layer, flags, "flags")], f"{name}_kept_count", to=7
    )
    before = builder.op(
        "CumSum", [kept, builder.int64s(1, f"{name}_order_axis")], f"{name}_kept_before"
    )
    length = builder.op(
        "ReduceSum",
        [kept, builder.int64s([1], f"{name}_kept_axis")],
        f"{name}_kept_total",
        keepdims=1,
    )
    kept_slot = builder.op("Sub", [before, one], f"{name}_kept_slot")
    masked_slot = builder.op(
        "Sub",
        [builder.op("Add", [length, position], f"{name}_after_kept"), before],
        f"{name}_masked_slot",
    )
    slot = builder.op("Where", [in_order, kept_slot, masked_slot], f"{name}_slot")
    # The time indices broadcast to (N, T, 1), the shape ScatterElements wants.
    updates = builder.op("Where", [in_order, time_index, time_index], f"{name}_step_times")
    return builder.op("ScatterElements", [updates, slot, updates], f"{name}_step_order", axis=1)


def _processing_order(builder: GraphBuilder, layer: Any, keep: str, label: str = "keep") -> str:
    """``(N, T, 1)`` flags in processing order (reversed under go_backwards)."""
    if not layer.go_backwards:
        return keep
    name = layer.name
    return builder.op(
        "Slice",
        [
            keep,
            builder.int64s([-1], f"{name}_starts"),
            builder.int64s([_INT64_MIN], f"{name}_ends"),
            builder.int64s([1], f"{name}_time_axis"),
            builder.int64s([-1], f"{name}_steps"),
        ],
        f"{name}_{label}_processing_order",
    )


def _keep_flags(builder: GraphBuilder, name: str, mask: Value) -> str:
    """The mask as ``(N, T, 1)``. Where it is itself a ``Squeeze`` of such a value along
    the last axis (what Masking emits), that value, so no node undoes another."""
    for node in reversed(builder.nodes):
        if mask.name not in node.output:
            continue
        if node.op_type == "Squeeze" and len(node.input) == 2:
            axes = {i.name: i for i in builder.initializers}.get(node.input[1])
            if axes is not None and list(numpy_helper.to_array(axes).ravel()) in ([-1], [2]):
                return node.input[0]
        break
    return builder.op(
        "Unsqueeze", [mask.name, builder.int64s([-1], f"{name}_mask_axis")], f"{name}_keep"
    )


def _reorder(builder: GraphBuilder, layer: Any, x: Value, mask: Value) -> tuple[str, str, str]:
    """``(X (T, N, F), flags (N, T, 1) int32, keep (N, T, 1) bool)``: X holds each row's
    unmasked steps first, in processing order; the flags sum to their count.

    Every value the ``If`` branch reads from here is also read outside it (X by the
    guard, the flags by the ordering, keep by the cast), as a dead-node check that does
    not look into subgraphs expects; the lengths are summed inside the branch."""
    name = layer.name
    keep = _keep_flags(builder, name, mask)
    flags = builder.op("Cast", [keep], f"{name}_mask_int", to=6)  # int32
    order = _valid_steps_first(builder, layer, mask, keep, flags)
    gathered = builder.op("GatherND", [x.name, order], f"{name}_valid_first", batch_dims=1)
    time_major = builder.op("Transpose", [gathered], f"{name}_time_major", perm=[1, 0, 2])
    return time_major, flags, keep


def _emit_masked(
    builder: GraphBuilder,
    cell: Cell,
    layer: Any,
    weights: list[str],
    attributes: dict[str, Any],
    states: list[Value],
    mask: Value,
    rule: str,
    reordered: tuple[str, str, str],
) -> list[str]:
    """``[y, *states]`` of the op over each row's unmasked steps (see the module doc)."""
    name, dtype = layer.name, "float32"  # the fused ops run float32 only (rnn.py)
    time_major, flags, keep = reordered
    lengths = builder.op(
        "ReduceSum",
        [flags, builder.int64s([1, 2], f"{name}_length_axes")],
        f"{name}_lengths",
        keepdims=0,
    )
    initial = _initial_states(builder, cell, layer, states) if states else []
    y, finals = _run_op(
        builder, cell, layer, time_major, weights, lengths, initial, attributes, "forward"
    )

    raw_h = finals[0]
    if states:
        # A fully masked row keeps its initial state; onnxruntime gives zeros there.
        zero_length = builder.constant(np.zeros((), dtype=np.int32), f"{name}_zero_length")
        column = builder.int64s([1], f"{name}_row_axis")
        has_steps = builder.op(
            "Greater",
            [builder.op("Unsqueeze", [lengths, column], f"{name}_length_column"), zero_length],
            f"{name}_has_steps",
        )
        finals = [
            builder.op("Where", [has_steps, final, s.name], f"{name}_{label}_kept")
            for final, s, label in zip(finals, states, cell.state_labels, strict=False)
        ]
    zero_output = rule != PREVIOUS
    first_from_state = bool(states) and not layer.zero_first_output and not zero_output
    if not layer.return_sequences:
        if zero_output:
            # Keras returns outputs[:, -1]: zeros when the last processed step is masked.
            last = builder.int64s(0 if layer.go_backwards else -1, f"{name}_last_step")
            last_kept = builder.op("Gather", [keep, last], f"{name}_last_kept", axis=1)
            zero = builder.constant(np.zeros((), dtype=dtype), f"{name}_zero")
            return [builder.op("Where", [last_kept, raw_h, zero], f"{name}_last_output"), *finals]
        # The last valid step's output; before any: zeros (raw Y_h) or the initial h.
        return [finals[0] if first_from_state else raw_h, *finals]

    in_order = _processing_order(builder, layer, keep)
    processed = builder.op(
        "CumSum",
        [
            builder.op("Cast", [in_order], f"{name}_keep_int", to=7),
            builder.int64s(1, f"{name}_cumsum_axis"),
        ],
        f"{name}_processed",
    )
    minus_one = builder.int64s(-1, f"{name}_minus_one")
    source = builder.op("Add", [processed, minus_one], f"{name}_source_step")
    if zero_output:
        # Zeros where the mask is False: in processing order, or (tf.keras unrolled) in
        # time order.
        zeroed = keep if rule == ZEROS_BY_TIME else in_order
        source = builder.op("Where", [zeroed, source, minus_one], f"{name}_source_or_padding")
    output = builder.op(
        "GatherND", [_batch_major(builder, name, y), source], f"{name}_output", batch_dims=1
    )
    if first_from_state:
        zero = builder.int64s(0, f"{name}_no_step")
        started = builder.op("Greater", [processed, zero], f"{name}_started")
        initial_h = builder.op(
            "Unsqueeze",
            [states[0].name, builder.int64s([1], f"{name}_step_axis1")],
            f"{name}_initial_output",
        )
        output = builder.op("Where", [started, output, initial_h], f"{name}_output_from_state")
    return [output, *finals]


def _empty_outputs(builder: GraphBuilder, layer: Any, x: Value, state_count: int) -> list[str]:
    """``[y, *states]`` for an empty batch, by ops whose shape inference keeps every dim.

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
    return [y, *[h] * state_count]


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
