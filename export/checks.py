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


def _product(builder: GraphBuilder, sizes: str, name: str) -> str:
    """The product of a non-empty int64 vector, as a scalar (no axes: every axis reduced,
    at every opset)."""
    return builder.op("ReduceProd", [sizes], name, keepdims=0)


def require_nonempty(
    builder: GraphBuilder, x: Value, axes: Sequence[int], name: str, label: str
) -> str:
    """``x`` behind a check that fails when any of ``axes`` is empty; ``x`` itself where
    every one of them has a fixed size of at least 1.

    The check (:func:`_zero_unless_positive`) fails on a size of 0, the product of those
    axes' sizes. ``x`` is multiplied by a 1 computed from that gather (exact for
    every value, and every dim of ``x`` kept by shape inference): an operand known only at
    run time, which no optimizer folds away (a Reshape of ``x`` to its own shape through
    the check was rewritten and dropped)."""
    if all(isinstance(x.shape[a], int) and x.shape[a] > 0 for a in axes):
        return x.name
    shape = builder.op("Shape", [x.name], f"{name}_input_shape")
    sizes = builder.op(
        "Gather", [shape, builder.int64s(list(axes), f"{name}_axes")], f"{name}_sizes", axis=0
    )
    nothing = _zero_unless_positive(builder, _product(builder, sizes, f"{name}_size"), name, label)
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
    every = _product(builder, agree, f"{name}_agree_all")  # 1 where every entry is 1
    nothing = _zero_unless_positive(builder, every, name, "needs_matching_sizes")
    return builder.op(
        "Slice",
        [values[0].name, nothing, nothing, builder.int64s([axis], f"{name}_axis")],
        f"{name}_checked_nothing",
    )
