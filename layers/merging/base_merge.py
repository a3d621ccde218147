"""Merge: the base of the layers that merge a list of inputs element-wise."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ShapeError
from layerserve.layers.base import Layer
from layerserve.layers.merging import merging_masks
from layerserve.layers.merging import merging_shapes as ms
from layerserve.layers.tensor import NOT_GIVEN


def expand_to_rank(x: np.ndarray, rank: int) -> np.ndarray:
    """Keras inserts size-1 axes at axis 1 (after the batch axis) until ``rank``."""
    return np.reshape(x, ms.expanded_shape(tuple(x.shape), rank))


class Merge(Layer):
    """Merges a list of inputs element-wise (the base of Add ... Minimum).

    Inputs of lower rank get size-1 axes inserted after the batch axis, then broadcast.
    The output mask follows the Keras version that wrote the model (``mask_rule``).
    """

    supports_masking = True
    # Subtract and Dot take exactly two inputs.
    exact_inputs: int | None = None

    @property
    def mask_rule(self) -> str:
        return ms.mask_rule(self.keras_version)

    @property
    def min_inputs(self) -> int:
        return ms.min_inputs(self.keras_version)

    def _what(self) -> str:
        return "A merge layer" if self.exact_inputs is None else f"A `{type(self).__name__}` layer"

    def _input_shapes(self, input_shape: Any) -> list[ms.Shape]:
        shapes = ms.input_shapes(input_shape, self._what())
        ms.check_count(shapes, self.min_inputs, self.exact_inputs, self._what())
        return shapes

    def run(
        self,
        inputs: Any,
        training: bool = False,
        mask: Any = None,
        previous_mask: Any = NOT_GIVEN,
    ) -> tuple[Any, Any]:
        # A Keras merge's call takes no `mask`: it reads the masks its input tensors
        # carry, which are also those its output mask derives from.
        carried = mask if previous_mask is NOT_GIVEN else previous_mask
        return super().run(inputs, training=training, mask=carried, previous_mask=carried)

    def build(self, input_shape: Any) -> None:
        self.compute_output_shape(input_shape)  # Keras builds only to check the shapes
        self.built = True

    def compute_output_shape(self, input_shape: Any) -> ms.Shape:
        return ms.elementwise_output_shape(self._input_shapes(input_shape))

    def call_dtype(self, input_dtype: Any) -> np.dtype:
        """Keras casts a merge's floating inputs to its dtype, in every version (other
        layers from tf.keras 2.4 on), and leaves integers alone."""
        given = np.dtype(input_dtype)
        return np.dtype(self.dtype) if given.kind == "f" else given

    def _arrays(self, inputs: Any) -> list[np.ndarray]:
        if not isinstance(inputs, (list, tuple)):
            raise ShapeError(
                f"{self._what()} should be called on a list of inputs. "
                f"Received: inputs with shape {np.shape(inputs)} (not a list of tensors)"
            )
        arrays = [np.asarray(x) for x in inputs]
        if any(a.dtype.kind == "f" for a in arrays):
            arrays = [a.astype(self.dtype, copy=False) for a in arrays]
        self.compute_output_shape([tuple(a.shape) for a in arrays])
        return arrays

    def value_masks(self, ranks: list[int], mask: Any) -> list[Any]:
        """The masks Keras >= 3.4 uses in the values (Maximum, Minimum, Multiply). An
        input that gets axes inserted is a new tensor in Keras, without its mask."""
        if mask is None or self.mask_rule != ms.MASK_OR:
            return [None] * len(ranks)
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask] * len(ranks)
        top = max(ranks)
        return [m if rank == top else None for m, rank in zip(masks, ranks, strict=True)]

    def call(self, inputs: Any, training: bool = False, mask: Any = None) -> np.ndarray:
        arrays = self._arrays(inputs)
        ranks = [a.ndim for a in arrays]
        masks = self.value_masks(ranks, mask)
        expanded = [expand_to_rank(a, max(ranks)) for a in arrays]
        return self._merge_function(expanded, masks)

    def _merge_function(self, inputs: list[np.ndarray], masks: list[Any]) -> np.ndarray:
        raise NotImplementedError

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if mask is None:
            return None
        return merging_masks.combine_masks(merging_masks.mask_list(inputs, mask), self.mask_rule)


def broadcast_mask(mask: Any, x: np.ndarray) -> np.ndarray:
    """A mask over ``x``'s leading axes, broadcast over its last axis (Keras's
    ``broadcast_to(expand_dims(mask, -1), shape(x))``)."""
    return np.broadcast_to(np.asarray(mask, dtype=bool)[..., np.newaxis], x.shape)


def masked_pairwise(op: Any, inputs: list[np.ndarray], masks: list[Any]) -> np.ndarray:
    """Keras >= 3.4's Maximum/Minimum: before each step, a masked position of either
    operand takes the other operand's value; the running mask is the OR of the masks
    seen so far, and is lost once an input has no mask. Without masks: ``op`` pairwise."""
    output, output_mask = inputs[0], None
    if masks[0] is not None:
        output_mask = broadcast_mask(masks[0], inputs[0])
    for x, mask in zip(inputs[1:], masks[1:], strict=True):
        if mask is not None:
            mask = broadcast_mask(mask, x)
            x = np.where(mask, x, output)
        if output_mask is not None:
            output = np.where(output_mask, output, x)
        output_mask = None if mask is None or output_mask is None else output_mask | mask
        output = op(output, x)
    return output
