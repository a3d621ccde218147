"""Bidirectional, TimeDistributed and RNN(cell) to ONNX, through the inner layers' own
converters.

* **Bidirectional**: the forward and the backward layer are converted as they are (each
  gets the sequence, the mask and its half of the initial states; their
  ``zero_output_for_mask`` is the one Bidirectional set). The backward sequence is
  reversed into time order and the two are merged (Concat / Add / Mul / Add + Div).
* **TimeDistributed**: ``Reshape (N·T, …)`` → the inner layer's converter →
  ``Reshape (N, T, …)``, every size taken from ``Shape`` at run time, so the batch, the
  number of steps and unknown inner sizes stay dynamic (batch 0 included).
* **RNN(cell)**: the equivalent recurrent layer (``RNN(LSTMCell)`` ≡ ``LSTM``) is
  converted; a stack runs cell after cell as layers returning sequences.
"""

from __future__ import annotations

import numpy as np

from layerserve.errors import NotSupportedError
from layerserve.export.builder import GraphBuilder, Value, onnx_type
from layerserve.export.registry import Conversion, Converted, converter, find_converter
from layerserve.layers.base import Layer
from layerserve.layers.rnn.bidirectional import Bidirectional
from layerserve.layers.rnn.rnn import RNN, cells_of
from layerserve.layers.rnn.time_distributed import (
    TimeDistributed,
    any_mask_keeps_rank,
    step_shape,
)

_INT64_MIN = np.iinfo(np.int64).min
_INT64_MAX = np.iinfo(np.int64).max


def convert_inner(
    conversion: Conversion,
    layer: Layer,
    inputs: list[Value],
    masks: list[Value | None],
) -> list[str]:
    """The output names of ``layer`` converted on ``inputs`` inside ``conversion``."""
    shapes = [v.shape for v in inputs]
    output_shapes = layer.compute_output_shape(shapes if len(shapes) > 1 else shapes[0])
    if not isinstance(output_shapes, list):
        output_shapes = [output_shapes]
    dtype = layer.output_dtype(inputs[0].dtype)
    inner = Conversion(
        layer=layer,
        builder=conversion.builder,
        inputs=inputs,
        masks=masks,
        output_shapes=[tuple(s) for s in output_shapes],
        output_dtypes=[dtype] * len(output_shapes),
        training=conversion.training,
        extra={},  # the node recorded is the wrapper's, not the inner layer's
    )
    return find_converter(layer)(inner).outputs


def reverse_time(builder: GraphBuilder, name: str, label: str) -> str:
    """``value[:, ::-1]``."""
    return builder.op(
        "Slice",
        [
            name,
            builder.int64s([-1], f"{label}_reverse_start"),
            builder.int64s([_INT64_MIN], f"{label}_reverse_end"),
            builder.int64s([1], f"{label}_time_axis"),
            builder.int64s([-1], f"{label}_reverse_step"),
        ],
        f"{label}_reversed",
    )


# ------------------------------------------------------------------------ Bidirectional


