"""Turning layerserve (Keras 2.2-shaped) configs back into layers and models."""

from __future__ import annotations

from typing import Any

from layerserve.errors import (
    ConfigError,
    LayerserveError,
    ModelFormatError,
    NotSupportedError,
    UnknownLayerError,
)
from layerserve.layers import LAYER_ALIASES, LAYER_CLASSES, OP_CLASSES, Layer
from layerserve.layers.rnn.refused import REFUSED_LAYERS
from layerserve.layers.tensor import KerasTensor
from layerserve.saving.keras_json import KEYWORD_INPUTS, LIST_OF_ONE, short_repr
from layerserve.serialization import custom_objects


def layer_class(class_name: str) -> type[Layer]:
    found = _find_class(class_name)
    if found is None:
        raise unknown_layers_error([class_name], [])
    return found


def _find_class(class_name: str) -> type[Layer] | None:
    from layerserve.models.functional import Model
    from layerserve.models.sequential import Sequential

    custom = custom_objects()
    if class_name in custom:
        return custom[class_name]
    models = {"Sequential": Sequential, "Model": Model, "Functional": Model}
    if class_name in models:
        return models[class_name]
    name = LAYER_ALIASES.get(class_name, class_name)
    return LAYER_CLASSES.get(name) or OP_CLASSES.get(name)


def unknown_layers_error(layers: list[str], operations: list[str]) -> UnknownLayerError:
    parts = []
    if layers:
        parts.append("Unknown layer" + ("s: " if len(layers) > 1 else ": ") + _names(layers))
    if operations:
        parts.append(
            "unknown Keras operation"
            + ("s: " if len(operations) > 1 else ": ")
            + _names(operations)
        )
    # Classes refused on purpose say why (ConvLSTM2D: layers/rnn/refused.py).
    reasons = "".join(f" {n}: {REFUSED_LAYERS[n]}." for n in layers if n in REFUSED_LAYERS)
    known = ", ".join(sorted([*LAYER_CLASSES, "Sequential", "Functional"]))
    implemented = f" layerserve implements the layers: {known}." if layers else ""
    if operations:
        ops = ", ".join(sorted(name.removesuffix("Op") for name in OP_CLASSES))
        implemented += (
            f" Of the Keras operations a functional model records (keras.ops calls and "
            f"operators such as `x + y` between layers), layerserve implements: {ops}; "
            "write the others as layers (Add, Multiply, Reshape, ...)."
        )
    return UnknownLayerError(
        "; ".join(parts) + f".{reasons}{implemented} Pass custom layers in `custom_objects`.",
        layers,
        operations,
    )


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def check_known_classes(identifier: dict[str, Any]) -> None:
    """Raise one error naming every layer class and Keras operation in a normalized model
    config that layerserve does not implement (nested models included)."""
    layers: list[str] = []
    operations: list[str] = []

    def visit(entry: Any) -> None:
        if not isinstance(entry, dict) or "class_name" not in entry:
            return
        class_name = str(entry["class_name"])
        if _find_class(class_name) is None:
            target = operations if "keras_op" in entry else layers
            name = str(entry.get("keras_op", class_name))
            if name not in target:
                target.append(name)
        config = entry.get("config")
        if not isinstance(config, dict):
            return
        # Nested models and wrappers: Bidirectional(layer, backward_layer), RNN(cell),
        # StackedRNNCells(cells), TimeDistributed(layer).
        for key in ("layer", "backward_layer", "cell"):
            visit(config.get(key))
        for key in ("layers", "cells"):
            for child in config.get(key) if isinstance(config.get(key), list) else []:
                visit(child)

    visit(identifier)
    if layers or operations:
        raise unknown_layers_error(layers, operations)


def deserialize_layer(identifier: dict[str, Any]) -> Layer:
    if not isinstance(identifier, dict) or "class_name" not in identifier:
        raise ModelFormatError(
            f"Expected a layer as {{'class_name', 'config'}}. Received: {identifier!r}"[:300]
        )
    class_name = identifier["class_name"]
    cls = layer_class(class_name)
    config = identifier.get("config") or {}
    name = config.get("name") if isinstance(config, dict) else None
    label = f"Layer {name!r} ({class_name})" if name else f"Layer {class_name}"
    try:
        return cls.from_config(dict(config))
    except LayerserveError as exc:
        if issubclass(cls, _model_classes()) or (name and str(name) in str(exc)):
            raise  # a nested model's own error names its layer already
        exc.args = (f"{label}: {exc}", *exc.args[1:])  # same type, the layer named
        raise
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a config triggers names its layer
        raise ConfigError(
            f"{label} cannot be built from its config: {type(exc).__name__}: {exc}"
        ) from exc


