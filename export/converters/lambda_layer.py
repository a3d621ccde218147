"""Lambda: the function (and a callable mask) traced through NumPy's dispatch."""

from __future__ import annotations

from typing import Any

from layerserve.export.registry import Conversion, Converted, converter
from layerserve.export.tracing import trace_function
from layerserve.layers.core.lambda_layer import Lambda, _parameters


@converter(Lambda)
def convert_lambda(conversion: Conversion) -> Converted:
    layer, builder = conversion.layer, conversion.builder
    node = conversion.extra["node"]
    structure = "list" if isinstance(node.input_structure, (list, tuple)) else "single"
    kwargs: dict[str, Any] = dict(layer.arguments)
    accepted = _parameters(layer.function)
    if "training" in accepted:
        kwargs["training"] = False
    if "mask" in accepted:
        kwargs["mask"] = _mask_argument(builder, conversion, structure)
    outputs = trace_function(
        builder, layer.function, conversion.inputs, layer.name, structure=structure, kwargs=kwargs
    )
    return Converted([v.name for v in outputs], masks=_masks(conversion, structure, len(outputs)))


def _mask_argument(builder: Any, conversion: Conversion, structure: str) -> Any:
    from layerserve.export.tracing import TracedArray

    masks = [
        None
        if m is None
        else TracedArray(builder, m.name, m.shape, "bool", prefix=conversion.layer.name)
        for m in conversion.masks
    ]
    if all(m is None for m in masks):
        return None
    return masks if structure == "list" else masks[0]


def _masks(conversion: Conversion, structure: str, count: int) -> list[str | None]:
    layer = conversion.layer
    if layer.mask is None:
        return [None] * count  # Keras 2: a Lambda without `mask` drops the mask
    if not callable(layer.mask):
        value = conversion.builder.constant(layer.mask, f"{layer.name}_mask", dtype=bool)
        return [value] * count
    mask_input = _mask_argument(conversion.builder, conversion, structure)
    traced = trace_function(
        conversion.builder,
        lambda inputs: layer.mask(inputs, mask_input),
        conversion.inputs,
        f"{layer.name}_mask",
        structure=structure,
    )
    names = [v.name for v in traced]
    return names if len(names) == count else [names[0]] * count
