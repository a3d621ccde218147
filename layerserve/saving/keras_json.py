"""Reading model JSON written by Keras 2.2.x, tf.keras 2.x and Keras 3.

Everything is normalised into layerserve's own config shape (the Keras 2.2 one), and
the Keras version that wrote the document is reported so that names whose meaning
changed (``hard_sigmoid``, LSTM defaults, activity-loss scaling) are read right.
"""

from __future__ import annotations

import contextvars
import json
from typing import Any

from layerserve.errors import ModelFormatError, NotSupportedError
from layerserve.serialization import parse_version

# Keras 3 writes no version into to_json(); assume the newest semantics known.
LATEST_KERAS_3 = "3.15.1"
# Keys newer Keras writes that change nothing when they hold these values.
_NEUTRAL_KEYS: dict[str, tuple[Any, ...]] = {
    "quantization_config": (None,),
    "lora_rank": (None, 0),
    "lora_alpha": (None,),
    "lora_enabled": (None, False),
    "gptq": (None, False),
    "zero_output_for_mask": (False,),
    "ragged": (False,),
    "optional": (False,),
    "autocast": (True,),
}
_MODEL_CLASSES = {"Sequential", "Model", "Functional"}
# The writer's version while a Keras 2 document (not one layerserve wrote) is normalised:
# its node indices of nested models are then converted (see _first_node_index).
_keras2_writer: contextvars.ContextVar[tuple[int, int, int] | None] = contextvars.ContextVar(
    "keras2_writer", default=None
)
# The writer's version while a document Keras 3 wrote (not layerserve) is normalised: the
# outputs' references to nested functional models are then converted
# (_keras3_output_offsets), and from 3.14 on a call recorded without `mask` reads the mask
# its input carries (_normalize_node).
_keras3_writer: contextvars.ContextVar[tuple[int, int, int] | None] = contextvars.ContextVar(
    "keras3_writer", default=None
)
# Keras 3.14 keeps a tensor's mask through the conversion to a layer's dtype (#21946).
MASK_SURVIVES_CAST = (3, 14, 0)
# The Keras 3 layers whose call takes `mask` (Keras fills it from the input's own mask).
KERAS3_MASK_CALLS = frozenset(
    {
        "Attention", "AdditiveAttention", "BatchNormalization", "Bidirectional",
        "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "Functional", "GRU",
        "GlobalAveragePooling1D", "LSTM", "Lambda", "Model", "RNN", "Sequential",
        "SimpleRNN", "Softmax", "TimeDistributed",
    }
)  # fmt: skip


def parse_document(text: str | bytes | dict) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"The model JSON cannot be parsed: {exc}") from exc
    if not isinstance(document, dict) or "class_name" not in document:
        raise ModelFormatError(
            "Expected a Keras model JSON object with 'class_name' and "
            "'config'. Received: " + type(document).__name__
        )
    return document


def detect_keras_version(document: dict[str, Any]) -> str:
    """The writer's version: the envelope's ``keras_version``, else Keras 3 if it has
    ``module`` keys (Keras 3 writes no version), else the 2.2.4 reference."""
    version = document.get("keras_version")
    if isinstance(version, str) and version:
        return version
    if "module" in document or "registered_name" in document:
        return LATEST_KERAS_3
    return "2.2.4"


