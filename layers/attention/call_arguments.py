"""Calls that take arguments besides ``inputs``, ``training`` and ``mask``.

The attention layers take ``return_attention_scores`` and ``use_causal_mask``, and
MultiHeadAttention also tensors (``key``, ``attention_mask``). A symbolic call records
them in its node's ``call_kwargs`` (tensors as KerasTensors, which also join the node's
``inputs`` after those of its input structure, so the graph orders and feeds them);
``layerserve.models.graph`` hands them back to :meth:`run` as keyword arguments, the
model config writes them as Keras does, and the ONNX converters read them from the node.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received
from layerserve.layers.base import Layer
from layerserve.layers.input_spec import check_input_specs
from layerserve.layers.tensor import NOT_GIVEN, KerasTensor, Node, flatten, pack_like


def check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(
            f"Expected the call argument `{name}` to be a boolean. " + received(name, value)
        )
    return bool(value)


class CallArgumentsLayer(Layer):
    """A layer whose calls take the keyword arguments named in ``call_arguments``."""

    call_arguments: tuple[str, ...] = ()

    def _call_with(self, inputs: Any, training: Any, mask: Any, options: dict[str, Any]) -> Any:
        """Eager on arrays, a recorded node on KerasTensors; ``options`` are the call
        arguments, those at their defaults (None, False) left out."""
        options = {k: v for k, v in options.items() if v is not None and v is not False}
        tensors = flatten(inputs) + [v for v in options.values() if isinstance(v, KerasTensor)]
        if any(isinstance(t, KerasTensor) for t in tensors):
            return self._call_symbolic_with(inputs, training, mask, options)
        outputs, _ = self.run(
            inputs,
            training=bool(training),
            mask=None if mask is NOT_GIVEN else mask,
            **options,
        )
        return outputs

    def _call_symbolic_with(
        self, inputs: Any, training: Any, mask: Any, options: dict[str, Any]
    ) -> Any:
        tensors = flatten(inputs)
        extra = [v for v in options.values() if isinstance(v, KerasTensor)]
        if not all(isinstance(t, KerasTensor) for t in tensors + extra) or any(
            isinstance(v, np.ndarray) for v in options.values()
        ):
            raise ConfigError(
                f"Layer {self.name} was called on a mix of symbolic tensors and arrays."
            )
        shapes = pack_like(inputs, [t.shape for t in tensors])
        self._maybe_build(shapes)
        check_input_specs(self.name, self._specs_for(len(tensors)), [t.shape for t in tensors])
        propagated = pack_like(inputs, [t.mask for t in tensors])
        if all(m is None for m in flatten(propagated)):
            propagated = None
        if mask is not NOT_GIVEN and any(
            m is not None and not isinstance(m, KerasTensor) for m in flatten(mask)
        ):
            raise ConfigError(
                f"Layer {self.name} was called on symbolic inputs with a concrete `mask`; "
                "pass a boolean tensor of the model instead."
            )
        node = Node(self, list(tensors) + extra, [], inputs, call_masks=mask)
        _, previous = node.masks_for_call(propagated, lambda tensor: tensor)
        out_shapes = self.compute_output_shape(shapes, **options)
        out_mask = self.compute_mask(inputs, previous, **options)
        outputs = self._record_node(node, out_shapes, out_mask, training)
        node.call_kwargs.update(options)
        return outputs

    def run(
        self,
        inputs: Any,
        training: bool = False,
        mask: Any = None,
        previous_mask: Any = NOT_GIVEN,
        **options: Any,
    ) -> tuple[Any, Any]:
        """As ``Layer.run``, with the call arguments passed to ``call`` and
        ``compute_mask``. Keras's attention layers read the masks their input tensors
        carry (Keras 3 fills an unset ``mask`` in from them), so ``call`` gets the masks
        the output mask derives from."""
        carried = mask if previous_mask is NOT_GIVEN else previous_mask
        arrays = pack_like(inputs, [self._to_array(v) for v in flatten(inputs)])
        shapes = pack_like(arrays, [tuple(a.shape) for a in flatten(arrays)])
        self._maybe_build(shapes)
        flat_shapes = [tuple(a.shape) for a in flatten(arrays)]
        check_input_specs(self.name, self._specs_for(len(flat_shapes)), flat_shapes)
        outputs = self.call(arrays, training=training, mask=carried, **options)
        output_mask = self.compute_mask(arrays, carried, **options)
        self._record_activity_loss(outputs)
        return outputs, output_mask
