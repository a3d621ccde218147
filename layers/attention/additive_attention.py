"""AdditiveAttention: Bahdanau-style attention."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve import initializers
from layerserve.layers.attention import attention_shapes as shapes
from layerserve.layers.attention.base_dense_attention import BaseDenseAttention
from layerserve.layers.attention.call_arguments import check_flag


class AdditiveAttention(BaseDenseAttention):
    """Additive attention: scores ``Σ_d scale_d·tanh(q_i,d + k_j,d)``.

    Args:
        use_scale: learn the per-feature ``scale`` (weight ``scale``, of the query's
            width in Keras 3 and the value's in tf.keras; without it the scale is 1).
        dropout: the rate on the attention weights in training; identity at inference.
        seed: the dropout seed (Keras 3).
        causal: tf.keras <= 2.9 config key: always mask future steps.
        **kwargs: standard layer keyword arguments.

    Call arguments: as :class:`Attention`.

    Input shape:
        ``[query (N, ..., Tq, dim), value (N, ..., Tv, dim_v), key (N, ..., Tv, dim)?]``.

    Output shape:
        ``(N, ..., Tq, dim_v)`` (and the weights ``(N, ..., Tq, Tv)``). Output mask: the
        query's mask.
    """

    def __init__(
        self, use_scale: bool = True, dropout: float = 0.0, seed: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(dropout=dropout, seed=seed, **kwargs)
        self.use_scale = check_flag(use_scale, "use_scale")
        self.scale = None

    def build(self, input_shape: Any) -> None:
        query, value, _ = shapes.dense_attention_shapes(input_shape, self._what())
        super().build(input_shape)
        if self.use_scale:
            width = query[-1] if self.keras_version >= (3, 0, 0) else value[-1]
            self.scale = self.add_weight("scale", (width,), initializers.get("glorot_uniform"))

    def _calculate_scores(self, query: np.ndarray, key: np.ndarray) -> np.ndarray:
        tanh = np.tanh(np.expand_dims(query, -2) + np.expand_dims(key, -3))
        if self.scale is not None:
            tanh = self.scale.value * tanh
        return np.sum(tanh, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "use_scale": self.use_scale}
