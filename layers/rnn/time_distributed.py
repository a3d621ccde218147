"""TimeDistributed: one layer applied to every timestep of a sequence."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import MaskingNotSupportedError, NotSupportedError, ShapeError
from layerserve.layers.base import Layer, Variable
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.rnn.nested import build_nested, keras3_entries_under, nested_config
from layerserve.layers.tensor import KerasTensor

# Layers whose result for one sample may depend on the other samples of the batch: a
# Lambda runs arbitrary code. Keras calls the inner layer once per timestep on a batch
# of N samples, layerserve once on N*T samples; only row-independent layers agree.
_BATCH_DEPENDENT = ("Lambda",)


def distributed_shape(input_shape: tuple, inner_output_shape: tuple) -> tuple:
    """``(N, T, *inner_output[1:])``: the shape rule of the NumPy and ONNX paths."""
    return (input_shape[0], input_shape[1], *tuple(inner_output_shape)[1:])


def step_shape(input_shape: tuple) -> tuple:
    """The shape the inner layer sees: one timestep of the batch, ``(N, *input[2:])``."""
    return (input_shape[0], *tuple(input_shape)[2:])


def undistributable_reason(layer: Layer) -> str | None:
    """Why ``layer`` cannot be applied to N*T samples at once with Keras's result, or
    None. Nested models are checked layer by layer."""
    sublayers = getattr(layer, "layers", None)
    if sublayers is not None:
        for sublayer in sublayers:
            reason = undistributable_reason(sublayer)
            if reason is not None:
                return reason
        return None
    if type(layer).__name__ in _BATCH_DEPENDENT:
        return f"{type(layer).__name__} {layer.name!r} runs arbitrary code, which may mix samples"
    return None


def is_model(layer: Layer) -> bool:
    return getattr(layer, "layers", None) is not None


def consumes_mask(layer: Layer) -> bool:
    """Whether ``layer`` uses a mask it is given (and then returns none: layers that
    compute their own masks are refused), rather than passing it on."""
    return not is_model(layer) and type(layer).compute_mask is not Layer.compute_mask


def any_mask_keeps_rank(keras_version: tuple[int, int, int], layer: Layer) -> bool:
    """The output mask rule: Keras 3 returns the input mask as it is; tf.keras reduces
    it to ``(N, T)`` with ``any`` over the other axes when the inner layer consumed it
    (Keras 2 ``TimeDistributed.compute_mask``)."""
    return keras_version >= (3, 0, 0) or not consumes_mask(layer)


class TimeDistributed(Layer):
    """Applies ``layer`` to every timestep ``x[:, t]`` independently.

    Args:
        layer: a layer (or its ``{"class_name", "config"}``) that treats samples
            independently: Dense, convolutions, pooling, Flatten, normalization at
            inference, nested models of such layers. Lambda layers (which may mix
            samples) and layers computing masks of their own are refused.

    A layer that takes a mask gets each step's slice of it. The output mask is the
    input mask; tf.keras reduces it to ``(batch, timesteps)`` (any step kept) when the
    inner layer consumed it.

    Input shape:
        ``(batch, timesteps, ...)``: at least rank 3.

    Output shape:
        ``(batch, timesteps, *inner_output_shape[1:])``.
    """

    supports_masking = True

    def __init__(self, layer: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layer = build_nested(layer, "layer", f"TimeDistributed {self.name}")
        reason = undistributable_reason(self.layer)
        if reason is not None:
            raise NotSupportedError(
                f"TimeDistributed {self.name} cannot distribute its layer exactly: "
                f"{reason}. Expected a layer that treats samples independently. "
                f"Received: layer={type(self.layer).__name__}"
            )
        self.input_spec = InputSpec(min_ndim=3)

    @property
    def keras3_weight_entries(self) -> tuple[str, ...]:  # type: ignore[override]
        """The inner layer's ordered entries (a Bidirectional's halves), under ``layer``."""
        inner = self.layer.keras3_weight_entries
        return keras3_entries_under("layer", self.layer) if inner else ()

    @property
    def trainable_weights(self) -> list[Variable]:
        return self.layer.trainable_weights if self.trainable else []

    @property
    def non_trainable_weights(self) -> list[Variable]:
        return self.layer.non_trainable_weights if self.trainable else self.layer.weights

    def _all_variables(self) -> list[Variable]:
        return self.layer.weights

    def output_dtype(self, input_dtype: str) -> str:
        """The inner layer's (an Embedding's floats from indices)."""
        return self.layer.output_dtype(input_dtype)

    @property
    def losses(self) -> list[float]:
        """Weight penalties (the inner layer's weights are this layer's), then the
        activity penalties of the inner layer's last call and of this layer's."""
        return super().losses + self.layer._activity_losses

    def build(self, input_shape: Any) -> None:
        shape = step_shape(_single(self.name, input_shape))
        self.layer._maybe_build(shape)
        # A layer computing a mask of its own from its values (Masking, Embedding with
        # mask_zero): Keras 3 drops it, tf.keras returns it; neither is reproduced.
        self._refuse_own_mask(shape, None)

    def _refuse_own_mask(self, shape: tuple, mask: Any) -> None:
        """Refuse an inner layer that returns a mask per step (given ``mask``, a step's
        mask or None): Keras 3 and tf.keras treat that mask differently. An RNN returning
        sequences passes a mask on only when it is given one, so it is refused only then."""
        if not consumes_mask(self.layer):
            return
        probe = self.layer.compute_mask(KerasTensor(shape), mask)
        if probe is not None:
            raise NotSupportedError(
                f"TimeDistributed {self.name} cannot distribute "
                f"{type(self.layer).__name__} {self.layer.name!r} here: it returns a mask of "
                "its own, which Keras 3 and tf.keras treat differently. Expected a layer "
                "that returns no mask or passes its input mask on"
                + ("." if mask is None else ", or no input mask.")
            )

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        x = inputs
        batch, steps = x.shape[0], x.shape[1]
        flat = x.reshape((batch * steps, *x.shape[2:]))
        step_mask = None
        if mask is not None and self.layer.supports_masking:
            # Keras hands each step's slice of the mask to a layer whose call takes one.
            mask = np.asarray(mask, dtype=bool)
            step_mask = mask.reshape((batch * steps, *mask.shape[2:]))
        outputs, _ = self.layer.run(flat, training=training, mask=step_mask)
        return outputs.reshape((batch, steps, *outputs.shape[1:]))

    def compute_output_shape(self, input_shape: Any) -> Any:
        shape = _single(self.name, input_shape)
        inner = self.layer.compute_output_shape(step_shape(shape))
        if isinstance(inner, list):
            raise ShapeError(
                f"TimeDistributed {self.name} expects its layer to return one tensor. "
                f"Received: {len(inner)} outputs"
            )
        return distributed_shape(shape, inner)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if mask is None:
            return None
        step_mask = KerasTensor((None, *tuple(mask.shape[2:])), "bool")
        self._refuse_own_mask(step_shape(tuple(inputs.shape)), step_mask)
        if is_model(self.layer):
            raise NotSupportedError(
                f"TimeDistributed {self.name} does not pass masks into the nested model "
                f"{self.layer.name!r}. Expected no input mask. Received: a mask of shape "
                f"{tuple(mask.shape)}"
            )
        if self.keras_version < (3, 0, 0) and not self.layer.supports_masking:
            raise MaskingNotSupportedError(
                f"TimeDistributed {self.name}: layer {self.layer.name!r} "
                f"({type(self.layer).__name__}) does not support masking, but was passed "
                "an input mask, which Keras 2 refuses."
            )
        if any_mask_keeps_rank(self.keras_version, self.layer) or len(mask.shape) == 2:
            return mask
        if isinstance(mask, KerasTensor):
            return KerasTensor(mask.shape[:2], "bool")
        mask = np.asarray(mask, dtype=bool)
        return mask.any(axis=tuple(range(2, mask.ndim)))

    def _sublayers(self) -> list[Layer]:
        return [self.layer]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "layer": nested_config(self.layer)}


def _single(name: str, input_shape: Any) -> tuple:
    if isinstance(input_shape, list):
        raise ShapeError(
            f"TimeDistributed {name} expects one input tensor. Received: {len(input_shape)} inputs"
        )
    return tuple(input_shape)


__all__ = ["TimeDistributed", "distributed_shape", "step_shape"]
