"""Attention layers. Scores are ``MatMul`` (dot), or ``Tanh`` of broadcast sums
contracted by ``MatMul`` with the scale vector (concat, additive: no reductions, which
onnxruntime mishandles on empty batches); masked scores are ``Where(mask, s, s - 1e9)``
as Keras subtracts; ``Softmax(-1)``; ``MatMul`` with the values; masked query rows are
``Where`` (Keras 3) or ``Mul`` (tf.keras). MultiHeadAttention projects with ``MatMul``
on kernels reshaped to 2-D plus ``Reshape``, flattens several attention axes into one
for a single ``Softmax``, and treats masked scores as the Keras version and code path
did (``layers/attention/mha_math.py``). Causal and sliding-window masks are built from
``Range`` so sequence lengths stay dynamic."""

from __future__ import annotations

import math

import numpy as np

from layerserve.errors import NotSupportedError
from layerserve.export.builder import GraphBuilder, Value, onnx_type
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.attention import attention_shapes, mha_math
from layerserve.layers.attention.additive_attention import AdditiveAttention
from layerserve.layers.attention.attention import Attention
from layerserve.layers.attention.base_dense_attention import BaseDenseAttention, mask_penalty
from layerserve.layers.attention.multi_head_attention import MultiHeadAttention
from layerserve.layers.tensor import flatten


def _options(conversion: Conversion) -> dict:
    node = conversion.extra.get("node")
    return {} if node is None else dict(node.call_kwargs)


def _structure_size(conversion: Conversion) -> int:
    node = conversion.extra.get("node")
    return len(conversion.inputs) if node is None else len(flatten(node.input_structure))


def _carried_masks(conversion: Conversion) -> list[Value | None]:
    """The masks the input tensors carry: what Keras's attention layers read."""
    masks = list(conversion.previous_masks or conversion.masks)
    return masks + [None] * (len(conversion.inputs) - len(masks))


def _check_float32(layer: object, values: list[Value]) -> None:
    if any(np.dtype(v.dtype) != np.float32 for v in values):
        raise NotSupportedError(
            f"Layer {layer.name!r} ({type(layer).__name__}): only float32 attention is "
            f"exported. Received: dtypes={[v.dtype for v in values]}"
        )


def _const(builder: GraphBuilder, value: object, name: str) -> str:
    return builder.constant(np.asarray(value, dtype=np.float32), name)


def _unsqueeze(builder: GraphBuilder, x: str, axes: list[int], name: str) -> str:
    return builder.op("Unsqueeze", [x, builder.int64s(axes, f"{name}_axes")], name)


def _dim(builder: GraphBuilder, x: str, axis: int, name: str) -> str:
    """Dimension ``axis`` of ``x`` as an int64 scalar."""
    shape = builder.op("Shape", [x], f"{name}_shape")
    return builder.op("Gather", [shape, builder.int64s(axis, f"{name}_axis")], name, axis=0)


def _lower_triangle(
    builder: GraphBuilder, rows: str, columns: str, name: str, window: int | None = None
) -> str:
    """``row >= column`` (or ``|row - column| < window``) over ``(rows, columns)``."""
    zero, one = builder.int64s(0, f"{name}_zero"), builder.int64s(1, f"{name}_one")
    row = _unsqueeze(
        builder, builder.op("Range", [zero, rows, one], f"{name}_rows"), [1], f"{name}_r"
    )
    column = _unsqueeze(
        builder, builder.op("Range", [zero, columns, one], f"{name}_columns"), [0], f"{name}_c"
    )
    if window is None:
        return builder.op("GreaterOrEqual", [row, column], name)
    distance = builder.op("Abs", [builder.op("Sub", [row, column], f"{name}_diff")], f"{name}_abs")
    return builder.op("Less", [distance, builder.int64s(window, f"{name}_window")], name)


def _and(builder: GraphBuilder, a: str | None, b: str, name: str) -> str:
    return b if a is None else builder.op("And", [a, b], name)