def _model_classes() -> tuple[type, ...]:
    from layerserve.models.functional import Model

    return (Model,)


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
        if name in layers:  # else the second would hide the first, and its tensors
            raise ConfigError(
                f'The name "{name}" is used more than once in the model config. All layer '
                "names should be unique."
            )
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
            resolved = _resolve(layer, node, produced)
            if resolved is None:
                continue
            args, kwargs = resolved
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


def _resolve(layer: Layer, node: Any, produced: dict) -> tuple[Any, dict] | None:
    """The tensors and call arguments of one recorded call, or None while a tensor it
    needs is not produced yet. Every call argument is understood or refused."""
    refs = node if isinstance(node, list) else []
    tensors, kwargs = [], {}
    for ref in refs:
        if len(ref) > 3 and isinstance(ref[3], dict):
            kwargs.update(ref[3])
        if isinstance(ref, list) and ref and ref[0] == KEYWORD_INPUTS:
            continue
        tensor = _lookup(ref, produced)
        if tensor is None:
            return None
        tensors.append(tensor)
    as_list = bool(kwargs.pop(LIST_OF_ONE, False))
    if not tensors:
        keyword = _keyword_inputs(layer, kwargs, produced)
        if keyword is None:
            return None
        tensors, as_list = keyword
    call: dict[str, Any] = {}
    if "training" in kwargs:
        training = kwargs.pop("training")
        if training is not None and not isinstance(training, bool):
            raise ModelFormatError(
                f"Layer {layer.name!r}: expected the call argument `training` to be true, "
                f"false or null. Received: training={training!r}"[:300]
            )
        if training is not None:
            call["training"] = training
    if "mask" in kwargs:
        mask = _mask_tensors(layer, kwargs.pop("mask"), produced)
        if mask is _PENDING:
            return None
        call["mask"] = mask
    for key in [k for k in kwargs if k in getattr(layer, "call_arguments", ())]:
        # Arguments the layer's call declares (attention: return_attention_scores,
        # use_causal_mask, the attention_mask tensor); tensors arrive as references.
        value = kwargs.pop(key)
        if _is_tensor_ref(value):
            value = _lookup(value, produced)
            if value is None:
                return None
        call[key] = value
    if kwargs:
        raise NotSupportedError(
            f"Layer {layer.name!r} ({type(layer).__name__}) is called with the argument(s) "
            f"{', '.join(sorted(kwargs))}, which layerserve does not understand for this "
            f"layer. Received: {short_repr(kwargs)}"
        )
    return (tensors[0] if len(tensors) == 1 and not as_list else tensors), call


_PENDING = object()


def _keyword_inputs(layer: Layer, kwargs: dict, produced: dict) -> tuple[list, bool] | None:
    """The inputs of a call that names its first argument (``first_call_argument``,
    ``inputs`` unless the layer says otherwise: MultiHeadAttention's ``query``), taken out
    of ``kwargs``; None while one of its tensors is not produced yet."""
    name = getattr(layer, "first_call_argument", "inputs")
    if name not in kwargs:
        raise ModelFormatError(
            f"Layer {layer.name!r} has a recorded call without inputs: expected its first "
            f"call argument `{name}` among the call's arguments. Received: "
            + short_repr(sorted(kwargs))
        )
    value = kwargs[name]
    refs = [value] if _is_tensor_ref(value) else value
    if not (isinstance(refs, list) and refs and all(_is_tensor_ref(r) for r in refs)):
        raise ModelFormatError(
            f"Layer {layer.name!r}: expected the call argument `{name}` to be a tensor or a "
            f"list of tensors. Received: {short_repr(value)}"
        )
    tensors = [_lookup(ref, produced) for ref in refs]
    if any(t is None for t in tensors):
        return None
    del kwargs[name]
    return tensors, not _is_tensor_ref(value)


