"""Checking a request against a served model without running it: validation that lists
every problem, and the concrete output shapes the request would produce (ONNX shape
inference on the model's graph, kept without its weights)."""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import onnx
from onnx import TensorProto

from layerserve.service.datatypes import V2_TO_NUMPY
from layerserve.service.errors import InvalidInput, ValidationFailed
from layerserve.service.protocols import v2, v2_tensors
from layerserve.service.runtime import LoadedModel, TensorSpec

log = logging.getLogger("layerserve.service")
T = TypeVar("T")
MAX_NESTING = 100
SHAPE_CACHE_SIZE = 64
SMALL_TENSOR = 64  # elements; smaller floating-point tensors keep their values
# Weights stripped from the graph kept for shape inference; shape tensors (integers)
# stay, since inference reads their values.
_WEIGHT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
_ACCEPTED_LEAVES = {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}

MAX_LISTED_PROBLEMS = 50


class PerModel:
    """Values derived from a loaded model version, dropped when the version is."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, Any]] = {}
        self._lock = threading.Lock()

    def get(self, model: LoadedModel, build: Callable[[LoadedModel], T]) -> T:
        key = id(model)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0]() is model:
            return entry[1]
        value = build(model)

        def forget(_: weakref.ref, key: int = key) -> None:
            self._entries.pop(key, None)

        with self._lock:
            self._entries[key] = (weakref.ref(model, forget), value)
        return value


# ---- validation ----------------------------------------------------------------------
@dataclass
class _Described:
    name: str
    shape: list[int] | None
    datatype: str | None
    fits_rank: bool = False  # a known input whose rank is the model's


def validate_request(model: LoadedModel, document: Any, limit: int) -> dict[str, Any]:
    """``{"model_name", "model_version", "valid": true, "outputs"}`` for a request that
    fits ``model``, else ``ValidationFailed`` listing every problem. Nothing runs."""
    problems: list[str] = []
    described = _described_inputs(model, document, limit, problems)
    if isinstance(document, dict):
        try:
            v2.request_id(document)
        except InvalidInput as exc:
            problems.append(str(exc))
    wanted = _requested_outputs(model, document, problems)
    _check_batches(model, [d for d in described if d.fits_rank], problems)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        if len(problems) > MAX_LISTED_PROBLEMS:  # a bounded answer to a hostile request
            hidden = len(problems) - MAX_LISTED_PROBLEMS
            problems = [*problems[:MAX_LISTED_PROBLEMS], f"... and {hidden} more"]
        raise ValidationFailed(
            f"the request does not fit model '{model.name}' version {model.version} "
            f"({count}): " + "; ".join(problems),
            problems,
        )
    shapes = {d.name: tuple(d.shape or ()) for d in described}
    return {
        "model_name": model.name,
        "model_version": model.version,
        "valid": True,
        "outputs": output_shapes(model, shapes, wanted),
    }


def _described_inputs(
    model: LoadedModel, document: Any, limit: int, problems: list[str]
) -> list[_Described]:
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        problems.append(
            "the request must be a JSON object with an 'inputs' array of "
            '{"name", "shape", "datatype"} objects ("data" optional)'
        )
        return []
    described: list[_Described] = []
    seen: set[str] = set()
    for index, entry in enumerate(document["inputs"]):
        item = _describe(index, entry, problems)
        if item is None:
            continue
        if item.name in seen:
            problems.append(f"input '{item.name}' is given more than once")
            continue
        seen.add(item.name)
        spec = next((s for s in model.inputs if s.name == item.name), None)
        if spec is None:
            problems.append(
                f"unexpected input '{item.name}' for model '{model.name}'; expected inputs: "
                f"{[s.name for s in model.inputs]}"
            )
        else:
            _check_against(model, spec, item, problems)
        _check_data(entry, item, limit, problems, model if spec is not None else None)
        described.append(item)
    for spec in model.inputs:
        if spec.name not in seen:
            problems.append(
                f"missing input '{spec.name}' (datatype {spec.datatype}, shape {list(spec.shape)})"
            )
    return described


def _describe(index: int, entry: Any, problems: list[str]) -> _Described | None:
    if not isinstance(entry, dict):
        problems.append(f"inputs[{index}] must be an object with 'name', 'shape' and 'datatype'")
        return None
    name = entry.get("name")
    if not isinstance(name, str):
        problems.append(f"inputs[{index}] has no 'name' string")
        return None
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        problems.append(
            f"input '{name}': 'shape' must be a list of non-negative integers, received {shape!r}"
        )
        shape = None
    datatype = entry.get("datatype")
    if datatype == "STRING":
        datatype = "BYTES"  # a spelling some clients use for BYTES
    if not isinstance(datatype, str) or datatype not in V2_TO_NUMPY:
        problems.append(
            f"input '{name}': unknown datatype {datatype!r}; expected one of "
            f"{', '.join(V2_TO_NUMPY)}"
        )
        datatype = None
    return _Described(name, shape, datatype)


def _check_against(
    model: LoadedModel, spec: TensorSpec, item: _Described, problems: list[str]
) -> None:
    if item.datatype is not None and item.datatype != spec.datatype:
        problems.append(model.datatype_mismatch(item.name, item.datatype, spec.datatype))
    if item.shape is None:
        return
    expected = list(spec.shape)
    if len(item.shape) != len(expected):
        hint = ""
        if len(item.shape) + 1 == len(expected):
            hint = f" (the first dimension is the batch: add it, e.g. {[1, *item.shape]})"
        problems.append(
            f"input '{item.name}': expected rank {len(expected)} (shape {expected}), received "
            f"rank {len(item.shape)} (shape {item.shape}){hint}"
        )
        return
    item.fits_rank = True
    for axis, (want, got) in enumerate(zip(expected, item.shape, strict=True)):
        if want >= 0 and want != got:
            problems.append(
                f"input '{item.name}' dimension {axis}: expected {want}, received {got} "
                f"(expected shape {expected}, received {item.shape})"
            )


def _check_data(
    entry: dict, item: _Described, limit: int, problems: list[str], model: LoadedModel | None
) -> None:
    """The problems of an input's ``data``; once its elements are of the right count and
    kinds, its values are read as inference reads them (``model``: the model has the
    input), so that whatever inference would refuse (a value past the datatype's range,
    an index past an Embedding's table) is listed too."""
    if item.shape is None:
        return
    count = math.prod(item.shape)
    if item.datatype is not None and item.datatype != "BYTES":
        size = count * V2_TO_NUMPY[item.datatype].itemsize
        if size > limit:
            problems.append(
                f"input '{item.name}' of shape {item.shape} takes {size} bytes, over the "
                f"maximum request size of {limit} bytes"
            )
    if "data" not in entry:
        return
    data = entry["data"]
    if not isinstance(data, list):
        problems.append(
            f"input '{item.name}': 'data' must be a JSON array (nested or flat), "
            f"received {type(data).__name__}"
        )
        return
    try:
        leaves = list(_leaves(data, 0))
    except RecursionError:
        problems.append(f"input '{item.name}': 'data' is nested deeper than {MAX_NESTING} levels")
        return
    if len(leaves) != count:
        problems.append(
            f"input '{item.name}': 'data' has {len(leaves)} elements, shape {item.shape} "
            f"needs {count}"
        )
    if item.datatype is not None:
        wrong = next((v for v in leaves if not _fits(v, item.datatype)), _NOTHING)
        if wrong is not _NOTHING:
            wanted = (
                "strings"
                if item.datatype == "BYTES"
                else _ACCEPTED_LEAVES[V2_TO_NUMPY[item.datatype].kind]
            )
            problems.append(
                f"input '{item.name}': datatype {item.datatype} needs JSON {wanted} in "
                f"'data', received {wrong!r}"
            )
            return
    if item.datatype == "FP16":
        problems.append(str(v2.fp16_in_json(item.name)))
        return
    if len(leaves) != count or item.datatype is None:
        return
    try:
        dtype = V2_TO_NUMPY[item.datatype]
        array = v2_tensors.read_json_data(item.name, data, item.datatype, dtype, item.shape)
        if model is not None and dtype == model.input_spec(item.name).dtype:
            model.check_values(item.name, array)
    except InvalidInput as exc:
        problems.append(str(exc))


_NOTHING = object()


def _leaves(value: list, depth: int) -> Iterator[Any]:
    if depth > MAX_NESTING:
        raise RecursionError
    for item in value:
        if isinstance(item, list):
            yield from _leaves(item, depth + 1)
        else:
            yield item


def _fits(value: Any, datatype: str) -> bool:
    kind = V2_TO_NUMPY[datatype].kind
    if datatype == "BYTES":
        return isinstance(value, str)
    if kind == "b":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind in "iu":
        return isinstance(value, int)  # its range: read_json_data, in inference's words
    return isinstance(value, (int, float))


def _check_batches(model: LoadedModel, described: list[_Described], problems: list[str]) -> None:
    """The rules of inference: when the model batches, one batch size (first dimension)
    for all inputs, at most its max_batch_size."""
    if not model.batched:
        return
    batches = {d.name: (d.shape[0] if d.shape else 1) for d in described}
    if len(set(batches.values())) > 1:
        listed = ", ".join(f"'{name}' {rows}" for name, rows in batches.items())
        problems.append(f"inputs have different batch sizes (first dimension): {listed}")
    limit = model.config.max_batch_size
    over = {name: rows for name, rows in batches.items() if rows > limit}
    if over:
        listed = ", ".join(f"'{name}' {rows}" for name, rows in over.items())
        problems.append(
            f"batch size over the max_batch_size {limit} of model '{model.name}': {listed}"
        )


def _requested_outputs(model: LoadedModel, document: Any, problems: list[str]) -> list[str]:
    names = [s.name for s in model.outputs]
    wanted = document.get("outputs") if isinstance(document, dict) else None
    if wanted is None:
        return names
    if not isinstance(wanted, list):
        problems.append("'outputs' must be an array of {\"name\"} objects")
        return names
    chosen = []
    for index, entry in enumerate(wanted):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            problems.append(f"outputs[{index}] has no 'name' string")
        elif name not in names:
            problems.append(
                f"unexpected output '{name}' for model '{model.name}'; available outputs: {names}"
            )
        elif name in chosen:
            problems.append(f"output '{name}' is requested more than once")
        else:
            chosen.append(name)
    return chosen


# ---- output shapes -------------------------------------------------------------------
class _ShapeOracle:
    """The model's graph without its weights, for shape inference; remembers the
    answers for recent input shapes."""

    def __init__(self, model: LoadedModel) -> None:
        self.graph: onnx.ModelProto | None = None
        try:
            proto = onnx.load(str(model.path), load_external_data=False)
            _strip_weights(proto.graph)
            self.graph = proto
        except Exception as exc:  # noqa: BLE001 - unreadable graph: the spec answers alone
            log.warning("no shape inference for %s: %s", model.path, exc)
        self._answers: OrderedDict[tuple, dict[str, list[int | None] | None]] = OrderedDict()
        self._lock = threading.Lock()

    def infer(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, list[int | None] | None]:
        key = tuple(sorted(shapes.items()))
        with self._lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]
        answer = self._infer(shapes)
        with self._lock:
            self._answers[key] = answer
            while len(self._answers) > SHAPE_CACHE_SIZE:
                self._answers.popitem(last=False)
        return answer

    def _infer(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, list[int | None] | None]:
        if self.graph is None:
            return {}
        proto = onnx.ModelProto()
        proto.CopyFrom(self.graph)
        for value in proto.graph.input:
            if value.name in shapes:
                dims = value.type.tensor_type.shape.dim
                del dims[:]
                for size in shapes[value.name]:
                    dims.add().dim_value = size
        try:
            inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
        except Exception as exc:  # noqa: BLE001 - onnx raises several kinds; fall back
            log.info("shape inference failed for %s: %s", proto.graph.name, exc)
            return {}
        answer: dict[str, list[int | None] | None] = {}
        for value in inferred.graph.output:
            tensor = value.type.tensor_type
            answer[value.name] = (
                [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
                if tensor.HasField("shape")
                else None
            )
        return answer


def _strip_weights(graph: onnx.GraphProto) -> None:
    """Drop the values of floating-point tensors (initializers and Constant nodes, in
    subgraphs too); shape inference needs only their types and dims."""
    tensors = list(graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                tensors.append(attribute.t)
            elif attribute.type == onnx.AttributeProto.GRAPH:
                _strip_weights(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    _strip_weights(subgraph)
    for tensor in tensors:
        if tensor.data_type in _WEIGHT_TYPES and math.prod(tensor.dims) > SMALL_TENSOR:
            for field in ("raw_data", "float_data", "double_data", "int32_data"):
                tensor.ClearField(field)


_oracles = PerModel()


def output_shapes(
    model: LoadedModel, input_shapes: dict[str, tuple[int, ...]], names: list[str]
) -> list[dict[str, Any]]:
    """``[{"name", "datatype", "shape"}]`` for ``names`` given concrete input shapes:
    ONNX shape inference, else the model's output spec with the batch size filled in;
    -1 where neither decides."""
    inferred = _oracles.get(model, _ShapeOracle).infer(input_shapes)
    batches = {shape[0] for shape in input_shapes.values() if shape}
    batch = batches.pop() if len(batches) == 1 else None
    result = []
    for spec in model.outputs:
        if spec.name not in names:
            continue
        found = inferred.get(spec.name)
        if found is None or len(found) != len(spec.shape):
            found = [None] * len(spec.shape)
        dims = []
        for axis, (known, declared) in enumerate(zip(found, spec.shape, strict=True)):
            if known is not None:
                dims.append(known)
            elif declared >= 0:
                dims.append(declared)
            elif axis == 0 and batch is not None:
                dims.append(batch)
            else:
                dims.append(-1)
        result.append({"name": spec.name, "datatype": spec.datatype, "shape": dims})
    order = {name: i for i, name in enumerate(names)}
    return sorted(result, key=lambda entry: order[entry["name"]])


__all__ = ["PerModel", "output_shapes", "validate_request"]