@converter(Bidirectional)
def convert_bidirectional(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    x, states = conversion.inputs[0], conversion.inputs[1:]
    mask = conversion.masks[0] if conversion.masks else None
    half = len(states) // 2
    halves = []
    for inner, own_states in (
        (layer.forward_layer, states[:half]),
        (layer.backward_layer, states[half:]),
    ):
        outputs = convert_inner(
            conversion, inner, [x, *own_states], [mask] + [None] * len(own_states)
        )
        halves.append(list(outputs))
    (y, *forward_states), (y_reversed, *backward_states) = halves
    if layer.return_sequences:
        y_reversed = reverse_time(builder, y_reversed, layer.backward_layer.name)
    heads = _merge(builder, layer, y, y_reversed, x.dtype)
    outputs = heads + (forward_states + backward_states if layer.return_state else [])
    outputs = _distinct(builder, outputs)
    previous = conversion.previous_masks[0] if conversion.previous_masks else None
    head_mask = previous.name if previous is not None and layer.return_sequences else None
    masks = [head_mask] * len(heads) + [None] * (len(outputs) - len(heads))
    return Converted(outputs, masks=masks)


def _merge(
    builder: GraphBuilder, layer: Bidirectional, y: str, y_reversed: str, dtype: str
) -> list[str]:
    name, mode = layer.name, layer.merge_mode
    if mode is None:
        return [y, y_reversed]
    if mode == "concat":
        return [builder.op("Concat", [y, y_reversed], name, axis=-1)]
    if mode == "sum":
        return [builder.op("Add", [y, y_reversed], name)]
    if mode == "mul":
        return [builder.op("Mul", [y, y_reversed], name)]
    total = builder.op("Add", [y, y_reversed], f"{name}_sum")
    two = builder.constant(np.asarray(2, dtype=dtype), f"{name}_two")
    return [builder.op("Div", [total, two], name)]


def _distinct(builder: GraphBuilder, names: list[str]) -> list[str]:
    """Graph outputs need distinct names: a repeated value is copied."""
    seen: set[str] = set()
    out = []
    for name in names:
        if name in seen:
            name = builder.op("Identity", [name], f"{name}_copy")
        seen.add(name)
        out.append(name)
    return out


# ---------------------------------------------------------------------- TimeDistributed


@converter(TimeDistributed)
def convert_time_distributed(conversion: Conversion) -> Converted:
    layer, builder, x = conversion.layer, conversion.builder, conversion.inputs[0]
    name = layer.name
    shape = builder.op("Shape", [x.name], f"{name}_input_shape")
    batch_steps = _slice(builder, shape, 0, 2, f"{name}_batch_steps")
    rows = builder.op(
        "ReduceProd",
        [batch_steps],
        f"{name}_rows",
        keepdims=1,
    )
    step = _slice(builder, shape, 2, _INT64_MAX, f"{name}_step_dims")
    flat_shape = builder.op("Concat", [rows, step], f"{name}_flat_shape", axis=0)
    flat = builder.reshape_to(x.name, flat_shape, f"{name}_flat")
    inner_in = Value(flat, step_shape(x.shape), x.dtype)
    mask = conversion.masks[0] if conversion.masks else None
    step_mask = None
    if mask is not None and layer.layer.supports_masking:
        mask_shape = builder.op("Shape", [mask.name], f"{name}_mask_shape")
        mask_rest = _slice(builder, mask_shape, 2, _INT64_MAX, f"{name}_mask_step_dims")
        flat_mask_shape = builder.op("Concat", [rows, mask_rest], f"{name}_flat_mask_shape", axis=0)
        step_mask = Value(
            builder.reshape_to(mask.name, flat_mask_shape, f"{name}_step_mask"),
            step_shape(mask.shape),
            "bool",
        )
    (inner_out,) = convert_inner(conversion, layer.layer, [inner_in], [step_mask])
    out_shape = builder.op("Shape", [inner_out], f"{name}_inner_shape")
    features = _slice(builder, out_shape, 1, _INT64_MAX, f"{name}_inner_dims")
    full = builder.op("Concat", [batch_steps, features], f"{name}_output_shape", axis=0)
    y = builder.reshape_to(inner_out, full, name)
    previous = conversion.previous_masks[0] if conversion.previous_masks else None
    return Converted([y], masks=[_output_mask(builder, layer, previous)])


def _output_mask(builder: GraphBuilder, layer: TimeDistributed, mask: Value | None) -> str | None:
    """The input mask, or (tf.keras, inner layer consumed it) ``any`` over its axes
    after ``(N, T)``."""
    if mask is None:
        return None
    if any_mask_keeps_rank(layer.keras_version, layer.layer) or mask.rank == 2:
        return mask.name
    name, rest = layer.name, mask.shape[2:]
    if any(d is None for d in rest):
        raise NotSupportedError(
            f"TimeDistributed {name}: reducing a mask of shape {mask.shape} needs its "
            "sizes after (batch, timesteps) known. Received: unknown sizes"
        )
    size = int(np.prod(rest))
    # An explicit (N, T, size) target (no -1, ambiguous for an empty batch); counted
    # with a MatMul, as onnxruntime's reductions mishandle empty inputs.
    mask_shape = builder.op("Shape", [mask.name], f"{name}_mask_shape_out")
    target = builder.op(
        "Concat",
        [
            _slice(builder, mask_shape, 0, 2, f"{name}_mask_batch_steps"),
            builder.int64s([size], f"{name}_mask_size"),
        ],
        f"{name}_mask_groups",
        axis=0,
    )
    grouped = builder.reshape_to(mask.name, target, f"{name}_mask_grouped")
    counts = builder.op("Cast", [grouped], f"{name}_mask_counts", to=onnx_type("float32"))
    ones = builder.constant(np.ones((size, 1), np.float32), f"{name}_mask_ones")
    total = builder.op("MatMul", [counts, ones], f"{name}_mask_total")
    zero = builder.constant(np.zeros((), np.float32), f"{name}_mask_zero")
    kept = builder.op("Greater", [total, zero], f"{name}_mask_any")
    axis = builder.int64s([-1], f"{name}_mask_axis")
    return builder.op("Squeeze", [kept, axis], f"{name}_mask")


def _slice(builder: GraphBuilder, shape: str, start: int, end: int, label: str) -> str:
    return builder.op(
        "Slice",
        [
            shape,
            builder.int64s([start], f"{label}_start"),
            builder.int64s([end], f"{label}_end"),
            builder.int64s([0], f"{label}_axis"),
        ],
        label,
    )


# ------------------------------------------------------------------------------ RNN


@converter(RNN)
def convert_rnn(conversion: Conversion) -> Converted:
    layer = conversion.layer
    x, states = conversion.inputs[0], conversion.inputs[1:]
    mask = conversion.masks[0] if conversion.masks else None
    cells = cells_of(layer.cell)
    flags = {
        "go_backwards": layer.go_backwards,
        "unroll": layer.unroll,
        "zero_output_for_mask": layer.zero_output_for_mask,
        "keras_version": layer.keras_version,
    }
    if len(cells) == 1:
        # RNN(LSTMCell) is LSTM: the same loop, weights and masked-step rules.
        equivalent = cells[0].as_layer(
            name=layer.name,
            return_sequences=layer.return_sequences,
            return_state=layer.return_state,
            **flags,
        )
        outputs = convert_inner(conversion, equivalent, [x, *states], [mask] + [None] * len(states))
        return Converted(list(outputs), masks=_rnn_masks(conversion, layer, len(outputs)))
    outputs = _stacked(conversion, layer, cells, x, states, mask)
    return Converted(outputs, masks=_rnn_masks(conversion, layer, len(outputs)))


def _stacked(
    conversion: Conversion,
    layer: RNN,
    cells: list,
    x: Value,
    states: list[Value],
    mask: Value | None,
) -> list[str]:
    """A stack as layers in sequence, each returning its sequence and states; with
    go_backwards the input (and mask) are reversed once, then every cell runs forward."""
    builder, name = conversion.builder, layer.name
    if layer.unroll:
        raise NotSupportedError(
            f"RNN {name}: a stack of cells with unroll=True has no ONNX export (its "
            "masked-step rule follows time order). Expected unroll=False. "
            "Received: unroll=True"
        )
    if states and mask is not None and not layer.zero_first_output:
        raise NotSupportedError(
            f"RNN {name}: a stack of cells with both `initial_state` and a mask is not "
            "supported for this Keras version."
        )
    if layer.go_backwards:
        x = Value(reverse_time(builder, x.name, f"{name}_input"), x.shape, x.dtype)
        if mask is not None:
            mask = Value(reverse_time(builder, mask.name, f"{name}_mask"), mask.shape, "bool")
    final_states: list[str] = []
    start = 0
    sequence = x
    for index, cell in enumerate(cells):
        last = index == len(cells) - 1
        count = len(cell.state_size)
        own = states[start : start + count] if states else []
        start += count
        equivalent = cell.as_layer(
            name=f"{name}_{cell.name}",
            return_sequences=layer.return_sequences if last else True,
            return_state=True,
            go_backwards=False,
            unroll=False,
            zero_output_for_mask=layer.zero_output_for_mask if last else False,
            keras_version=layer.keras_version,
        )
        y, *cell_states = convert_inner(
            conversion, equivalent, [sequence, *own], [mask] + [None] * len(own)
        )
        final_states += cell_states
        sequence = Value(y, (x.shape[0], x.shape[1], cell.output_size), x.dtype)
    outputs = [sequence.name, *final_states] if layer.return_state else [sequence.name]
    return _distinct(builder, outputs)


def _rnn_masks(conversion: Conversion, layer: RNN, count: int) -> list[str | None]:
    previous = conversion.previous_masks[0] if conversion.previous_masks else None
    head = previous.name if previous is not None and layer.return_sequences else None
    return [head] + [None] * (count - 1)
