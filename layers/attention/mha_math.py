"""MultiHeadAttention's reference math: projections, mask assembly, the masked softmax
of each Keras version and code path (see ``MultiHeadAttention`` for which applies)."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.layers.attention import attention_shapes as shapes

# How a masked softmax treats masked scores, one per Keras version and code path:
# tf.keras adds ``(1 - mask)·(-1e9)``; tf.keras with ``softmax_robust_masking`` and the
# Keras 3 einsum path put -1e9 in their place (Keras >= 3.10 then zeroes masked weights,
# so a fully masked row is all zeros); Keras 3's fused ``dot_product_attention`` puts
# -0.7·float32_max there (a fully masked row is exactly uniform).
TFK_ADD = "tfk_add"
WHERE = "where"
WHERE_ZEROED = "where_zeroed"
FUSED = "fused"
LARGE_NEGATIVE = -1.0e9


def project(
    x: np.ndarray, equation: str, kernel: np.ndarray, bias: np.ndarray | None
) -> np.ndarray:
    """An EinsumDense projection: ``einsum(equation, x, kernel) + bias``."""
    y = np.einsum(equation, x, kernel)
    return y if bias is None else y + bias


def assemble_mask(
    query: np.ndarray,
    value: np.ndarray,
    query_mask: Any,
    value_mask: Any,
    key_mask: Any,
    use_causal_mask: bool,
    sliding_window: int | None,
    attention_mask: Any,
) -> np.ndarray | None:
    """Keras's ``_compute_attention_mask``: query ``[..., None]`` AND value and key
    ``[..., None, :]`` AND causal ``(1, T, S)`` AND the sliding window AND the explicit
    ``attention_mask`` (cast to bool: nonzero keeps)."""
    auto = None

    def merge(mask: np.ndarray) -> None:
        nonlocal auto
        auto = mask if auto is None else auto & mask

    if query_mask is not None:
        merge(np.expand_dims(np.asarray(query_mask, dtype=bool), -1))
    if value_mask is not None:
        merge(np.expand_dims(np.asarray(value_mask, dtype=bool), -2))
    if key_mask is not None:
        merge(np.expand_dims(np.asarray(key_mask, dtype=bool), -2))
    rows, columns = query.shape[1], value.shape[1]
    if use_causal_mask:
        merge(shapes.causal_mask(rows, columns)[np.newaxis])
    if sliding_window is not None:
        distance = np.abs(np.arange(rows)[:, None] - np.arange(columns)[None, :])
        merge((distance < sliding_window)[np.newaxis])
    explicit = None if attention_mask is None else np.asarray(attention_mask).astype(bool)
    if auto is None:
        return explicit
    return auto if explicit is None else explicit & auto


def expand_mask(mask: np.ndarray, scores_rank: int, attention_axes: int) -> np.ndarray:
    """Keras inserts axes at ``-2·len(attention_axes) - 1`` until the mask has the
    scores' rank (the heads axis, for 3-D inputs)."""
    axis = -2 * attention_axes - 1
    while mask.ndim < scores_rank:
        mask = np.expand_dims(mask, axis)
    return mask


def masked_softmax(
    scores: np.ndarray, mask: np.ndarray | None, axes: tuple[int, ...], rule: str
) -> np.ndarray:
    if mask is not None:
        if rule == TFK_ADD:
            scores = scores + (1.0 - mask.astype(scores.dtype)) * scores.dtype.type(LARGE_NEGATIVE)
        elif rule == FUSED:
            fill = scores.dtype.type(-0.7 * np.finfo(scores.dtype).max)
            scores = np.where(mask, scores, fill)
        else:
            scores = np.where(mask, scores, scores.dtype.type(LARGE_NEGATIVE))
    weights = softmax(scores, axes)
    if mask is not None and rule == WHERE_ZEROED:
        weights = np.where(mask, weights, np.zeros((), dtype=weights.dtype))
    return weights


def softmax(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Softmax over one axis, or ``exp(x - logsumexp(x))`` jointly over several."""
    if x.size == 0:
        return np.zeros_like(x)
    top = np.max(x, axis=axes, keepdims=True)
    exps = np.exp(x - top)
    total = np.sum(exps, axis=axes, keepdims=True)
    if len(axes) == 1:
        return (exps / total).astype(x.dtype, copy=False)
    return np.exp(x - (top + np.log(total))).astype(x.dtype, copy=False)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))``; exp overflowing to inf for very negative x gives 0, as in
    Keras."""
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(x.dtype, copy=False)
