"""Run-time checks an exported graph makes where Keras fails on an input and onnxruntime
would answer (or abort the process): the graph fails instead, with an error naming the
node that checks, e.g. ``<layer>_needs_a_timestep``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layerserve.export.builder import GraphBuilder, Value, onnx_type


def require_nonempty(
    builder: GraphBuilder, x: Value, axes: Sequence[int], name: str, label: str
) -> str:
    """``x`` behind a check that fails when any of ``axes`` is empty.

    The check gathers the last of ``Range(size)`` (the product of those axes' sizes), out
    of bounds when the size is 0: onnxruntime then fails with an error naming the node
    ``<name>_<label>``. ``x`` is multiplied by a 1 computed from that gather (exact for
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
    zero = builder.constant(np.asarray(0, np.int64), f"{name}_range_start")
    one = builder.constant(np.asarray(1, np.int64), f"{name}_range_step")
    indices = builder.op("Range", [zero, size, one], f"{name}_indices")
    last = builder.op(
        "Gather", [indices, builder.int64s([-1], f"{name}_last_index")], f"{name}_{label}", axis=0
    )
    nothing = builder.op("Sub", [last, last], f"{name}_checked_zero")
    unit = builder.op("Add", [nothing, one], f"{name}_checked_one")
    factor = builder.op("Cast", [unit], f"{name}_checked_factor", to=onnx_type(x.dtype))
    return builder.op("Mul", [x.name, factor], f"{name}_checked_input")