def normalize_model(document: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """``{"class_name": "Sequential"|"Model", "config": ...}`` in layerserve's shape.
    ``version`` is the Keras version that wrote the document (default: detected)."""
    class_name = document.get("class_name")
    if class_name not in _MODEL_CLASSES:
        raise ModelFormatError(
            f"Expected a Sequential or functional model. Received: class_name={class_name!r}"
        )
    writer = parse_version(version or detect_keras_version(document))
    keras2 = writer < (3, 0, 0)
    token = _keras2_writer.set(writer if keras2 else None)
    ours = document.get("backend") == "layerserve"
    keras3 = _keras3_writer.set(None if keras2 or ours else writer)
    try:
        check_keys("The model document", document, DOCUMENT_KEYS)
        return _normalize_entry(document)
    finally:
        _keras3_writer.reset(keras3)
        _keras2_writer.reset(token)


# The keys of a layer's entry in a model config (Keras 2 and 3, tf.keras), of a model's
# own config, and of the document around it; any other key is refused, never ignored.
LAYER_ENTRY_KEYS = frozenset(
    {"class_name", "config", "module", "registered_name", "name", "inbound_nodes",
     "build_config", "compile_config", "shared_object_id", "keras_op"}
)  # fmt: skip
MODEL_CONFIG_KEYS = frozenset(
    {"name", "trainable", "layers", "input_layers", "output_layers", "dtype",
     "build_input_shape"}
)  # fmt: skip
DOCUMENT_KEYS = LAYER_ENTRY_KEYS - {"inbound_nodes", "keras_op"} | {
    "keras_version",
    "backend",
    "layerserve_version",  # layerserve's own documents
}


def check_keys(what: str, given: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(str(key) for key in set(given) - allowed)
    if unknown:
        raise ModelFormatError(
            f"{what}: unknown key(s) {unknown}; expected only {sorted(allowed)}"[:500]
        )


def normalize_layer(entry: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise ModelFormatError(
            f"Expected a layer entry with 'class_name'. Received: {entry!r}"[:300]
        )
    check_keys(f"The entry of layer {entry.get('name')!r}", entry, LAYER_ENTRY_KEYS)
    return _normalize_entry(entry)


def _normalize_entry(entry: dict[str, Any]) -> dict[str, Any]:
    class_name = entry["class_name"]
    config = entry.get("config")
    if class_name == "Sequential":
        return {"class_name": "Sequential", "config": _normalize_sequential(config)}
    if class_name in ("Model", "Functional"):
        return {"class_name": "Model", "config": _normalize_functional(config)}
    if not isinstance(config, dict):
        raise ModelFormatError(f"Layer {class_name} has no config object.")
    normalized = {"class_name": class_name, "config": _normalize_layer_config(class_name, config)}
    return normalized


def _normalize_sequential(config: Any) -> dict[str, Any]:
    if isinstance(config, list):
        config = {"layers": config}
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ModelFormatError("A Sequential config needs a 'layers' list.")
    check_keys(f"The config of model {config.get('name')!r}", config, MODEL_CONFIG_KEYS)
    out: dict[str, Any] = {
        "name": config.get("name"),
        "layers": [normalize_layer(e) for e in config["layers"]],
    }
    if config.get("build_input_shape") is not None:
        out["build_input_shape"] = _any_batch(_batch_shape(config["build_input_shape"]))
    return out


def _any_batch(shape: Any) -> Any:
    """A saved input shape with its batch size freed. Keras records the batch of the
    first call when a Sequential is built from data (and ``Input(batch_size=...)``
    fixes one), yet predicts any batch size; so does layerserve (stateful layers, which
    would need it, are refused)."""
    if isinstance(shape, list) and shape:
        return [None, *shape[1:]]
    return shape


def _batch_shape(value: Any) -> Any:
    # Keras 3 may store a dict or a list of shapes for multi-input builds; keep the first.
    if isinstance(value, dict):
        value = next(iter(value.values()))
    if isinstance(value, list) and value and isinstance(value[0], list):
        value = value[0]
    return value


def _normalize_functional(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ModelFormatError("A functional model config needs a 'layers' list.")
    check_keys(f"The config of model {config.get('name')!r}", config, MODEL_CONFIG_KEYS)
    layers = []
    for entry in config["layers"]:
        if not isinstance(entry, dict):
            raise ModelFormatError(f"Expected a layer entry. Received: {entry!r}"[:300])
        op = _is_keras_op(entry)
        if op:
            check_keys(f"The entry of operation {entry.get('name')!r}", entry, LAYER_ENTRY_KEYS)
        normalized = _normalize_op(entry) if op else normalize_layer(entry)
        normalized["name"] = entry.get("name", normalized["config"].get("name"))
        layer = f"Layer {entry.get('name')!r} ({entry.get('class_name')})"
        keras3 = _keras3_writer.get()
        fills_mask = (
            keras3 is not None
            and keras3 >= MASK_SURVIVES_CAST
            and entry.get("class_name") in KERAS3_MASK_CALLS
        )
        nodes = [_normalize_node(n, op, layer, fills_mask) for n in entry.get("inbound_nodes", [])]
        if op:
            if len(nodes) != 1:
                raise ModelFormatError(
                    f"Expected the Keras operation {normalized['name']!r} to be called once. "
                    f"Received: {len(nodes)} calls"
                )
            refs, template = nodes[0]
            normalized["config"]["arguments"] = template
            nodes = [refs]
        normalized["inbound_nodes"] = nodes
        layers.append(normalized)
    input_layers, output_layers = config.get("input_layers"), config.get("output_layers")
    writer = _keras2_writer.get()
    if writer is not None:
        offsets = {entry["name"]: _first_node_index(entry, writer) for entry in layers}
        for entry in layers:
            entry["inbound_nodes"] = [_shift_refs(node, offsets) for node in entry["inbound_nodes"]]
        input_layers = _shift_refs(input_layers, offsets)
        output_layers = _shift_refs(output_layers, offsets)
    elif _keras3_writer.get() is not None:
        output_layers = _shift_refs(output_layers, _keras3_output_offsets(layers, output_layers))
    layers = _reachable(layers, output_layers)
    return {
        "name": config.get("name"),
        "layers": layers,
        "input_layers": input_layers,
        "output_layers": output_layers,
    }


def _is_keras_op(entry: dict[str, Any]) -> bool:
    """Keras 3 records the operations that compute masks (and any ``keras.ops`` call in
    a functional model) as entries of module ``keras.src.ops.<...>``."""
    module = entry.get("module")
    if isinstance(module, str):
        return module.startswith("keras.src.ops")
    # Keras 3's legacy .h5 writes no module: an operation's config, unlike almost every
    # layer's (Layer.get_config), has no `trainable`; some hold a `dtype` (Cast,
    # ConvertToTensor, ZerosLike). Operations share names with layers (`x + y` is an Add
    # operation, which carries no mask, unlike the Add layer), so only the layers whose
    # config leaves `trainable` out are known by name.
    if entry.get("class_name") in _LAYERS_WITHOUT_TRAINABLE:
        return False
    config = entry.get("config")
    nodes = entry.get("inbound_nodes") or []
    return (
        isinstance(config, dict)
        and "trainable" not in config
        and bool(nodes)
        and all(isinstance(node, dict) for node in nodes)
    )


# Keras 3 layers whose get_config has no `trainable` (read as layers from a legacy .h5).
_LAYERS_WITHOUT_TRAINABLE = frozenset(
    {
        "Discretization", "FeatureSpace", "HashedCrossing", "InputLayer", "Pipeline",
        "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    }
)  # fmt: skip


def _normalize_op(entry: dict[str, Any]) -> dict[str, Any]:
    config = entry.get("config")
    if not isinstance(config, dict):
        raise ModelFormatError(f"Keras operation {entry.get('name')!r} has no config object.")
    name = str(entry.get("class_name"))
    return {"class_name": name + OP_SUFFIX, "keras_op": name, "config": dict(config)}


OP_SUFFIX = "Op"
# The pseudo-reference of a Keras 3 call without positional arguments: its kwargs hold
# the call arguments, the layer's first (its inputs) among them by name.
KEYWORD_INPUTS = "__keyword_inputs__"
# A call argument of layerserve's own configs: the call's one input tensor was a list.
LIST_OF_ONE = "list_input"


def _first_node_index(entry: dict[str, Any], writer: tuple[int, int, int]) -> int:
    """Keras 2 numbers the calls of a nested model from 1 in a config: its node 0 is the
    model's own input-to-output node, which is not saved. Multi-backend Keras 2.x does
    so for every nested model, tf.keras 2.x only for one that starts with an InputLayer
    (``_should_skip_first_node``). Keras 3 counts from 0."""
    if entry["class_name"] not in ("Sequential", "Model"):
        return 0
    if writer < (2, 4, 0) or entry["class_name"] == "Model":
        return 1
    first = (entry["config"].get("layers") or [{}])[0]
    return int(first.get("class_name") == "InputLayer")


def _keras3_output_offsets(layers: list[dict[str, Any]], output_layers: Any) -> dict[str, int]:
    """Keras 3 numbers a nested functional model's calls from 0 in the layers' calls
    (``serialize_node`` leaves out the model's own node) but from 1 in ``output_layers``
    (``get_config`` counts it there, as Keras 2 did); a nested Sequential model from 0 in
    both. So a model called twice whose first call alone is an output is ``[name, 1, 0]``
    there, its first call. An output reference with node 0 shows a writer that counts
    from 0 (no Keras 3 so far): that model's references are then left as they are."""
    functional = {entry["name"] for entry in layers if entry["class_name"] == "Model"}
    indices: dict[str, set[int]] = {}
    for ref in _output_refs(output_layers):
        indices.setdefault(ref[0], set()).add(ref[1])
    return {name: 1 for name, seen in indices.items() if name in functional and 0 not in seen}


def _output_refs(value: Any) -> list[list[Any]]:
    """The ``[layer, node, tensor]`` references of ``output_layers`` (nested or in a
    dict, as Keras 3 writes a model's structured outputs)."""
    if isinstance(value, list) and len(value) >= 2 and isinstance(value[0], str):
        return [value] if isinstance(value[1], int) else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [ref for item in value for ref in _output_refs(item)]
    return []


def _shift_refs(value: Any, offsets: dict[str, int]) -> Any:
    """``[layer, node, tensor, ...]`` refs (alone, in lists or dicts) renumbered from 0."""
    if isinstance(value, list) and len(value) >= 2 and isinstance(value[0], str):
        node = value[1] - offsets.get(value[0], 0) if isinstance(value[1], int) else value[1]
        # the call's arguments (value[3]) may hold refs too: MultiHeadAttention's `value`
        return [value[0], node, *[_shift_refs(item, offsets) for item in value[2:]]]
    if isinstance(value, list):
        return [_shift_refs(item, offsets) for item in value]
    if isinstance(value, dict):
        return {key: _shift_refs(item, offsets) for key, item in value.items()}
    return value


def _reachable(layers: list[dict[str, Any]], output_layers: Any) -> list[dict[str, Any]]:
    """The layers the outputs are computed from (through their inputs and the tensors
    their calls were given: masks, attention's ``value``/``attention_mask``), plus every
    InputLayer."""
    by_name = {entry["name"]: entry for entry in layers}
    needed: set[str] = set()
    stack = _ref_names(output_layers)
    while stack:
        name = stack.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        for node in by_name[name]["inbound_nodes"]:
            for ref in node:
                stack.append(ref[0])
                if len(ref) > 3 and isinstance(ref[3], dict):
                    # tensors in call arguments: masks, attention's value/key/attention_mask
                    stack.extend(_ref_names(list(ref[3].values())))
    return [
        entry for entry in layers if entry["name"] in needed or entry["class_name"] == "InputLayer"
    ]


def _ref_names(value: Any) -> list[str]:
    """Layer names in ``output_layers`` or a ``mask`` argument: a triple, a list of
    triples or a dict of them."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value[0]]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [name for item in value for name in _ref_names(item)]
    return []


def _normalize_node(
    node: Any, op: bool = False, layer: str = "A layer", fills_mask: bool = False
) -> Any:
    """Keras 2 nodes are lists of ``[layer, node, tensor, kwargs]``. Keras 3 nodes are
    ``{"args": [...], "kwargs": {...}}`` holding ``__keras_tensor__`` objects: they become
    the same list, the call arguments in the first reference's kwargs, with tensors as
    ``[layer, node, tensor]`` references. ``initial_state`` tensors follow the inputs, as
    tf.keras records them. A Keras 3 call states its ``mask`` (None when none was
    recorded), but for a recorded None, left out: the layer then reads the mask its
    input carries, as Keras 3 does. A recorded
    ``training`` is dropped: Keras 3 overrides it with the model call's. For a Keras operation
    the result is ``(refs, template)``: its positional arguments with each tensor
    replaced by ``{"tensor": index}``. ``layer`` names the layer in errors.

    ``fills_mask``: a Keras 3.14+ layer whose call takes ``mask``. A call of it whose
    input Keras converted to the layer's dtype (a float64 or float16 layer after float32
    ones) is recorded with the arguments it was given, without ``mask``, yet Keras fills
    the mask its input carries when it runs (keras-team/keras#21946 keeps that mask
    through the conversion): with one tensor argument, it is left out too. Keras before
    3.14 lost it there, and such a call gets none."""
    if isinstance(node, list):
        if op:
            raise ModelFormatError("A Keras operation entry needs a Keras 3 node.")
        if node and isinstance(node[0], str):
            # tf.keras keeps the call's structure for its operation layers (TFOpLambda,
            # SlicingOpLambda): one tensor is one bare reference, not a list of them
            node = [node]
        refs = _flat_refs(node)
        if not all(isinstance(ref, list) and len(ref) >= 3 for ref in refs):
            raise ModelFormatError(f"{layer}: unreadable inbound node: {node!r}"[:300])
        return [list(ref) for ref in refs]
    if not isinstance(node, dict):
        raise ModelFormatError(f"Unreadable inbound node: {node!r}"[:300])
    histories: list[list[Any]] = []
    template = _argument_template(node.get("args", []), histories)
    kwargs = node.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ModelFormatError(f"Unreadable call arguments: {kwargs!r}"[:300])
    if op:
        if kwargs:
            raise NotSupportedError(
                f"{layer} is a Keras operation called with keyword arguments, which "
                f"layerserve does not support. Received: {sorted(kwargs)}"
            )
        return [[*h, {}] for h in histories], template
    if not all(_holds_tensors(arg) for arg in template):
        raise NotSupportedError(
            f"{layer} is called with positional arguments besides its inputs, which is not "
            f"supported. Received: {short_repr(node.get('args'))}"
        )
    call: dict[str, Any] = {"mask": None}
    for key, value in kwargs.items():
        if key == "mask" and value is None:
            # Recorded None: the call's one tensor argument had no mask when the model
            # was built, and Keras 3 fills such a mask from the mask its input carries
            # when it runs: in a model nested as a layer (built alone, every mask None),
            # the mask its caller gives it. No recorded mask at all (several tensor
            # arguments: initial states) is left None: Keras hands the call none.
            del call["mask"]
        elif key == "initial_state":
            states: list[list[Any]] = []
            _argument_template(value, states)
            histories.extend(states)
        elif key == "training":
            # Keras 3 replaces a recorded `training` with the model call's own (predict:
            # False): a layer called with training=True, or recorded so because its call
            # defaults to it (the random augmentation layers), runs in inference mode.
            continue
        else:
            call[key] = _tensor_refs(value)
    if fills_mask and "mask" not in kwargs and not _tensor_keywords(kwargs):
        del call["mask"]
    if len(histories) == 1 and isinstance(template[0], list):
        call[LIST_OF_ONE] = True  # `Concatenate()([x])`: the input stays a list
    refs = [[*h, {}] for h in histories]
    if not refs:
        # `mha(query=x, value=y)`: Keras 3 records the first call argument by keyword
        # too (tf.keras moves it to the inputs); the layer's rebuild picks it from there.
        refs = [[KEYWORD_INPUTS, 0, 0, {}]]
    refs[0][3] = call
    return refs


def _flat_refs(node: list[Any]) -> list[Any]:
    """A Keras 2 node's references in order; tf.keras nests the initial states of a
    stack of cells per cell (``[x, [h, c], h2]``)."""
    refs: list[Any] = []
    for item in node:
        if isinstance(item, list) and item and isinstance(item[0], list):
            refs += _flat_refs(item)
        else:
            refs.append(item)
    return refs


def _argument_template(value: Any, histories: list[list[Any]]) -> Any:
    """``value`` with each ``__keras_tensor__`` replaced by ``{"tensor": i}``, its
    ``keras_history`` appended to ``histories``; Keras 3's tuple and array wrappers
    decoded."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        histories.append(list(value["config"]["keras_history"]))
        return {"tensor": len(histories) - 1}
    if isinstance(value, dict) and value.get("class_name") in ("__tuple__", "__numpy__"):
        return _decode_keras3_value(value)
    if isinstance(value, list):
        return [_argument_template(item, histories) for item in value]
    if isinstance(value, dict):
        return {key: _argument_template(item, histories) for key, item in value.items()}
    return value


def _tensor_keywords(kwargs: dict[str, Any]) -> list[str]:
    """The keyword arguments of a Keras 3 call that hold tensors (``initial_state``):
    Keras fills ``mask`` only for a call of one tensor argument."""
    return [key for key, value in kwargs.items() if _refers_to_tensors(value)]


def _refers_to_tensors(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get("class_name") == "__keras_tensor__" or any(
            _refers_to_tensors(item) for item in value.values()
        )
    if isinstance(value, list):
        return any(_refers_to_tensors(item) for item in value)
    return False


def _holds_tensors(value: Any) -> bool:
    if isinstance(value, dict):
        return set(value) == {"tensor"}
    if isinstance(value, list):
        return bool(value) and all(_holds_tensors(item) for item in value)
    return False


def _tensor_refs(value: Any) -> Any:
    """Call-argument values with tensors as ``[layer, node, tensor]`` references."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return list(value["config"]["keras_history"])
    if isinstance(value, list):
        return [_tensor_refs(item) for item in value]
    if isinstance(value, dict):
        return {key: _tensor_refs(item) for key, item in value.items()}
    return value


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to 200 characters, for error messages about configs."""
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


# Wrappers hold whole layer configs (spec 13.1): normalised like top-level layers.
_NESTED_LAYER_KEYS = ("layer", "backward_layer", "cell")
# Layers that honour `zero_output_for_mask` themselves instead of refusing True.
_HONOUR_ZERO_OUTPUT = ("RNN", "LSTM", "GRU", "SimpleRNN")


def _normalize_nested(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Nested layer configs normalised; Bidirectional's halves lose the
    `zero_output_for_mask` it sets on them itself (tf.keras writes the forced value)."""
    for key in (*_NESTED_LAYER_KEYS, "cells"):
        value = config.get(key)
        if isinstance(value, list):
            config[key] = [_nested_entry(class_name, item) for item in value]
        elif isinstance(value, dict) and "class_name" in value:
            config[key] = _nested_entry(class_name, value)
    return config


def _nested_entry(owner: str, entry: Any) -> Any:
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        return entry
    if owner == "Bidirectional":
        entry = {**entry, "config": dict(entry["config"])}
        entry["config"].pop("zero_output_for_mask", None)
    return normalize_layer(entry)


def _normalize_layer_config(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    config = _normalize_nested(class_name, dict(config))
    for key, neutral in _NEUTRAL_KEYS.items():
        if key == "zero_output_for_mask" and class_name in _HONOUR_ZERO_OUTPUT:
            continue
        if key in config:
            value = config.pop(key)
            if value not in neutral:
                raise NotSupportedError(
                    f"Layer {config.get('name')} ({class_name}) uses "
                    f"{key}={value!r}, which layerserve does not support."
                )
    if class_name == "InputLayer":
        if "batch_shape" in config and "batch_input_shape" not in config:
            config["batch_input_shape"] = config.pop("batch_shape")
        config.pop("batch_shape", None)
    if isinstance(config.get("batch_input_shape"), list):
        config["batch_input_shape"] = _any_batch(config["batch_input_shape"])
    if class_name == "Lambda":
        config = _normalize_lambda(config)
    return config


def _normalize_lambda(config: dict[str, Any]) -> dict[str, Any]:
    if "function_type" in config:
        return config
    for key in ("function", "output_shape", "mask"):
        value = config.get(key)
        if isinstance(value, dict) and value.get("class_name") == "__lambda__":
            config[key], config[f"{key}_type"] = value.get("config", {}), "lambda"
        elif isinstance(value, dict):
            config[key], config[f"{key}_type"] = value.get("config"), "function"
            if key in ("function", "output_shape"):  # where the named function lives
                config["module" if key == "function" else "output_shape_module"] = value.get(
                    "module"
                )
        else:
            config[f"{key}_type"] = "raw"
    config["function_type"] = config.get("function_type", "function")
    arguments = config.get("arguments")
    if isinstance(arguments, dict) and arguments.get("class_name") == "__dict__":
        arguments = arguments.get("config", {})
    if isinstance(arguments, dict):
        config["arguments"] = {k: _decode_keras3_value(v) for k, v in arguments.items()}
    return config


def _decode_keras3_value(value: Any) -> Any:
    """Keras 3 wraps arrays and tuples: ``{"class_name": "__numpy__", "config": {"value",
    "dtype"}}`` and ``{"class_name": "__tuple__", "config": {"value": [...]}}``."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        import numpy as np

        config = value.get("config") or {}
        return np.asarray(config.get("value"), dtype=config.get("dtype"))
    if isinstance(value, dict) and value.get("class_name") == "__tuple__":
        return tuple(_decode_keras3_value(v) for v in (value.get("config") or {}).get("value", []))
    if isinstance(value, list):
        return [_decode_keras3_value(v) for v in value]
    return value