# ---- Attention, AdditiveAttention --------------------------------------------------------
@converter(Attention, AdditiveAttention)
def convert_dense_attention(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    options = _options(conversion)
    query, value = conversion.inputs[0], conversion.inputs[1]
    key = conversion.inputs[2] if len(conversion.inputs) > 2 else value
    _check_float32(layer, [query, value, key])
    masks = _carried_masks(conversion)
    query_mask, value_mask = masks[0], masks[1]
    name = layer.name
    scores = _dense_scores(builder, layer, query, key)
    keep = None
    if value_mask is not None:
        keep = _unsqueeze(builder, value_mask.name, [-2], f"{name}_value_keep")
    if layer.causal or options.get("use_causal_mask"):
        triangle = _lower_triangle(
            builder,
            _dim(builder, query.name, query.rank - 2, f"{name}_tq"),
            _dim(builder, key.name, key.rank - 2, f"{name}_tv"),
            f"{name}_causal",
        )
        keep = _and(builder, keep, triangle, f"{name}_keep")
    if keep is not None:
        penalty = _const(builder, mask_penalty(np.float32), f"{name}_penalty")
        shifted = builder.op("Sub", [scores, penalty], f"{name}_shifted")
        scores = builder.op("Where", [keep, scores, shifted], f"{name}_masked_scores")
    weights = builder.op("Softmax", [scores], f"{name}_weights", axis=-1)
    out = builder.op("MatMul", [weights, value.name], f"{name}_attended")
    if query_mask is not None:
        rows = _unsqueeze(builder, query_mask.name, [-1], f"{name}_query_keep")
        if layer.keras_version < (3, 0, 0):
            factor = builder.op("Cast", [rows], f"{name}_query_factor", to=onnx_type(np.float32))
            out = builder.op("Mul", [out, factor], name)
        else:
            out = builder.op("Where", [rows, out, _const(builder, 0.0, f"{name}_zero")], name)
    query_mask_name = None if query_mask is None else query_mask.name
    if options.get("return_attention_scores"):
        return Converted([out, weights], [query_mask_name, None])
    return Converted([out], [query_mask_name])


def _dense_scores(
    builder: GraphBuilder, layer: BaseDenseAttention, query: Value, key: Value
) -> str:
    name, rank = layer.name, query.rank
    if isinstance(layer, Attention) and layer.score_mode == "dot":
        perm = [*range(rank - 2), rank - 1, rank - 2]
        key_t = builder.op("Transpose", [key.name], f"{name}_key_t", perm=perm)
        scores = builder.op("MatMul", [query.name, key_t], f"{name}_dot")
        if layer.scale is not None:
            scale = _const(builder, layer.scale.value, f"{name}_scale")
            scores = builder.op("Mul", [scores, scale], f"{name}_scaled")
        return scores
    summed = builder.op(
        "Add",
        [
            _unsqueeze(builder, query.name, [-2], f"{name}_q"),
            _unsqueeze(builder, key.name, [-3], f"{name}_k"),
        ],
        f"{name}_sum",
    )
    width = query.shape[-1]
    if isinstance(layer, Attention):
        if layer.scale is not None:
            scale = _const(builder, layer.scale.value, f"{name}_scale")
            summed = builder.op("Mul", [scale, summed], f"{name}_scaled")
        ones = _const(builder, np.ones(width), f"{name}_ones")
        total = builder.op(
            "MatMul", [builder.op("Tanh", [summed], f"{name}_tanh"), ones], f"{name}_total"
        )
        weight = _const(builder, layer.concat_score_weight.value, f"{name}_concat_weight")
        return builder.op("Mul", [weight, total], f"{name}_scores")
    vector = layer.scale.value if layer.scale is not None else np.ones(width)
    if np.shape(vector)[0] != width:
        raise NotSupportedError(
            f"Layer {name!r} (AdditiveAttention): a scale of {np.shape(vector)[0]} features "
            f"broadcast over queries of {width} is not exported. Received: scale shape "
            f"{np.shape(vector)}"
        )
    tanh = builder.op("Tanh", [summed], f"{name}_tanh")
    return builder.op("MatMul", [tanh, _const(builder, vector, f"{name}_scale")], f"{name}_scores")


# ---- MultiHeadAttention ------------------------------------------------------------------
def _project(
    builder: GraphBuilder, layer: MultiHeadAttention, projection: str, x: str, free: int
) -> str:
    """An EinsumDense: ``x (..., D_in...)`` → ``(..., out...)`` as one 2-D ``MatMul``.
    ``free`` leading axes are kept (copied by Reshape's 0)."""
    kernel = layer.kernels[projection].value
    bound = 2 if projection == "attention_output" else 1
    inner, outer = kernel.shape[:bound], kernel.shape[bound:]
    name = f"{layer.name}_{projection}"
    if bound == 2:
        x = builder.op(
            "Reshape",
            [x, builder.int64s([0] * free + [math.prod(inner)], f"{name}_in_shape")],
            f"{name}_flat",
        )
    matrix = builder.constant(kernel.reshape(math.prod(inner), math.prod(outer)), f"{name}_kernel")
    y = builder.op("MatMul", [x, matrix], f"{name}_matmul")
    if projection in layer.biases:
        bias = builder.constant(layer.biases[projection].value.reshape(-1), f"{name}_bias")
        y = builder.op("Add", [y, bias], f"{name}_biased")
    if len(outer) == 1:
        return y
    return builder.op(
        "Reshape", [y, builder.int64s([0] * free + list(outer), f"{name}_shape")], name
    )


def _flatten_axes(
    builder: GraphBuilder, x: str, kept: int, flattened: int, tail: list[int], name: str
) -> str:
    """Merge the ``flattened`` axes after the first ``kept`` into one (sizes read at run
    time: a -1 would fail on an empty batch)."""
    if flattened == 1:
        return x
    shape = builder.op("Shape", [x], f"{name}_shape")
    sizes = builder.op(
        "Slice",
        [
            shape,
            builder.int64s([kept], f"{name}_from"),
            builder.int64s([kept + flattened], f"{name}_to"),
        ],
        f"{name}_sizes",
    )
    product = builder.op("ReduceProd", [sizes], f"{name}_product", keepdims=1)
    head = builder.op(
        "Slice",
        [shape, builder.int64s([0], f"{name}_zero"), builder.int64s([kept], f"{name}_kept")],
        f"{name}_head",
    )
    target = builder.op(
        "Concat", [head, product, builder.int64s(tail, f"{name}_tail")], f"{name}_target", axis=0
    )
    return builder.reshape_to(x, target, name)


def _unflatten(
    builder: GraphBuilder, x: str, like: str, count: int, tail_from: str, name: str
) -> str:
    """Reshape ``x`` to ``like``'s first ``count`` dims followed by ``tail_from``'s last
    dims (the inverse of :func:`_flatten_axes`)."""
    head = builder.op(
        "Slice",
        [
            builder.op("Shape", [like], f"{name}_like"),
            builder.int64s([0], f"{name}_zero"),
            builder.int64s([count], f"{name}_count"),
        ],
        f"{name}_head",
    )
    tail = builder.op(
        "Slice",
        [
            builder.op("Shape", [tail_from], f"{name}_from"),
            builder.int64s([-1], f"{name}_last"),
            builder.int64s([np.iinfo(np.int64).max], f"{name}_end"),
        ],
        f"{name}_tail",
    )
    target = builder.op("Concat", [head, tail], f"{name}_target", axis=0)
    return builder.reshape_to(x, target, name)


def _mha_mask(
    builder: GraphBuilder, layer: MultiHeadAttention, conversion: Conversion, options: dict
) -> str | None:
    """The combined boolean mask ``(B|1, 1, T|1, S|1)`` of a rank-3 query, or None."""
    size = _structure_size(conversion)
    masks = _carried_masks(conversion)
    query, value = conversion.inputs[0], conversion.inputs[1]
    name, keep = layer.name, None
    if masks[0] is not None:
        keep = _unsqueeze(builder, masks[0].name, [-1], f"{name}_query_keep")
    for index in (1, 2) if size > 2 else (1,):
        if masks[index] is not None:
            column = _unsqueeze(builder, masks[index].name, [-2], f"{name}_column_keep")
            keep = _and(builder, keep, column, f"{name}_keep")
    rows = cols = None
    if options.get("use_causal_mask") or layer.sliding_window is not None:
        rows = _dim(builder, query.name, 1, f"{name}_t")
        cols = _dim(builder, value.name, 1, f"{name}_s")
    if options.get("use_causal_mask"):
        causal = _lower_triangle(builder, rows, cols, f"{name}_causal_2d")
        causal = _unsqueeze(builder, causal, [0], f"{name}_causal")  # (1, T, S), as Keras
        keep = _and(builder, keep, causal, f"{name}_keep")
    if layer.sliding_window is not None:
        band = _lower_triangle(builder, rows, cols, f"{name}_band_2d", layer.sliding_window)
        band = _unsqueeze(builder, band, [0], f"{name}_band")
        keep = _and(builder, keep, band, f"{name}_keep")
    if "attention_mask" in options:
        explicit = conversion.inputs[size]
        explicit_keep = builder.op(
            "Cast", [explicit.name], f"{name}_attention_keep", to=onnx_type(np.bool_)
        )
        keep = (
            explicit_keep
            if keep is None
            else builder.op("And", [explicit_keep, keep], f"{name}_keep")
        )
    return None if keep is None else _unsqueeze(builder, keep, [1], f"{name}_mask")


def _masked_weights(
    builder: GraphBuilder, scores: str, keep: str | None, rule: str, name: str
) -> str:
    if keep is None:
        return builder.op("Softmax", [scores], f"{name}_weights", axis=-1)
    if rule == mha_math.TFK_ADD:
        adder = builder.op(
            "Where",
            [
                keep,
                _const(builder, 0.0, f"{name}_no_penalty"),
                _const(builder, mha_math.LARGE_NEGATIVE, f"{name}_penalty"),
            ],
            f"{name}_adder",
        )
        scores = builder.op("Add", [scores, adder], f"{name}_masked_scores")
    else:
        fill = (
            -0.7 * np.finfo(np.float32).max if rule == mha_math.FUSED else mha_math.LARGE_NEGATIVE
        )
        scores = builder.op(
            "Where", [keep, scores, _const(builder, fill, f"{name}_fill")], f"{name}_masked_scores"
        )
    weights = builder.op("Softmax", [scores], f"{name}_weights", axis=-1)
    if rule == mha_math.WHERE_ZEROED:
        weights = builder.op(
            "Where", [keep, weights, _const(builder, 0.0, f"{name}_zero")], f"{name}_zeroed"
        )
    return weights


@converter(MultiHeadAttention)
def convert_multi_head_attention(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    options = _options(conversion)
    size = _structure_size(conversion)
    query, value = conversion.inputs[0], conversion.inputs[1]
    key = conversion.inputs[2] if size > 2 else value
    _check_float32(layer, [query, value, key])
    name, rank = layer.name, query.rank
    keep = None
    if rank == 3:
        keep = _mha_mask(builder, layer, conversion, options)
    elif (
        options.get("use_causal_mask")
        or "attention_mask" in options
        or layer.sliding_window
        or any(m is not None for m in _carried_masks(conversion)[:size])
    ):
        raise NotSupportedError(
            f"Layer {name!r} (MultiHeadAttention): a query of rank {rank} is exported "
            "without masks only (a causal mask, a sliding window, an attention_mask or the "
            f"inputs' own masks: those of rank-3 queries alone). Received: query rank {rank} "
            "with a mask"
        )
    free = rank - 1
    gate = _project(builder, layer, "gate", query.name, free) if layer.use_gate else None
    q = _project(builder, layer, "query", query.name, free)
    k = _project(builder, layer, "key", key.name, free)
    v = _project(builder, layer, "value", value.name, free)
    scale = _const(builder, 1.0 / math.sqrt(float(layer.key_dim)), f"{name}_inverse_sqrt_key_dim")
    q = builder.op("Mul", [q, scale], f"{name}_scaled_query")
    projected = rank + 1
    axes = list(layer.resolved_axes)
    batch = [i for i in range(projected) if i not in axes and i != projected - 1]
    perm = batch + axes + [projected - 1]
    nb, na = len(batch), len(axes)

    def arrange(x: str, label: str, width: int) -> str:
        moved = builder.op("Transpose", [x], f"{name}_{label}_moved", perm=perm)
        return _flatten_axes(builder, moved, nb, na, [width], f"{name}_{label}_flat")

    q_flat = arrange(q, "query", layer.key_dim)
    k_flat = arrange(k, "key", layer.key_dim)
    v_flat = arrange(v, "value", layer.value_dim)
    k_t = builder.op("Transpose", [k_flat], f"{name}_key_t", perm=[*range(nb), nb + 1, nb])
    scores = builder.op("MatMul", [q_flat, k_t], f"{name}_scores")
    rule = layer.softmax_rule(rank, bool(options.get("return_attention_scores")))
    weights = _masked_weights(builder, scores, keep, rule, name)
    context = builder.op("MatMul", [weights, v_flat], f"{name}_context_flat")
    moved_q = builder.op("Transpose", [q], f"{name}_query_order", perm=perm) if na > 1 else None
    if na > 1:
        context = _unflatten(builder, context, moved_q, nb + na, context, f"{name}_context_shape")
    inverse = list(np.argsort(perm))
    context = builder.op("Transpose", [context], f"{name}_context", perm=inverse)
    if gate is not None:
        context = builder.op(
            "Mul", [context, builder.op("Sigmoid", [gate], f"{name}_gate")], f"{name}_gated"
        )
    out = _project(builder, layer, "attention_output", context, free)
    masks = _carried_masks(conversion)
    query_mask = None if masks[0] is None else masks[0].name
    if options.get("return_attention_scores"):
        if na > 1:
            moved_k = builder.op("Transpose", [k], f"{name}_key_order", perm=perm)
            key_dims = builder.op(
                "Slice",
                [
                    builder.op("Shape", [moved_k], f"{name}_key_shape"),
                    builder.int64s([nb], f"{name}_k_from"),
                    builder.int64s([nb + na], f"{name}_k_to"),
                ],
                f"{name}_key_dims",
            )
            head = builder.op(
                "Slice",
                [
                    builder.op("Shape", [moved_q], f"{name}_q_shape"),
                    builder.int64s([0], f"{name}_q_from"),
                    builder.int64s([nb + na], f"{name}_q_to"),
                ],
                f"{name}_query_dims",
            )
            target = builder.op("Concat", [head, key_dims], f"{name}_scores_target", axis=0)
            weights = builder.reshape_to(weights, target, f"{name}_scores_out")
        # the scores carry the mask their masked softmax got (Keras's Softmax layer)
        return Converted([out, weights], [query_mask, keep])
    return Converted([out], [query_mask])


__all__ = [
    "attention_shapes",
    "convert_dense_attention",
    "convert_multi_head_attention",
]
