"""Shape rules and einsum equations of the attention layers, written once for the NumPy
reference and the ONNX converters.

MultiHeadAttention's equations are built as Keras builds them (``_build_proj_equation``,
``_build_attention_equation``), so that a query of any rank and any ``attention_axes``
contract exactly the axes Keras contracts.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np

from layerserve.errors import ShapeError

Shape = tuple[int | None, ...]


def input_list(input_shape: Any, what: str) -> list[Shape]:
    """``[query, value]`` or ``[query, value, key]`` shapes, checked."""
    if (
        not isinstance(input_shape, (list, tuple))
        or not input_shape
        or isinstance(input_shape[0], (int, type(None)))
    ):
        raise ShapeError(
            f"{what} layer must be called on a list of inputs, namely [query, value] or "
            f"[query, value, key]. Received: inputs with shape {input_shape!r}"
        )
    shapes = [tuple(s) for s in input_shape]
    if not 2 <= len(shapes) <= 3:
        raise ShapeError(
            f"{what} layer accepts inputs list of length 2 or 3, namely [query, value] or "
            f"[query, value, key]. Received length: {len(shapes)}."
        )
    return shapes


def _equal(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


def dense_attention_shapes(input_shape: Any, what: str) -> tuple[Shape, Shape, Shape]:
    """Query, value and key shapes of Attention/AdditiveAttention: rank >= 3, the same
    leading axes, ``key`` as long as ``value``, query and key of one width."""
    shapes = input_list(input_shape, what)
    query, value = shapes[0], shapes[1]
    key = shapes[2] if len(shapes) > 2 else value
    ranks = {len(query), len(value), len(key)}
    if len(ranks) > 1 or len(query) < 3:
        raise ShapeError(
            f"{what} layer expects query, value and key of one rank >= 3, "
            f"(batch_size, ..., T, dim). Received: shapes={shapes}"
        )
    batch_ok = all(
        _equal(a, b) for s in (value, key) for a, b in zip(query[:-2], s[:-2], strict=False)
    )
    if not batch_ok or not _equal(value[-2], key[-2]) or not _equal(query[-1], key[-1]):
        raise ShapeError(
            f"{what} layer expects query (..., Tq, dim), value (..., Tv, dim_v) and key "
            f"(..., Tv, dim) with the same leading axes. Received: shapes={shapes}"
        )
    return query, value, key


def dense_attention_output_shapes(input_shape: Any, what: str) -> tuple[Shape, Shape]:
    """``(output, scores)`` shapes: ``(..., Tq, dim_v)`` and ``(..., Tq, Tv)``."""
    query, value, key = dense_attention_shapes(input_shape, what)
    return (*query[:-1], value[-1]), (*query[:-1], key[-2])


def causal_mask(rows: int, columns: int) -> np.ndarray:
    """``row >= column`` over ``(rows, columns)`` (Keras's cumsum comparison)."""
    return np.arange(rows)[:, None] >= np.arange(columns)[None, :]


# ---- MultiHeadAttention --------------------------------------------------------------
def _letter(index: int) -> str:
    return string.ascii_lowercase[index]


def projection_equation(free_dims: int, bound_dims: int, output_dims: int) -> tuple[str, str]:
    """Keras's ``_build_proj_equation``: ``(equation, bias_axes)``."""
    free = "".join(_letter(i) for i in range(free_dims))
    bound = "".join(_letter(free_dims + i) for i in range(bound_dims))
    out = "".join(_letter(free_dims + bound_dims + i) for i in range(output_dims))
    return f"{free}{bound},{bound}{out}->{free}{out}", out


def attention_equations(rank: int, attention_axes: tuple[int, ...]) -> tuple[str, str, int]:
    """Keras's ``_build_attention_equation`` for projected tensors of ``rank``
    ``(batch, ..., heads, channels)``: ``(dot_product, combine, scores_rank)``."""
    target = "".join(_letter(i) for i in range(rank))
    batch_dims = [i for i in range(rank) if i not in attention_axes and i != rank - 1]
    source, offset = "", rank
    for i in range(rank):
        if i in batch_dims or i == rank - 1:
            source += target[i]
        else:
            source += _letter(offset)
            offset += 1
    product = (
        "".join(target[i] for i in batch_dims)
        + "".join(target[i] for i in attention_axes)
        + "".join(source[i] for i in attention_axes)
    )
    return f"{source},{target}->{product}", f"{product},{source}->{target}", len(product)


def resolve_attention_axes(
    attention_axes: tuple[int, ...] | None, query_rank: int, negative_base: int
) -> tuple[int, ...]:
    """The attention axes of the projected rank ``query_rank + 1`` tensors: every axis
    between batch and heads by default; negative axes count from ``negative_base``
    (Keras 3: ``rank - 1``; tf.keras keeps them negative, which then name no axis)."""
    rank = query_rank + 1
    if attention_axes is None:
        return tuple(range(1, rank - 2))
    return tuple(a if a >= 0 else negative_base + a for a in attention_axes)


def mha_shapes(input_shape: Any) -> tuple[Shape, Shape, Shape]:
    shapes = input_list(input_shape, "MultiHeadAttention")
    query, value = shapes[0], shapes[1]
    key = shapes[2] if len(shapes) > 2 else value
    if len(value) != len(key) or not all(
        _equal(a, b) for a, b in zip(value[1:-1], key[1:-1], strict=False)
    ):
        raise ShapeError(
            "All dimensions of `value` and `key`, except the last one, must be equal. "
            f"Received: value_shape={value} and key_shape={key}"
        )
    if len(query) < 3 or len(query) != len(value):
        raise ShapeError(
            "MultiHeadAttention expects query, value and key of one rank >= 3. "
            f"Received: query_shape={query}, value_shape={value}"
        )
    return query, value, key


def mha_output_shapes(
    input_shape: Any,
    num_heads: int,
    output_shape: tuple[int, ...] | None,
    attention_axes: tuple[int, ...],
) -> tuple[Shape, Shape]:
    """``(output, scores)``: the query's shape with its last axis replaced by
    ``output_shape`` (if given), and the scores over (batch dims, heads, query
    attention dims, key attention dims)."""
    query, value, _ = mha_shapes(input_shape)
    out = (*query[:-1], *output_shape) if output_shape else query
    rank = len(query) + 1
    batch_dims = [i for i in range(rank) if i not in attention_axes and i != rank - 1]
    projected_q = (*query[:-1], num_heads, None)
    projected_v = (*value[:-1], num_heads, None)
    scores = (
        *(projected_q[i] for i in batch_dims),
        *(projected_q[i] for i in attention_axes),
        *(projected_v[i] for i in attention_axes),
    )
    return tuple(out), tuple(scores)


def check_attention_axes(attention_axes: tuple[int, ...], query_rank: int, name: str) -> None:
    rank = query_rank + 1
    if not attention_axes or any(not 0 < a < rank - 2 for a in attention_axes):
        raise ShapeError(
            f"Layer {name} (MultiHeadAttention): `attention_axes` must name axes between "
            f"the batch axis and the last axis of the query (1 to {query_rank - 2}). "
            f"Received: attention_axes={attention_axes} for a query of rank {query_rank}"
        )


def combined_mask_shape(
    mask_shapes: list[Shape | None],
    rows: int | None,
    columns: int | None,
    banded: bool,
    explicit: Shape | None,
) -> Shape | None:
    """The static shape of MultiHeadAttention's combined mask (``mha_math.assemble_mask``):
    query ``(B, T, 1)``, value and key ``(B, 1, S)``, causal/window ``(1, T, S)`` and
    the explicit ``attention_mask``, broadcast; None when there is no mask."""
    parts: list[Shape] = []
    query, value, key = mask_shapes
    if query is not None:
        parts.append((*query, 1))
    for column_mask in (value, key):
        if column_mask is not None:
            parts.append((*column_mask[:-1], 1, column_mask[-1]))
    if banded:
        parts.append((1, rows, columns))
    if explicit is not None:
        parts.append(tuple(explicit))
    if not parts:
        return None
    rank = max(len(p) for p in parts)
    padded = [(1,) * (rank - len(p)) + tuple(p) for p in parts]
    result = []
    for dims in zip(*padded, strict=True):
        sized = {d for d in dims if d != 1}
        result.append(
            1 if not sized else (sized.pop() if len(sized) == 1 and None not in sized else None)
        )
    return tuple(result)
