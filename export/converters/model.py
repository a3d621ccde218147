"""A model nested in a model: its graph is inlined."""

from __future__ import annotations

from layerserve.export.builder import Value
from layerserve.export.convert import emit_nodes
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.models.functional import Model


@converter(Model)
def convert_model(conversion: Conversion) -> Converted:
    model = conversion.layer
    values: dict[int, Value] = {}
    masks: dict[int, Value | None] = {}
    for tensor, value, mask in zip(model.inputs, conversion.inputs, conversion.masks, strict=True):
        values[id(tensor)] = value
        masks[id(tensor)] = mask
    emit_nodes(conversion.builder, model._nodes, values, masks)
    outputs = [values[id(t)].name for t in model.outputs]
    out_masks = [None if masks.get(id(t)) is None else masks[id(t)].name for t in model.outputs]
    return Converted(outputs, masks=out_masks)
