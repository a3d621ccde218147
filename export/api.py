"""``to_onnx``: a layerserve model (and so any Keras model layerserve loads) to ONNX."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from layerserve import __version__
from layerserve.errors import ExportError, NotSupportedError
from layerserve.export import converters  # noqa: F401 - registers the converters
from layerserve.export.builder import BATCH_DIM, GraphBuilder, Value
from layerserve.export.convert import emit_nodes
from layerserve.export.opsets import resolve_opset
from layerserve.export.optimize import optimize
from layerserve.layers.tensor import KerasTensor
from layerserve.serialization import version_string

MASK_SUFFIX = "_mask"


def to_onnx(
    model: Any,
    path: str | os.PathLike | None = None,
    *,
    opset: int | None = None,
    optimize_graph: bool = True,
    check: bool = True,
) -> onnx.ModelProto:
    """Export ``model``. Inputs and outputs keep the model's names, with a symbolic batch
    axis ``batch``; an output that carries a Keras mask gets a BOOL ``<name>_mask`` output.
    The default opset (``opsets.DEFAULT_OPSET``) loads on every onnxruntime pyproject.toml
    allows; ``opset`` asks for another, from 13 to the newest the installed onnxruntime
    runs. The IR version is the lowest that carries the opset."""
    model._require_graph()
    builder = GraphBuilder(resolve_opset(opset), name=model.name)
    values: dict[int, Value] = {}
    masks: dict[int, Value | None] = {}
    owners: dict[str, str] = {}
    for tensor, layer in zip(model.inputs, model.input_layers, strict=True):
        name = _claim(builder, owners, layer.name, f"input {layer.name!r}", model)
        builder.add_input(name, tensor.dtype, _dims(name, tensor.shape))
        values[id(tensor)] = Value(name, tensor.shape, tensor.dtype)
        masks[id(tensor)] = None
    output_names = _reserve_outputs(builder, model, owners)
    emit_nodes(builder, model._nodes, values, masks)
    mask_outputs = {}
    renamed: dict[str, str] = {}
    for tensor, (name, mask_name) in zip(model.outputs, output_names, strict=True):
        mask = masks.get(id(tensor))
        if mask is not None:
            mask = _with_batch_axis(builder, mask, values[id(tensor)])
        _bind_output(builder, values[id(tensor)], name, tensor, renamed)
        if mask is not None and mask_name is None:
            raise ExportError(
                f"Output {name!r} of model {model.name!r} carries a Keras mask in the graph "
                "but none in the model's own shapes, so no output name was kept for it"
            )
        if mask is not None and mask_name is not None:
            _bind_output(builder, mask, mask_name, KerasTensor(mask.shape, "bool"), renamed)
            mask_outputs[name] = mask_name
    onnx_model = builder.model(_metadata(model, mask_outputs, builder.batch_coupled))
    if optimize_graph:
        optimize(onnx_model)
    if check:
        try:
            onnx.checker.check_model(onnx_model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise ExportError(
                f"The ONNX graph written for model {model.name!r} fails onnx's own check, "
                f"so it is not returned: {exc}"
            ) from exc
    if path is not None:
        save_onnx(onnx_model, path)
    return onnx_model


def output_names(model: Any) -> list[str]:
    """The ONNX output names of ``model``'s outputs, in order. An output that is also a
    model input is renamed ``<name>_output``: one graph name cannot be both."""
    names: list[str] = []
    for tensor in model.outputs:
        base = tensor.history[0].name if tensor.history[2] == 0 else tensor.name
        names.append(base if base not in names else f"{base}_{len(names)}")
    input_names = set(model.input_names)
    return [n if n not in input_names else f"{n}_output" for n in names]


def _reserve_outputs(
    builder: GraphBuilder, model: Any, owners: dict[str, str]
) -> list[tuple[str, str | None]]:
    """Each output's name, and ``<name>_mask`` for one that carries a Keras mask."""
    reserved: list[tuple[str, str | None]] = []
    for tensor, name in zip(model.outputs, output_names(model), strict=True):
        _claim(builder, owners, name, f"output {name!r}", model)
        mask_name = None
        if tensor.mask is not None:
            mask_name = name + MASK_SUFFIX
            _claim(builder, owners, mask_name, f"the mask of output {name!r}", model)
        reserved.append((name, mask_name))
    return reserved


def _claim(builder: GraphBuilder, owners: dict[str, str], name: str, what: str, model: Any) -> str:
    """``name`` for ``what``, refused clearly when an input, an output or an output's
    mask (``<output>_mask``) of the graph has it already."""
    if name in owners:
        raise NotSupportedError(
            f"Model {model.name!r}: {what} would be the graph's value {name!r}, which is "
            f"already {owners[name]} (an output with a Keras mask adds '<output>{MASK_SUFFIX}'"
            "); rename one of those layers in Keras and save the model again. "
            f"Received: two graph inputs or outputs named {name!r}"
        )
    owners[name] = what
    return builder.reserve(name)


