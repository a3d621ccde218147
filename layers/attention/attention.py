"""Attention: dot-product (Luong-style) attention."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import initializers
from layerserve.errors import ConfigError, received
from layerserve.layers.attention.base_dense_attention import BaseDenseAttention
from layerserve.layers.attention.call_arguments import check_flag

SCORE_MODES = ("dot", "concat")


class Attention(BaseDenseAttention):
    """Dot-product attention over ``[query, value]`` or ``[query, value, key]``.

    Args:
        use_scale: learn a scalar ``scale`` multiplying the scores (weight ``scale``).
        score_mode: ``"dot"`` (``q·kᵀ``) or ``"concat"`` (``w·Σ tanh(scale·(q + k))``,
            weight ``concat_score_weight``).
        dropout: the rate on the attention weights in training; identity at inference.
        seed: the dropout seed (Keras 3).
        causal: tf.keras <= 2.9 config key: always mask future steps.
        **kwargs: standard layer keyword arguments.

    Call arguments:
        inputs: ``[query (N, ..., Tq, dim), value (N, ..., Tv, dim_v), key?]``.
        mask: ``[query_mask (N, ..., Tq), value_mask (N, ..., Tv)]``, or the masks the
            inputs carry. Masked values get ``score - 1e9``; masked query rows output 0.
        return_attention_scores: also return the softmax weights ``(N, ..., Tq, Tv)``.
        use_causal_mask: step ``i`` attends to steps ``j <= i`` only.

    Input shape:
        Query, value and key of one rank >= 3 with the same leading axes.

    Output shape:
        ``(N, ..., Tq, dim_v)`` (and the weights). Output mask: the query's mask.
    """

    def __init__(
        self,
        use_scale: bool = False,
        score_mode: str = "dot",
        dropout: float = 0.0,
        seed: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dropout=dropout, seed=seed, **kwargs)
        self.use_scale = check_flag(use_scale, "use_scale")
        if score_mode not in SCORE_MODES:
            raise ConfigError(
                "Invalid value for argument score_mode. Expected one of {'dot', 'concat'}. "
                + received("score_mode", score_mode)
            )
        self.score_mode = score_mode
        self.scale = None
        self.concat_score_weight = None

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        ones = initializers.get("ones")
        if self.use_scale:
            self.scale = self.add_weight("scale", (), ones)
        if self.score_mode == "concat":
            self.concat_score_weight = self.add_weight("concat_score_weight", (), ones)

    def _calculate_scores(self, query: np.ndarray, key: np.ndarray) -> np.ndarray:
        if self.score_mode == "dot":
            scores = np.matmul(query, np.swapaxes(key, -1, -2))
            if self.scale is not None:
                scores = scores * self.scale.value
            return scores
        summed = np.expand_dims(query, -2) + np.expand_dims(key, -3)
        if self.scale is not None:
            summed = self.scale.value * summed
        return self.concat_score_weight.value * np.sum(np.tanh(summed), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "use_scale": self.use_scale, "score_mode": self.score_mode}
