"""Turning layerserve (Keras 2.2-shaped) configs back into layers and models."""

from __future__ import annotations

from typing import Any

from layerserve.errors import ConfigError, LayerserveError, ModelFormatError, UnknownObjectError
from layerserve.layers import LAYER_ALIASES, LAYER_CLASSES, Layer
from layerserve.layers.tensor import KerasTensor
from layerserve.serialization import custom_objects


def layer_class(class_name: str) -> type[Layer]:
    from layerserve.models.functional import Model
    from layerserve.models.sequential import Sequential

    custom = custom_objects()
    if class_name in custom:
        return custom[class_name]
    models = {"Sequential": Sequential, "Model": Model, "Functional": Model}
    if class_name in models:
        return models[class_name]
    name = LAYER_ALIASES.get(class_name, class_name)
    if name in LAYER_CLASSES:
        return LAYER_CLASSES[name]
    known = ", ".join(sorted([*LAYER_CLASSES, *models]))
    raise UnknownObjectError(
        f"Unknown layer: {class_name!r}. layerserve implements: {known}. Pass custom layers "
        "in `custom_objects`."
    )


def deserialize_layer(identifier: dict[str, Any]) -> Layer:
    if not isinstance(identifier, dict) or "class_name" not in identifier:
        raise ModelFormatError(
            f"Expected a layer as {{'class_name', 'config'}}. Received: {identifier!r}"[:300]
        )
    cls = layer_class(identifier["class_name"])
    config = identifier.get("config") or {}
    try:
        return cls.from_config(dict(config))
    except TypeError as exc:
        if isinstance(exc, LayerserveError):
            raise  # already typed and explained (e.g. MaskingNotSupportedError)
        raise ConfigError(
            f"Cannot build layer {identifier['class_name']} from its config: {exc}"
        ) from exc


def rebuild_functional(config: dict[str, Any]) -> tuple[Any, Any, str | None, list[str]]:
    """Create the layers of a functional config and replay their calls in order."""
    try:
        layer_entries = list(config["layers"])
        input_refs, output_refs = config["input_layers"], config["output_layers"]
    except (KeyError, TypeError) as exc:
        raise ModelFormatError(
            f"A functional model config needs 'layers', 'input_layers' and "
            f"'output_layers'. Missing: {exc}"
        ) from exc
    layer_entries, input_refs, output_refs = _renumber_nested(
        layer_entries, input_refs, output_refs
    )
    layers: dict[str, Layer] = {}
    pending: list[tuple[Layer, list, int]] = []
    for entry in layer_entries:
        layer = deserialize_layer(entry)
        name = entry.get("name", layer.name)
        layers[name] = layer
        for position, node in enumerate(entry.get("inbound_nodes", [])):
            pending.append((layer, node, position))
    produced: dict[tuple[str, int], list[KerasTensor]] = {}
    for name, layer in layers.items():
        if type(layer).__name__ == "InputLayer":
            produced[(name, 0)] = list(layer.inbound_nodes[0].outputs)
    counts: dict[str, int] = {}
    while pending:
        progressed = False
        for item in list(pending):
            layer, node, position = item
            if counts.get(layer.name, 0) != position:
                continue  # a shared layer's nodes are replayed in their original order
            tensors = _resolve(node, produced)
            if tensors is None:
                continue
            args, kwargs = tensors
            outputs = layer(args, **kwargs)
            index = counts.get(layer.name, 0)
            counts[layer.name] = index + 1
            produced[(layer.name, index)] = outputs if isinstance(outputs, list) else [outputs]
            pending.remove(item)
            progressed = True
        if not progressed:
            names = sorted({layer.name for layer, _, _ in pending})
            raise ModelFormatError(
                f"The model config refers to tensors no layer produces (layers waiting: {names})."
            )
    inputs = [_tensor(ref, produced) for ref in _refs(input_refs)]
    outputs = [_tensor(ref, produced) for ref in _refs(output_refs)]
    single_in = _is_single(input_refs)
    single_out = _is_single(output_refs)
    return (
        inputs[0] if single_in else inputs,
        outputs[0] if single_out else outputs,
        config.get("name"),
        list(layers),
    )


def _resolve(node: Any, produced: dict) -> tuple[Any, dict] | None:
    refs = node if isinstance(node, list) else []
    tensors, kwargs = [], {}
    for ref in refs:
        key = (ref[0], ref[1])
        if key not in produced:
            return None
        outputs = produced[key]
        tensor_index = ref[2] if len(ref) > 2 else 0
        if tensor_index >= len(outputs):
            raise ModelFormatError(f"Layer {ref[0]} has no output {tensor_index}.")
        tensors.append(outputs[tensor_index])
        if len(ref) > 3 and isinstance(ref[3], dict):
            kwargs.update({k: v for k, v in ref[3].items() if k in ("training", "mask")})
    if not tensors:
        raise ModelFormatError("A layer node in the config has no inbound tensors.")
    kwargs.pop("mask", None)
    return (tensors[0] if len(tensors) == 1 else tensors), kwargs


def _refs(value: Any) -> list[list]:
    if _is_single(value):
        return [value]
    return list(value)


def _is_single(value: Any) -> bool:
    return isinstance(value, list) and len(value) >= 2 and isinstance(value[0], str)


def _tensor(ref: list, produced: dict) -> KerasTensor:
    key = (ref[0], ref[1])
    if key not in produced:
        raise ModelFormatError(f"The model config names an unknown tensor {ref}.")
    return produced[key][ref[2] if len(ref) > 2 else 0]


def _renumber_nested(entries: list[dict], input_refs: Any, output_refs: Any) -> tuple:
    """Keras 2 numbers a nested model's calls from 1 (its node 0 is its own graph),
    Keras 3 from 0. A nested model listed with k calls is referred to as 0..k-1 or as
    1..k, so the config itself tells which; refs are renumbered from 0."""
    nested = {
        e.get("name"): len(e.get("inbound_nodes", []))
        for e in entries
        if e.get("class_name") in ("Model", "Functional", "Sequential")
    }
    if not nested:
        return entries, input_refs, output_refs
    referenced: dict[str, list[int]] = {}
    _collect_refs([e.get("inbound_nodes", []) for e in entries] + [output_refs], referenced)
    offsets = {
        name: 1
        for name, calls in nested.items()
        if referenced.get(name) and max(referenced[name]) >= calls > 0
    }
    if not offsets:
        return entries, input_refs, output_refs
    shifted = [{**e, "inbound_nodes": _shift(e.get("inbound_nodes", []), offsets)} for e in entries]
    return shifted, _shift(input_refs, offsets), _shift(output_refs, offsets)


def _is_ref(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) >= 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def _collect_refs(value: Any, found: dict[str, list[int]]) -> None:
    if _is_ref(value):
        found.setdefault(value[0], []).append(value[1])
    elif isinstance(value, list):
        for item in value:
            _collect_refs(item, found)


def _shift(value: Any, offsets: dict[str, int]) -> Any:
    if _is_ref(value):
        return [value[0], value[1] - offsets.get(value[0], 0), *value[2:]]
    if isinstance(value, list):
        return [_shift(item, offsets) for item in value]
    return value