def exported_mask(mask: Any, rows: int) -> np.ndarray:
    """What the exported graph gives for a Keras mask of a ``rows``-row output: the same
    mask, repeated along the batch axis where Keras's has a leading 1 (see
    :func:`_with_batch_axis`)."""
    mask = np.asarray(mask)
    if mask.ndim and mask.shape[0] == 1 and rows != 1:
        return np.broadcast_to(mask, (rows, *mask.shape[1:]))
    return mask


def _with_batch_axis(builder: GraphBuilder, mask: Value, value: Value) -> Value:
    """The mask with its value's batch axis. Keras gives some masks a leading 1 instead
    (MultiHeadAttention's scores under a causal mask alone); a served model's outputs are
    split by rows, so the graph repeats such a mask for every row."""
    if not mask.shape or mask.shape[0] != 1 or value.shape[:1] == (1,):
        return mask
    name = mask.name
    rows = builder.op(
        "Slice",
        [
            builder.op("Shape", [value.name], f"{name}_value_shape"),
            builder.int64s([0], f"{name}_zero"),
            builder.int64s([1], f"{name}_one"),
        ],
        f"{name}_rows",
    )
    rest = builder.op(
        "Slice",
        [
            builder.op("Shape", [name], f"{name}_shape"),
            builder.int64s([1], f"{name}_from"),
            builder.int64s([len(mask.shape)], f"{name}_to"),
        ],
        f"{name}_rest",
    )
    target = builder.op("Concat", [rows, rest], f"{name}_batched_shape", axis=0)
    expanded = builder.op("Expand", [name, target], f"{name}_batched")
    return Value(expanded, (None, *mask.shape[1:]), mask.dtype)


def _bind_output(
    builder: GraphBuilder, value: Value, name: str, tensor: KerasTensor, renamed: dict[str, str]
) -> None:
    """Make ``value`` the graph output ``name``: rename its producer's output the first
    time; add an Identity where the value is a graph input or already bound."""
    source = renamed.get(value.name, value.name)
    producer = next((n for n in builder.nodes if source in n.output), None)
    if producer is None or value.name in renamed:
        builder.op("Identity", [source], name, output_names=[name])
    else:
        _rename(builder, value.name, name)
        renamed[value.name] = name
    builder.add_output(name, tensor.dtype, _dims(name, tensor.shape))


def _rename(builder: GraphBuilder, old: str, new: str) -> None:
    for node in builder.nodes:
        for index, item in enumerate(node.output):
            if item == old:
                node.output[index] = new
        for index, item in enumerate(node.input):
            if item == old:
                node.input[index] = new
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                for inner in attribute.g.node:
                    for index, item in enumerate(inner.input):
                        if item == old:
                            inner.input[index] = new


def _dims(name: str, shape: tuple) -> tuple:
    return tuple(
        BATCH_DIM if i == 0 else (f"{name}_dim{i}" if d is None else d) for i, d in enumerate(shape)
    )


def _metadata(model: Any, mask_outputs: dict[str, str], batch_coupled: list[str]) -> dict[str, str]:
    return {
        "layerserve_version": __version__,
        "keras_version": version_string(model.keras_version, model.tf_keras_file),
        "model_config": model.to_json(sort_keys=True),
        "mask_outputs": json.dumps(mask_outputs, sort_keys=True),
        "input_value_ranges": json.dumps(input_value_ranges(model), sort_keys=True),
        "batch_coupled_layers": json.dumps(batch_coupled),
    }


def input_value_ranges(model: Any) -> dict[str, list[int]]:
    """``{input name: [low, high]}`` for inputs that layers read as indices (Embedding):
    the values, truncated toward zero, they accept. The service checks requests against
    it, so an out-of-range index is a clear 400 rather than an onnxruntime failure."""
    ranges: dict[str, list[int]] = {}
    for tensor, layer in zip(model.inputs, model.input_layers, strict=True):
        accepted = model.reader_range(tensor, "accepted_input_range")
        if accepted is not None:
            ranges[layer.name] = list(accepted)
    return ranges


def save_onnx(onnx_model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Write atomically: the file appears whole or not at all (its folder is made if
    missing). A path that cannot be written is an :class:`ExportError` naming it."""
    target = Path(path)
    if target.is_dir():
        raise ExportError(f"{target} is a directory: expected the path of the .onnx file to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise ExportError(f"Cannot write {target}: {exc}") from exc
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(onnx_model.SerializeToString())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ExportError(f"Cannot write {target}: {exc}") from exc
        raise