def _lookup(ref: Any, produced: dict) -> KerasTensor | None:
    if not (isinstance(ref, list) and len(ref) >= 2 and isinstance(ref[0], str)):
        raise ModelFormatError(f"Unreadable tensor reference in a node: {ref!r}"[:300])
    key = (ref[0], ref[1])
    if key not in produced:
        return None
    outputs = produced[key]
    tensor_index = ref[2] if len(ref) > 2 else 0
    if not isinstance(tensor_index, int) or not 0 <= tensor_index < len(outputs):
        raise ModelFormatError(f"Layer {ref[0]} has no output {tensor_index!r}.")
    return outputs[tensor_index]


def _mask_tensors(layer: Layer, value: Any, produced: dict) -> Any:
    """A recorded ``mask`` argument: a tensor reference, None, or a list of them."""
    if value is None:
        return None
    if _is_tensor_ref(value):
        tensor = _lookup(value, produced)
        return _PENDING if tensor is None else tensor
    if isinstance(value, list):
        items = [_mask_tensors(layer, item, produced) for item in value]
        return _PENDING if any(item is _PENDING for item in items) else items
    raise ModelFormatError(
        f"Layer {layer.name!r}: expected the recorded `mask` argument to be a tensor, "
        f"None or a list of them. Received: mask={value!r}"[:300]
    )


def _is_tensor_ref(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) in (3, 4)
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    )


def _refs(value: Any) -> list[list]:
    """A model's input or output references, in order: a Keras 3 model whose outputs nest
    (a stack of cells' states, ``[out, [h, c], h2]``) has them flattened, as its graph
    and its served outputs list them; a dict of them (a model built on dicts of inputs or
    outputs) by its sorted keys, as ``keras.tree`` and ``tf.nest`` flatten it."""
    if _is_single(value):
        return [value]
    if isinstance(value, dict):
        return [ref for key in sorted(value) for ref in _refs(value[key])]
    if not isinstance(value, list):
        raise ModelFormatError(
            "Expected the model's inputs and outputs as [layer, node, tensor] references, "
            f"in lists or dicts. Received: {value!r}"
        )
    return [ref for item in value for ref in _refs(item)]


def _is_single(value: Any) -> bool:
    return isinstance(value, list) and len(value) >= 2 and isinstance(value[0], str)


def _tensor(ref: list, produced: dict) -> KerasTensor:
    key = (ref[0], ref[1])
    if key not in produced:
        raise ModelFormatError(f"The model config names an unknown tensor {ref}.")
    return produced[key][ref[2] if len(ref) > 2 else 0]


def _renumber_nested(entries: list[dict], input_refs: Any, output_refs: Any) -> tuple:
    """References to a nested model's calls, renumbered from 0. Files are renumbered as
    they are read (``saving.keras_json``: Keras 2 numbers those calls from 1, Keras 3
    from 1 in ``output_layers`` alone); a config from layerserve's own ``get_config``
    given to ``from_config`` numbers them as its Keras version does, from 1 or from 0,
    the same in every part. A config lists only the calls its outputs need, and each is
    referred to: a reference that reaches the number of calls says "from 1", one at 0
    says "from 0"."""
    nested = {
        e.get("name"): len(e.get("inbound_nodes", []))
        for e in entries
        if e.get("class_name") in ("Model", "Functional", "Sequential")
    }
    if not nested:
        return entries, input_refs, output_refs
    referenced: dict[str, list[int]] = {}
    _collect_refs([[e.get("inbound_nodes", []) for e in entries], output_refs], referenced)
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
        _collect_refs(value[2:], found)
    elif isinstance(value, (list, dict)):
        # call arguments hold references too (tf.keras: MultiHeadAttention's `value`)
        for item in value.values() if isinstance(value, dict) else value:
            _collect_refs(item, found)


def _shift(value: Any, offsets: dict[str, int]) -> Any:
    if _is_ref(value):
        rest = [_shift(item, offsets) for item in value[2:]]
        return [value[0], value[1] - offsets.get(value[0], 0), *rest]
    if isinstance(value, list):
        return [_shift(item, offsets) for item in value]
    if isinstance(value, dict):
        return {key: _shift(item, offsets) for key, item in value.items()}
    return value
