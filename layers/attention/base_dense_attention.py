"""The dot-product family's shared call: scores, masks, softmax, weighted sum.

Keras (3 and tf.keras) subtracts 1e9 (65504 in float16) from masked scores, and zeroes
the output rows of masked query steps: ``where`` in Keras 3, a multiplication in
tf.keras (these differ only on non-finite values, kept as each version computes them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, ShapeError, received
from layerserve.layers.attention import attention_shapes as shapes
from layerserve.layers.attention.call_arguments import CallArgumentsLayer, check_flag
from layerserve.layers.tensor import NOT_GIVEN


def softmax_last_axis(x: np.ndarray) -> np.ndarray:
    """``exp(x - max) / sum`` over the last axis (empty arrays stay empty)."""
    if x.size == 0:
        return np.zeros_like(x)
    exps = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return exps / np.sum(exps, axis=-1, keepdims=True)


def mask_penalty(dtype: Any) -> float:
    """What Keras subtracts from masked scores: 65504 in float16, else 1e9."""
    return 65504.0 if np.dtype(dtype) == np.float16 else 1.0e9


def score_mask(scores_shape: tuple[int, ...], value_mask: Any, causal: bool) -> np.ndarray | None:
    """``value_mask`` as ``(..., 1, Tv)`` AND the causal lower triangle, or None."""
    mask = None
    if value_mask is not None:
        mask = np.expand_dims(np.asarray(value_mask, dtype=bool), -2)
    if causal:
        triangle = shapes.causal_mask(scores_shape[-2], scores_shape[-1])
        mask = triangle if mask is None else mask & triangle
    return mask


def apply_scores(
    scores: np.ndarray, value: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(softmax(scores - penalty·¬mask) · value, weights)``."""
    if mask is not None:
        penalty = np.asarray(mask_penalty(scores.dtype), dtype=scores.dtype)
        scores = np.where(mask, scores, scores - penalty)
    weights = softmax_last_axis(scores).astype(scores.dtype, copy=False)
    return np.matmul(weights, value), weights


def zero_masked_queries(output: np.ndarray, query_mask: Any, multiply: bool) -> np.ndarray:
    keep = np.expand_dims(np.asarray(query_mask, dtype=bool), -1)
    if multiply:  # tf.keras: output * cast(mask)
        return output * keep.astype(output.dtype)
    return np.where(keep, output, np.zeros((), dtype=output.dtype))


class BaseDenseAttention(CallArgumentsLayer):
    """The shared call of Attention and AdditiveAttention (see the module docstring)."""

    supports_masking = True
    casts_inputs = True
    call_arguments = ("return_attention_scores", "use_causal_mask")

    def __init__(
        self, dropout: float = 0.0, seed: Any = None, causal: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout <= 1
        ):
            raise ConfigError(
                "Expected `dropout` to be a float between 0 and 1. " + received("dropout", dropout)
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError("Expected `seed` to be an integer or None. " + received("seed", seed))
        self.dropout = float(dropout)
        self.seed = seed
        # tf.keras <= 2.9 saved the constructor argument `causal`; later versions and
        # Keras 3 only know the call argument `use_causal_mask`.
        self.causal = check_flag(causal, "causal")

    def __call__(
        self,
        inputs: Any,
        mask: Any = NOT_GIVEN,
        training: bool | None = None,
        return_attention_scores: bool = False,
        use_causal_mask: bool = False,
    ) -> Any:
        options = {
            "return_attention_scores": check_flag(
                return_attention_scores, "return_attention_scores"
            ),
            "use_causal_mask": check_flag(use_causal_mask, "use_causal_mask"),
        }
        return self._call_with(inputs, training, mask, options)

    def _what(self) -> str:
        return type(self).__name__

    def build(self, input_shape: Any) -> None:
        shapes.dense_attention_shapes(input_shape, self._what())
        self.built = True

    def compute_output_shape(
        self, input_shape: Any, return_attention_scores: bool = False, **options: Any
    ) -> Any:
        output, scores = shapes.dense_attention_output_shapes(input_shape, self._what())
        return [output, scores] if return_attention_scores else output

    def _calculate_scores(self, query: np.ndarray, key: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _split_masks(self, mask: Any) -> tuple[Any, Any]:
        if mask is None:
            return None, None
        if not isinstance(mask, (list, tuple)) or not 2 <= len(mask) <= 3:
            raise ShapeError(
                f"{self._what()} layer mask must be a list, namely [query_mask, value_mask]. "
                f"Received: mask={mask!r}"[:300]
            )
        return mask[0], mask[1]

    def call(
        self,
        inputs: Any,
        training: bool = False,
        mask: Any = None,
        return_attention_scores: bool = False,
        use_causal_mask: bool = False,
    ) -> Any:
        if training and self.dropout > 0:
            raise NotSupportedError(
                f"Layer {self.name} ({self._what()}): dropout on the attention weights in "
                "training mode is random; layerserve runs inference only. "
                + received("training", training)
            )
        query_shape, _, _ = shapes.dense_attention_shapes(
            [np.shape(x) for x in inputs], self._what()
        )
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) > 2 else value
        query_mask, value_mask = self._split_masks(mask)
        scores = self._calculate_scores(query, key)
        masks = score_mask(scores.shape, value_mask, self.causal or use_causal_mask)
        output, weights = apply_scores(scores, value, masks)
        if query_mask is not None:
            output = zero_masked_queries(output, query_mask, self.keras_version < (3, 0, 0))
        return [output, weights] if return_attention_scores else output

    def compute_mask(self, inputs: Any, mask: Any = None, **options: Any) -> Any:
        query_mask = self._split_masks(mask)[0]
        if options.get("return_attention_scores"):
            # Keras pairs the one mask it computes with the first output only.
            return [query_mask, None]
        return query_mask

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {**super().get_config(), "dropout": self.dropout}
        if self.keras_version >= (3, 0, 0):
            config["seed"] = self.seed
        elif self.causal:
            config["causal"] = True
        return config
