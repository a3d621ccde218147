"""MultiHeadAttention: projected, scaled dot-product attention with several heads."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, ShapeError, received
from layerserve.layers.attention import attention_shapes as shapes
from layerserve.layers.attention import mha_math
from layerserve.layers.attention.call_arguments import CallArgumentsLayer, check_flag
from layerserve.layers.base import Variable
from layerserve.layers.tensor import NOT_GIVEN, KerasTensor
from layerserve.layers.weight_options import (
    positive_int,
    set_weight_options,
    weight_options_config,
)
from layerserve.serialization import serialize

_WEIGHTS = ("kernel", "bias")
# The projections in weight order (Keras creates the gate after the key, before the value).
PROJECTIONS = ("query", "key", "gate", "value", "attention_output")


def _axes(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),)
    if isinstance(value, (list, tuple)) and all(
        isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in value
    ):
        return tuple(int(a) for a in value)
    raise ConfigError(
        "`attention_axes` must be an int, list, or tuple. " + received("attention_axes", value)
    )


def _output_shape(value: Any) -> tuple[int, ...] | None:
    if value is None or value == [] or value == ():
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    try:
        dims = tuple(positive_int(d, "output_shape") for d in value)
    except TypeError as exc:
        raise ConfigError(
            "When specified, the `output_shape` should be of type tuple, list, or int. "
            + received("output_shape", value)
        ) from exc
    return dims


class MultiHeadAttention(CallArgumentsLayer):
    """Multi-head attention as Keras computes it (Keras 3 and tf.keras).

    Args:
        num_heads, key_dim: heads and the size of each query/key head.
        value_dim: the size of each value head (default ``key_dim``).
        dropout: the rate on the attention weights in training; identity at inference,
            but in Keras 3 it selects the einsum code path (see fully masked rows).
        use_bias: whether the projections have biases.
        output_shape: the output's trailing dims (default: the query's last dim).
        attention_axes: the query axes attention runs over (default: all between batch
            and features); several axes get one joint softmax.
        kernel_*/bias_* initializers, regularizers, constraints: as Dense.
        use_gate (Keras 3): a sigmoid gate ``sigmoid(query·W_g + b_g)`` on each head.
        sliding_window (Keras 3): keys within ``|i - j| < sliding_window`` only.
        flash_attention, seed (Keras 3): a fused kernel (the same formula) and the
            dropout seed.
        softmax_robust_masking (tf.keras): masked scores replaced by -1e9, not shifted.
        query_shape, key_shape, value_shape (tf.keras config): the shapes it was built for.

    Call arguments:
        query ``(B, [T...], dim)``, value ``(B, [S...], dim_v)``, key (default value);
        ``attention_mask`` ``(B, T, S)`` (nonzero: attend); ``use_causal_mask``;
        ``return_attention_scores``. The masks the inputs carry (Embedding, Masking) mask
        query rows and value/key columns.

    Fully masked query rows: uniform weights in tf.keras, in Keras 3 before 3.10 and on
    Keras 3's fused path (3-D inputs, no dropout, no scores returned); zero weights
    (output = output bias) on Keras >= 3.10's einsum path.

    Input shape:
        Query, value and key of one rank >= 3 (3 when masked); value and key alike but
        for their last axis.

    Output shape:
        The query's shape with the last axis replaced by ``output_shape``; with
        ``return_attention_scores`` also the weights ``(B, heads, T..., S...)``. Output
        mask: the query's mask; the weights carry the combined mask ``(B|1, 1, T, S)``
        their masked softmax got, as in Keras.
    """

    supports_masking = True
    casts_inputs = True
    # Keras 3 records a call's first argument in its kwargs when it was given by keyword
    # (`mha(query=x, value=y)`, as keras.io writes it).
    first_call_argument = "query"
    # Keras 3's call removes the masks of query, value and key for the layers that run
    # after it (see layerserve.models.mask_removal); tf.keras keeps them.
    removes_input_masks = True
    # Keras 3 records `key` and `attention_mask` in a call's kwargs, tf.keras also `value`.
    call_arguments = (
        "value",
        "key",
        "attention_mask",
        "return_attention_scores",
        "use_causal_mask",
    )
    # Keras 3 names the sub-objects `query_dense`, ..., `_gate_dense`; tf_keras's
    # `.keras` files `_query_dense`, ...: read in weight order, not sorted.
    keras3_weight_entries = tuple(
        prefix + name
        for name in ("query_dense", "key_dense", "gate_dense", "value_dense", "output_dense")
        for prefix in ("", "_")
    )

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_shape: Any = None,
        attention_axes: Any = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        use_gate: bool = False,
        sliding_window: int | None = None,
        flash_attention: bool | None = None,
        seed: int | None = None,
        softmax_robust_masking: bool = False,
        query_shape: Any = None,
        key_shape: Any = None,
        value_shape: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.num_heads = positive_int(num_heads, "num_heads")
        self.key_dim = positive_int(key_dim, "key_dim")
        self.value_dim = positive_int(value_dim, "value_dim") if value_dim else self.key_dim
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout <= 1
        ):
            raise ConfigError(
                "Expected `dropout` to be a float between 0 and 1. " + received("dropout", dropout)
            )
        self.dropout = float(dropout)
        self.use_bias = check_flag(use_bias, "use_bias")
        self.output_shape_arg = _output_shape(output_shape)
        self.attention_axes = _axes(attention_axes)
        self.use_gate = check_flag(use_gate, "use_gate")
        if sliding_window is not None:
            sliding_window = positive_int(sliding_window, "sliding_window")
        self.sliding_window = sliding_window
        self.flash_attention = flash_attention
        if flash_attention and self.dropout > 0:
            raise ConfigError(
                "Dropout is not supported when flash attention is enabled. Please set "
                "dropout to 0.0 to use flash attention. " + received("dropout", dropout)
            )
        self.seed = seed
        self.softmax_robust_masking = check_flag(softmax_robust_masking, "softmax_robust_masking")
        self.built_shapes = {"query": query_shape, "key": key_shape, "value": value_shape}
        if self.attention_axes and self.keras_version < (3, 0, 0) and min(self.attention_axes) < 0:
            raise NotSupportedError(
                f"Layer {self.name} (MultiHeadAttention): tf.keras uses negative "
                "`attention_axes` unresolved in its einsum equations; layerserve does not "
                "reproduce that. " + received("attention_axes", attention_axes)
            )
        set_weight_options(
            self,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
        )
        self.kernels: dict[str, Variable] = {}
        self.biases: dict[str, Variable] = {}
        self.resolved_axes: tuple[int, ...] = ()

    # ---- calling ------------------------------------------------------------------------
    def __call__(
        self,
        query: Any,
        value: Any = None,
        key: Any = None,
        query_mask: Any = None,
        value_mask: Any = None,
        key_mask: Any = None,
        attention_mask: Any = None,
        return_attention_scores: bool = False,
        training: bool | None = None,
        use_causal_mask: bool = False,
        mask: Any = NOT_GIVEN,
    ) -> Any:
        """``mha(query, value, key=None, ...)`` as Keras, or ``mha([query, value, key])``.
        On arrays the masks are ``query_mask``/``value_mask``/``key_mask``; on tensors,
        the masks the tensors carry."""
        if value is None and isinstance(query, (list, tuple)) and 2 <= len(query) <= 3:
            listed = list(query)
            query, value = listed[0], listed[1]
            key = listed[2] if len(listed) > 2 else key
        inputs = [query, value] + ([] if key is None else [key])
        masks = [query_mask, value_mask, key_mask]
        symbolic = any(isinstance(t, KerasTensor) for t in (*inputs, attention_mask))
        if symbolic and any(m is not None for m in masks):
            raise NotSupportedError(
                f"Layer {self.name} (MultiHeadAttention): explicit query_mask/value_mask/"
                "key_mask tensors are not supported in a model graph; layerserve reads the "
                "masks the query, value and key tensors carry, as Keras does."
            )
        if symbolic and mask not in (NOT_GIVEN, None):
            raise NotSupportedError(
                f"Layer {self.name} (MultiHeadAttention) takes no `mask` argument. "
                + received("mask", mask)
            )
        if not symbolic:
            mask = masks[: len(inputs)] if any(m is not None for m in masks) else None
        options = {
            "return_attention_scores": check_flag(
                return_attention_scores, "return_attention_scores"
            ),
            "use_causal_mask": check_flag(use_causal_mask, "use_causal_mask"),
            "attention_mask": attention_mask,
        }
        return self._call_with(inputs, training, mask, options)

    # ---- weights ------------------------------------------------------------------------
    def _add_projection(self, name: str, kernel_shape: tuple, bias_shape: tuple) -> None:
        self.kernels[name] = self.add_weight(
            f"{name}/kernel",
            kernel_shape,
            self.kernel_initializer,
            self.kernel_regularizer,
            self.kernel_constraint,
        )
        if self.use_bias:
            self.biases[name] = self.add_weight(
                f"{name}/bias",
                bias_shape,
                self.bias_initializer,
                self.bias_regularizer,
                self.bias_constraint,
            )

    def build(self, input_shape: Any) -> None:
        query, value, key = shapes.mha_shapes(input_shape)
        self._check_built_shapes(query, value, key)
        heads = self.num_heads
        negative_base = len(query)
        self.resolved_axes = shapes.resolve_attention_axes(
            self.attention_axes, len(query), negative_base
        )
        shapes.check_attention_axes(self.resolved_axes, len(query), self.name)
        for name, shape, size in (("query", query, self.key_dim), ("key", key, self.key_dim)):
            self._add_projection(name, (shape[-1], heads, size), (heads, size))
        if self.use_gate:
            self._add_projection(
                "gate", (query[-1], heads, self.value_dim), (heads, self.value_dim)
            )
        self._add_projection("value", (value[-1], heads, self.value_dim), (heads, self.value_dim))
        out = self.output_shape_arg or (query[-1],)
        self._add_projection("attention_output", (heads, self.value_dim, *out), tuple(out))
        self.built = True

    def _check_built_shapes(self, query: tuple, value: tuple, key: tuple) -> None:
        for name, got in (("query", query), ("value", value), ("key", key)):
            saved = self.built_shapes[name]
            if saved is None:
                continue
            saved = tuple(saved)
            if len(saved) != len(got) or any(
                s is not None and g is not None and s != g for s, g in zip(saved, got, strict=True)
            ):
                raise ShapeError(
                    f"Layer {self.name} (MultiHeadAttention) was saved for {name} shape "
                    f"{saved}. Received: {name}_shape={got}"
                )

    # ---- shapes -------------------------------------------------------------------------
    def compute_output_shape(
        self, input_shape: Any, return_attention_scores: bool = False, **options: Any
    ) -> Any:
        query, _, _ = shapes.mha_shapes(input_shape)
        axes = self.resolved_axes or shapes.resolve_attention_axes(
            self.attention_axes, len(query), len(query)
        )
        output, scores = shapes.mha_output_shapes(
            input_shape, self.num_heads, self.output_shape_arg, axes
        )
        return [output, scores] if return_attention_scores else output

    def compute_mask(self, inputs: Any, mask: Any = None, **options: Any) -> Any:
        """The query's mask; returned scores carry the mask their masked softmax got
        (Keras's Softmax layer sets it): the combined mask, expanded to the scores' rank."""
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
        masks += [None] * (3 - len(masks))
        if not options.get("return_attention_scores"):
            return masks[0]
        key_mask = masks[2] if len(inputs) > 2 else None
        causal = bool(options.get("use_causal_mask"))
        explicit = options.get("attention_mask")
        scores_rank = len(inputs[0].shape) + 1
        axes = len(self.resolved_axes)
        if isinstance(inputs[0], KerasTensor):
            shape = shapes.combined_mask_shape(
                [
                    m.shape if isinstance(m, KerasTensor) else None
                    for m in (masks[0], masks[1], key_mask)
                ],
                inputs[0].shape[1],
                inputs[1].shape[1],
                causal or self.sliding_window is not None,
                None if explicit is None else explicit.shape,
            )
            if shape is None:
                return [masks[0], None]
            while len(shape) < scores_rank:
                shape = (*shape[: len(shape) - 2 * axes], 1, *shape[len(shape) - 2 * axes :])
            return [masks[0], KerasTensor(shape, "bool")]
        combined = mha_math.assemble_mask(
            inputs[0],
            inputs[1],
            masks[0],
            masks[1],
            key_mask,
            causal,
            self.sliding_window,
            explicit,
        )
        if combined is None:
            return [masks[0], None]
        return [masks[0], mha_math.expand_mask(combined, scores_rank, axes)]

    # ---- math ---------------------------------------------------------------------------
    def softmax_rule(self, query_rank: int, return_attention_scores: bool) -> str:
        """How masked scores are treated (``mha_math``), as the Keras version and code
        path that wrote the model do."""
        if self.keras_version < (3, 0, 0):
            return mha_math.WHERE if self.softmax_robust_masking else mha_math.TFK_ADD
        fused = self.dropout == 0 and not return_attention_scores and query_rank == 3
        if fused and self.keras_version >= (3, 7, 0):
            return mha_math.FUSED
        return mha_math.WHERE_ZEROED if self.keras_version >= (3, 10, 0) else mha_math.TFK_ADD

    def projection_equation(self, name: str, rank: int) -> str:
        if name == "attention_output":
            out = self.output_shape_arg or (None,)
            return shapes.projection_equation(rank - 1, 2, len(out))[0]
        return shapes.projection_equation(rank - 1, 1, 2)[0]

    def _project(self, name: str, x: np.ndarray, rank: int) -> np.ndarray:
        bias = self.biases[name].value if name in self.biases else None
        return mha_math.project(
            x, self.projection_equation(name, rank), self.kernels[name].value, bias
        )

    def call(
        self,
        inputs: Any,
        training: bool = False,
        mask: Any = None,
        return_attention_scores: bool = False,
        use_causal_mask: bool = False,
        attention_mask: Any = None,
    ) -> Any:
        if training and self.dropout > 0:
            raise NotSupportedError(
                f"Layer {self.name} (MultiHeadAttention): dropout on the attention weights "
                "in training mode is random; layerserve runs inference only. "
                + received("training", training)
            )
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) > 2 else value
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
        masks += [None] * (3 - len(masks))
        key_mask = masks[2] if len(inputs) > 2 else None
        rank = query.ndim
        given = [
            label
            for label, present in (
                ("the query's mask", masks[0] is not None),
                ("the value's mask", masks[1] is not None),
                ("the key's mask", key_mask is not None),
                ("attention_mask", attention_mask is not None),
                ("use_causal_mask=True", bool(use_causal_mask)),
                (f"sliding_window={self.sliding_window}", self.sliding_window is not None),
            )
            if present
        ]
        if rank > 3 and given:
            # Keras builds such masks as for 3-D inputs, over axis 1 alone, which do not
            # line up with the scores over attention_axes (its Softmax then refuses them,
            # or attends the wrong positions).
            raise NotSupportedError(
                f"Layer {self.name} (MultiHeadAttention): a query of rank {rank} is attended "
                "without masks only; Keras builds a mask (here "
                f"{', '.join(given)}) as for a rank-3 query, which does not line up with "
                "the scores of a higher rank. " + received("query_shape", tuple(query.shape))
            )
        if np.shape(key)[:-1] != np.shape(value)[:-1]:
            raise ShapeError(
                f"Layer {self.name} (MultiHeadAttention) expects a key and a value of the "
                "same shape but for their last axis (each key position is a value's). "
                f"Received: key shape={tuple(np.shape(key))}, "
                f"value shape={tuple(np.shape(value))}"
            )
        combined = mha_math.assemble_mask(
            query,
            value,
            masks[0],
            masks[1],
            key_mask,
            use_causal_mask,
            self.sliding_window,
            attention_mask,
        )
        gate = None
        if self.use_gate:
            gate = mha_math.sigmoid(self._project("gate", query, rank))
        q = self._project("query", query, rank)
        k = self._project("key", key, rank)
        v = self._project("value", value, rank)
        dot_equation, combine_equation, scores_rank = shapes.attention_equations(
            rank + 1, self.resolved_axes
        )
        q = q * q.dtype.type(1.0 / math.sqrt(float(self.key_dim)))
        scores = np.einsum(dot_equation, k, q)
        if combined is not None:
            combined = mha_math.expand_mask(combined, scores_rank, len(self.resolved_axes))
        norm_axes = tuple(range(scores_rank - len(self.resolved_axes), scores_rank))
        rule = self.softmax_rule(rank, return_attention_scores)
        weights = mha_math.masked_softmax(scores, combined, norm_axes, rule)
        context = np.einsum(combine_equation, weights, v)
        if gate is not None:
            context = context * gate
        output = self._project("attention_output", context, rank)
        return [output, weights] if return_attention_scores else output

    # ---- config -------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        axes = self.resolved_axes or self.attention_axes
        config = {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "output_shape": None if self.output_shape_arg is None else list(self.output_shape_arg),
            "attention_axes": None if axes is None else list(axes),
            **weight_options_config(self, _WEIGHTS, "initializer"),
            **weight_options_config(self, _WEIGHTS, "regularizer"),
            "activity_regularizer": serialize(self.activity_regularizer),
            **weight_options_config(self, _WEIGHTS, "constraint"),
        }
        if self.keras_version >= (3, 0, 0):
            config.update(
                use_gate=self.use_gate, sliding_window=self.sliding_window, seed=self.seed
            )
            if self.flash_attention is not None:
                config["flash_attention"] = self.flash_attention
        else:
            config["softmax_robust_masking"] = self.softmax_robust_masking
        return config

    def _owns_activity_regularizer(self) -> bool:
        return True
