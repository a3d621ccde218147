"""Run-time checks an exported graph makes where Keras fails on an input and onnxruntime
would answer (or abort the process): the graph fails instead, with an error naming the
node that checks, e.g. ``<layer>_needs_a_timestep``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layerserve.export.builder import GraphBuilder, Value, onnx_type


def _zero_unless_positive(builder: GraphBuilder, count: str, name: str, label: str) -> str:
    """``[0]`` (int64) computed from the last of ``Range(count)``: out of bounds when the
    scalar ``count`` is 0, so onnxruntime fails there, naming the node ``<name>_<label>``."""
    start = builder.constant(np.asarray(0, np.int64), f"{name}_range_start")
    step = builder.constant(np.asarray(1, np.int64), f"{name}_range_step")
    indices = builder.op("Range", [start, count, step], f"{name}_indices")
    last = builder.op(
        "Gather", [indices, builder.int64s([-1], f"{name}_last_index")], f"{name}_{label}", axis=0
    )
    return builder.op("Sub", [last, last], f"{name}_checked_zero")


def require_nonempty(
    builder: GraphBuilder, x: Value, axes: Sequence[int], name: str, label: str
) -> str:
    """``x`` behind a check that fails when any of ``axes`` is empty.

    The check (:func:`_zero_unless_positive`) fails on a size of 0, the product of those
    axes' sizes. ``x`` is multiplied by a 1 computed from that gather (exact for
    every value, and every dim of ``x`` kept by shape inference): an operand known only at
    run time, which no optimizer folds away (a Reshape of ``x`` to its own shape through
    the check was rewritten and dropped)."""
    shape = builder.op("Shape", [x.name], f"{name}_input_shape")
    size = None
    for axis in axes:
        dim = builder.op(
            "Gather",
            [shape, builder.constant(np.asarray(axis, np.int64), f"{name}_axis_{axis}")],
            f"{name}_size_{axis}",
            axis=0,
        )
        size = dim if size is None else builder.op("Mul", [size, dim], f"{name}_size")
    nothing = _zero_unless_positive(builder, size, name, label)
    one = builder.int64s([1], f"{name}_one")
    unit = builder.op("Add", [nothing, one], f"{name}_checked_one")
    factor = builder.op("Cast", [unit], f"{name}_checked_factor", to=onnx_type(x.dtype))
    return builder.op("Mul", [x.name, factor], f"{name}_checked_input")


def require_equal_sizes(
    builder: GraphBuilder, values: Sequence[Value], axis: int, name: str
) -> str:
    """An empty slice of ``values[0]`` along ``axis`` (an extra input for their Concat,
    adding nothing), behind a check that fails unless every value has ``values[0]``'s sizes
    on the other axes. onnxruntime's Concat checks no size of an empty input: (1, 0, 3)
    beside (1, 2, 3) came out (1, 2, 6), a third of it zeros no one sent, where Keras
    refuses. The check (:func:`_zero_unless_positive`) fails on ``agree``, 1 when every
    size matches and 0 otherwise, at the node ``<name>_needs_matching_sizes``."""
    rank = values[0].rank
    others = builder.int64s([a for a in range(rank) if a != axis], f"{name}_other_axes")

    def sizes(value: Value, index: int) -> str:
        shape = builder.op("Shape", [value.name], f"{name}_shape_{index}")
        return builder.op("Gather", [shape, others], f"{name}_sizes_{index}", axis=0)

    first = sizes(values[0], 0)
    agree = None
    for index, value in enumerate(values[1:], start=1):
        same = builder.op("Equal", [first, sizes(value, index)], f"{name}_same_{index}")
        same = builder.op("Cast", [same], f"{name}_same_count_{index}", to=onnx_type("int64"))
        agree = same if agree is None else builder.op("Mul", [agree, same], f"{name}_agree")
    # every entry 1: their product (a Mul chain, no reduction over a possibly empty input)
    total = builder.op(
        "Gather", [agree, builder.int64s([0], f"{name}_first")], f"{name}_agree_first", axis=0
    )
    for entry in range(1, rank - 1):
        item = builder.op(
            "Gather",
            [agree, builder.int64s([entry], f"{name}_entry_{entry}")],
            f"{name}_agree_{entry}",
            axis=0,
        )
        total = builder.op("Mul", [total, item], f"{name}_agree_all")
    scalar = builder.op("Squeeze", [total], f"{name}_agree_scalar")
    nothing = _zero_unless_positive(builder, scalar, name, "needs_matching_sizes")
    return builder.op(
        "Slice",
        [values[0].name, nothing, nothing, builder.int64s([axis], f"{name}_axis")],
        f"{name}_checked_nothing",
    )
