"""Turning a layerserve model graph into ONNX nodes, node by node."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, ExportError, LayerserveError, NotSupportedError
from layerserve.export.builder import GraphBuilder, Value
from layerserve.export.registry import Conversion, find_converter
from layerserve.layers.base import Layer
from layerserve.layers.core.input_layer import InputLayer
from layerserve.layers.tensor import Node, flatten


def emit_nodes(
    builder: GraphBuilder,
    nodes: list[Node],
    values: dict[int, Value],
    masks: dict[int, Value | None],
) -> None:
    """Convert every node; ``values``/``masks`` map KerasTensor ids to ONNX values."""
    for node in nodes:
        if isinstance(node.layer, InputLayer):
            continue
        if node.call_kwargs.get("training"):
            raise NotSupportedError(
                f"Layer {node.layer.name!r} is called with training=True in the model graph "
                "(for example Monte-Carlo dropout); an exported graph runs inference only."
            )
        layer = node.layer
        inputs = [_cast_if_needed(builder, layer, values[id(t)]) for t in node.inputs]
        call_masks, previous = node_masks(node, values, masks)
        conversion = Conversion(
            layer=layer,
            builder=builder,
            inputs=inputs,
            masks=call_masks,
            output_shapes=[t.shape for t in node.outputs],
            output_dtypes=[t.dtype for t in node.outputs],
            extra={"node": node},
            previous_masks=previous,
        )
        try:
            converted = find_converter(layer)(conversion)
        except LayerserveError:
            raise
        except Exception as exc:  # noqa: BLE001 - a converter bug must name its layer
            raise ExportError(
                f"Layer {layer.name!r} ({type(layer).__name__}) could not be exported: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        out_masks = _output_masks(layer, converted.masks, previous, len(node.outputs))
        for index, tensor in enumerate(node.outputs):
            values[id(tensor)] = Value(converted.outputs[index], tensor.shape, tensor.dtype)
            mask = out_masks[index]
            masks[id(tensor)] = (
                None if mask is None else Value(mask, _mask_shape(tensor, mask, previous), "bool")
            )


def node_masks(
    node: Node, values: dict[int, Value], masks: dict[int, Value | None]
) -> tuple[list[Value | None], list[Value | None]]:
    """The masks a node's call receives and those its output masks derive from, one per
    input (see ``Node.masks_for_call``); recorded masks are values of the graph."""
    count = len(node.inputs)
    carried = [masks.get(id(t)) for t in node.inputs]
    propagated = None if all(m is None for m in carried) else carried
    call, previous = node.masks_for_call(propagated, lambda tensor: values[id(tensor)])
    return align_masks(call, count), align_masks(previous, count)


def align_masks(structure: Any, count: int) -> list[Any]:
    """One mask (or None) per input: a single mask belongs to the first input."""
    if structure is None:
        return [None] * count
    if not isinstance(structure, (list, tuple)):
        return [structure] + [None] * (count - 1)
    leaves = flatten(structure)
    if len(leaves) == count:
        return leaves
    if len(leaves) < count:
        return leaves + [None] * (count - len(leaves))
    raise ConfigError(f"Expected at most {count} masks, one per input. Received: {len(leaves)}")


def _mask_shape(tensor: Any, mask_name: str, in_masks: list[Value | None]) -> tuple:
    for mask in in_masks:
        if mask is not None and mask.name == mask_name:
            return mask.shape
    return tensor.mask.shape if tensor.mask is not None else tensor.shape[:-1]


def _output_masks(
    layer: Layer, converted: list[str | None] | None, in_masks: list[Value | None], count: int
) -> list[str | None]:
    if converted is not None:
        return list(converted)
    present = [m for m in in_masks if m is not None]
    if not present or not layer.supports_masking:
        return [None] * count  # layers that cannot carry masks drop them (Keras 3)
    if type(layer).compute_mask is not Layer.compute_mask:
        raise ConfigError(
            f"The converter of {type(layer).__name__} must state its output "
            "masks: the layer computes its own."
        )
    return [present[0].name] * count


def _cast_if_needed(builder: GraphBuilder, layer: Layer, value: Value) -> Value:
    dtype = layer.call_dtype(value.dtype).name
    if dtype == np.dtype(value.dtype).name:
        return value
    from layerserve.export.builder import onnx_type

    name = builder.op("Cast", [value.name], f"{layer.name}_cast", to=onnx_type(dtype))
    return Value(name, value.shape, dtype)
