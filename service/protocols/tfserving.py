"""TensorFlow Serving REST ``:predict`` in row (``instances`` -> ``predictions``) and
columnar (``inputs`` -> ``outputs``) formats (model status and signature metadata are in
``tfserving_models``).

Protocol-neutral: it turns request bodies into named NumPy tensors for
``DataPlane.infer`` and model outputs back into TF Serving's JSON, following
``tensorflow_serving/util/json_tensor.cc``: ``{"b64": ...}`` for bytes, output names
ending in ``_bytes`` written as b64, and the ``NaN``/``Infinity``/``-Infinity`` tokens
accepted in requests and written for non-finite outputs. A model's ``<output>_mask``
outputs are returned only when the request's ``output_filter`` names them, so that a
one-output Keras model answers plain lists, as TF Serving does.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson

from layerserve.service.datatypes import to_float
from layerserve.service.errors import InvalidInput, NotSupported
from layerserve.service.protocols import json_floats
from layerserve.service.protocols.json_floats import snippet
from layerserve.service.protocols.tfserving_models import SIGNATURE
from layerserve.service.runtime import MAX_RANK, LoadedModel, TensorSpec

METHODS = ("predict", "classify", "regress")
BYTES_SUFFIX = "_bytes"
# The request key naming the outputs to return, after the gRPC PredictRequest field.
OUTPUT_FILTER = "output_filter"
# What each model dtype kind accepts from the JSON numbers NumPy inferred.
_ACCEPTED_KINDS = {"f": "iuf", "i": "iuf", "u": "iuf", "b": "b"}


@dataclass
class PredictRequest:
    format: Literal["row", "columnar"]
    inputs: dict[str, np.ndarray]
    # The outputs to return: the model's own by default (not its ``<output>_mask``
    # outputs, so a one-output Keras model answers plain lists, as TF Serving does).
    outputs: list[str] = field(default_factory=list)


# ---- predict request ---------------------------------------------------------------
def check_method(method: str, path: str) -> None:
    if method not in METHODS:
        raise InvalidInput(
            f"Malformed request: POST {path}; expected one of {', '.join(':' + m for m in METHODS)}"
        )


def check_supported(method: str, model: LoadedModel) -> None:
    if method != "predict":
        raise NotSupported(
            f":{method} is not supported for model '{model.name}': it needs a "
            "tf.Example parsing signature, which ONNX models do not have; use :predict"
        )


def parse_json(body: bytes) -> Any:
    """The JSON document; NaN, Infinity and -Infinity are accepted."""
    try:
        return json_floats.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"JSON Parse error: {exc}") from exc


def decode_predict(body: bytes, model: LoadedModel) -> PredictRequest:
    document = parse_json(body)
    booleans = json_floats.may_hold_booleans(body)
    if not isinstance(document, dict):
        raise InvalidInput(
            "the request body must be a JSON object with an 'instances' (row format) "
            "or an 'inputs' (columnar format) key"
        )
    _check_signature(document)
    outputs = _output_filter(document.get(OUTPUT_FILTER), model)
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise InvalidInput(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"
        )
    if has_instances:
        rows = _from_instances(document["instances"], model, booleans)
        return PredictRequest("row", rows, outputs)
    if has_inputs:
        columns = _from_inputs(document["inputs"], model, booleans)
        return PredictRequest("columnar", columns, outputs)
    raise InvalidInput("Missing 'inputs' or 'instances' key")


def _output_filter(value: Any, model: LoadedModel) -> list[str]:
    """``"output_filter": [names]``: exactly these outputs (masks included when named);
    absent: the model's outputs without its ``<output>_mask`` outputs."""
    if value is None:
        return model.value_outputs
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(n, str) for n in value)
        or len(set(value)) != len(value)
    ):
        raise InvalidInput(
            f"'{OUTPUT_FILTER}' must be a non-empty list of distinct output names of "
            f"model '{model.name}', e.g. {[s.name for s in model.outputs]}; got {snippet(value)}"
        )
    for name in value:
        model.output_spec(name)
    return value


def _check_signature(document: dict[str, Any]) -> None:
    name = document.get("signature_name")
    if name is None or name in ("", SIGNATURE):
        return
    if not isinstance(name, str):
        raise InvalidInput("'signature_name' key must be a string value")
    raise InvalidInput(
        f'Serving signature name: "{name}" not found in signature def; '
        f'this server has one signature, "{SIGNATURE}"'
    )


def _from_instances(instances: Any, model: LoadedModel, booleans: bool) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise InvalidInput("Expecting 'instances' to be a list/array (one entry per example)")
    if not instances:
        raise InvalidInput("No values in 'instances' array")
    names = [s.name for s in model.inputs]
    named = _is_object(instances[0])
    if not named and len(names) > 1:
        raise InvalidInput(
            f"instances is a plain list, but expecting list of objects as model "
            f"'{model.name}' has {len(names)} inputs: {names}"
        )
    if named:
        for index, item in enumerate(instances):
            if not _is_object(item):
                raise InvalidInput(
                    f"Expecting object but got {_json_type(item)} at item {index} of "
                    f"'instances'; each instance must map {names} to values"
                )
            if set(item) != set(names):
                unknown = sorted(set(item) - set(names))
                missing = sorted(set(names) - set(item))
                raise InvalidInput(
                    f"instance {index} of 'instances' for model '{model.name}' must have "
                    f"exactly the keys {names}; missing {missing}, unexpected {unknown}"
                )
        columns = {name: [item[name] for item in instances] for name in names}
    else:
        for index, item in enumerate(instances):
            if _is_object(item):
                raise InvalidInput(
                    f"Expecting value/list but got object at item {index} of 'instances'"
                )
        columns = {names[0]: instances}
    tensors = {}
    for spec in model.inputs:
        if not spec.shape:
            # instances are rows: a scalar input has none to stack
            raise InvalidInput(
                f"input '{spec.name}' of model '{model.name}' is a scalar (shape []), which "
                "the row format ('instances') cannot give; send it in the columnar format, "
                f'{{"inputs": {{"{spec.name}": 5}}}}'
            )
        array = _to_array(columns[spec.name], spec, model, True, booleans)
        per_instance = list(spec.shape[1:])
        if array.ndim != len(spec.shape):
            raise InvalidInput(
                f"unexpected shape for input '{spec.name}' for model '{model.name}': each "
                f"entry of 'instances' is one example and must have shape {per_instance} "
                f"(the model expects {list(spec.shape)}, batch first), got entries of "
                f"shape {list(array.shape[1:])}"
            )
        tensors[spec.name] = array
    return tensors


def _from_inputs(inputs: Any, model: LoadedModel, booleans: bool) -> dict[str, np.ndarray]:
    names = [s.name for s in model.inputs]
    if not _is_object(inputs):
        if len(names) > 1:
            raise InvalidInput(
                f"inputs is a plain value/list, but expecting an object as model "
                f"'{model.name}' has {len(names)} inputs: {names}"
            )
        return {names[0]: _to_array(inputs, model.inputs[0], model, False, booleans)}
    check_input_names(inputs, model)
    return {s.name: _to_array(inputs[s.name], s, model, False, booleans) for s in model.inputs}


def check_input_names(given: Any, model: LoadedModel) -> None:
    """The columnar ``inputs`` (REST) or ``inputs`` map (gRPC) names the model's inputs,
    all of them."""
    names = [s.name for s in model.inputs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InvalidInput(
            f"unexpected input {unknown[0]!r} in 'inputs' for model '{model.name}'; "
            f"expected inputs: {names}"
        )
    for name in names:
        if name not in given:
            raise InvalidInput(
                f"Missing named input: '{name}' in 'inputs' object for model "
                f"'{model.name}'; expected inputs: {names}"
            )


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _to_array(
    value: Any, spec: TensorSpec, model: LoadedModel, rows: bool, booleans: bool
) -> np.ndarray:
    """One input's values; ``booleans``: False when the request's text names no ``true``
    or ``false`` (then none can hide among numbers)."""
    where = f"input '{spec.name}' of model '{model.name}'"
    model.check_rank(spec.name, _depth(value))
    if spec.datatype in ("BYTES", "STRING"):
        shape, leaves = _walk(value, where, rows)
        array = np.empty(len(leaves), dtype=object)
        array[:] = [_text(leaf, where) for leaf in leaves]
        return array.reshape(shape)
    dtype = spec.dtype
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        array = None
    accepted = _ACCEPTED_KINDS.get(dtype.kind, "")
    if array is None or array.dtype.kind not in accepted:
        _walk(value, where, rows)  # raises for ragged nesting
        _reject_leaf(value, spec, where)  # raises naming the first value of the wrong kind
        raise InvalidInput(f"{where}: values do not fit {spec.datatype}")
    if booleans and dtype.kind != "b" and json_floats.first_boolean(value, array) is not None:
        _reject_leaf(value, spec, where)  # NumPy read a true or false as 1 or 0
    if dtype.kind == "f" and dtype.itemsize >= 4:  # TF Serving reads no FP16 JSON
        _check_lossless(value, array, spec, where, rows)
    if dtype.kind in "iu" and array.dtype.kind == "f":
        # NumPy infers float64 for integers mixed with fractions or beyond int64 (2**63
        # beside 1): that would round every integer past 2**53 and wrap those past the
        # datatype's range, so the integers are read one by one, exactly.
        return _exact_integers(value, spec, where, rows)
    return _cast(array, spec, where)


def _check_lossless(
    value: Any, array: np.ndarray, spec: TensorSpec, where: str, rows: bool
) -> None:
    """A JSON integer for an FP32 or FP64 input must be at most 2**digits - 1 in magnitude
    (FP32: 16,777,215), as TF Serving's ``IsLosslessDecimal`` has it: past that, 16777217 would
    be served as 16777216. Numbers written with a fraction or exponent are floats already,
    and only their range is checked (``to_float``)."""
    most = 2 ** (np.finfo(spec.dtype).nmant + 1) - 1
    if not array.size or (array.min() >= -most and array.max() <= most):
        return  # the common case (False with a NaN too: then the values tell)
    if array.dtype.kind in "iu":
        outside = array[(array < -most) | (array > most)]
        beyond = [outside[0].item()] if outside.size else []
    else:  # integers among floats, which NumPy made floats: found in the values
        beyond = [
            leaf for leaf in _walk(value, where, rows)[1] if type(leaf) is int and abs(leaf) > most
        ]
    if beyond:
        raise InvalidInput(
            f"{where}: cannot convert JSON value {beyond[0]} to {spec.datatype} without loss "
            f"of precision: a JSON integer for a {spec.datatype} input is at most {most} in "
            "magnitude"
        )


def _exact_integers(value: Any, spec: TensorSpec, where: str, rows: bool) -> np.ndarray:
    """Integers for an INT or UINT input, each JSON integer as it was written; a number
    written with a fraction or exponent is taken when it is integral (``3.0``) and exact
    (below 2**53 in magnitude: from there on a double stands for more than one integer).
    The JSON parser reads an integer beyond 64 bits as such a float, so that limit also
    refuses those, which no 64-bit type holds."""
    shape, leaves = _walk(value, where, rows)
    exact = []
    for leaf in leaves:
        if isinstance(leaf, float):
            if not leaf.is_integer():  # also False for NaN and the infinities
                raise InvalidInput(
                    f"{where}: value {leaf!r} is not an integer; the model expects {spec.datatype}"
                )
            if abs(leaf) >= 2**53:
                raise InvalidInput(
                    f"{where}: value {leaf!r} does not fit {spec.datatype} exactly: beyond "
                    f"2**53 - 1, write integers as JSON integers within {spec.datatype}'s range"
                )
            leaf = int(leaf)
        elif isinstance(leaf, bool) or not isinstance(leaf, int):
            _reject_leaf(value, spec, where)
        exact.append(leaf)
    info = np.iinfo(spec.dtype)
    for leaf in exact:
        if not info.min <= leaf <= info.max:
            raise InvalidInput(f"{where}: value {leaf} does not fit {spec.datatype}")
    return np.array(exact, dtype=spec.dtype).reshape(shape)


def _depth(value: Any) -> int:
    """How deep lists nest, along first entries: the rank of a regular array (ragged
    values are refused later, naming the entry)."""
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    return depth


def _cast(array: np.ndarray, spec: TensorSpec, where: str) -> np.ndarray:
    dtype = spec.dtype
    if dtype.kind == "f":
        return to_float(array, dtype, spec.datatype, where)
    if dtype.kind in "iu":  # integers NumPy inferred exactly (floats: _exact_integers)
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            outside = array[(array < info.min) | (array > info.max)][0]
            raise InvalidInput(f"{where}: value {outside.item()!r} does not fit {spec.datatype}")
        return array.astype(dtype)
    return array.astype(dtype)


def _walk(value: Any, where: str, rows: bool) -> tuple[list[int], list[Any]]:
    """The shape and row-major leaves of nested lists; raises naming ragged entries."""
    leaves: list[Any] = []

    def shape_of(item: Any, path: str, depth: int) -> list[int]:
        if depth > MAX_RANK:
            raise InvalidInput(f"{where}: values are nested deeper than {MAX_RANK} levels")
        if not isinstance(item, list):
            leaves.append(item)
            return []
        shapes = [shape_of(sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item)]
        for i, sub in enumerate(shapes[1:], start=1):
            if sub != shapes[0]:
                kind = "instance" if rows and depth == 0 else "entry"
                raise InvalidInput(
                    f"{where}: ragged values: {kind} {path}[{i}] has shape {sub} but "
                    f"{path}[0] has shape {shapes[0]}; every {kind} must have the same shape"
                )
        return [len(item), *(shapes[0] if shapes else [])]

    root = "instances" if rows else "inputs"
    shape = shape_of(value, root, 0)
    return shape, leaves


def _reject_leaf(value: Any, spec: TensorSpec, where: str) -> None:
    expected = {"b": "true/false", "f": "numbers", "i": "integers", "u": "integers"}.get(
        spec.dtype.kind, spec.datatype
    )
    for leaf in _leaves(value):
        if spec.dtype.kind == "b":
            ok = isinstance(leaf, bool)
        else:
            ok = isinstance(leaf, (int, float)) and not isinstance(leaf, bool)
        if not ok:
            raise InvalidInput(
                f"{where}: JSON value {snippet(leaf)} of type {_json_type(leaf)} is not of "
                f"the expected type: the model expects {spec.datatype} ({expected})"
            )
        if isinstance(leaf, int) and spec.dtype.kind in "iu":
            info = np.iinfo(spec.dtype)
            if not info.min <= leaf <= info.max:
                raise InvalidInput(f"{where}: value {leaf} does not fit {spec.datatype}")
        if isinstance(leaf, int) and spec.dtype.kind == "f" and abs(leaf) >= 2**64:
            raise InvalidInput(f"{where}: value {leaf} does not fit {spec.datatype}")


def _leaves(value: Any) -> Any:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            yield item


def _text(leaf: Any, where: str) -> str:
    """A string element: JSON text, or ``{"b64": ...}`` bytes (onnxruntime's string
    tensors hold UTF-8 text)."""
    if isinstance(leaf, str):
        return leaf
    if not _is_b64(leaf):
        raise InvalidInput(
            f"{where}: JSON value {snippet(leaf)} of type {_json_type(leaf)} is not of "
            'the expected type: the model expects BYTES (strings or {"b64": "..."})'
        )
    try:
        raw = base64.b64decode(leaf["b64"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{where}: unable to base64 decode {snippet(leaf)}: {exc}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{where}: the b64 value decodes to bytes that are not UTF-8 text, which "
            f"onnxruntime string tensors require ({exc})"
        ) from exc


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "b64 object" if _is_b64(value) else "object"


# ---- predict response --------------------------------------------------------------
def answer_values(
    model: LoadedModel, request: PredictRequest, outputs: dict[str, np.ndarray]
) -> int:
    """The values :func:`encode_predict` writes as JSON."""
    return sum(outputs[name].size for name in request.outputs or model.value_outputs)


def encode_predict(
    model: LoadedModel, request: PredictRequest, outputs: dict[str, np.ndarray]
) -> bytes:
    names = request.outputs or model.value_outputs
    values = {name: _jsonable(name, outputs[name]) for name in names}
    if request.format == "columnar":
        body: Any = values[names[0]] if len(names) == 1 else values
        return _dumps({"outputs": body})
    rows = None
    for name in names:
        array = outputs[name]
        if array.ndim == 0 or (rows is not None and array.shape[0] != rows):
            raise InvalidInput(
                f"output '{name}' of model '{model.name}' has shape {list(array.shape)}, "
                "which has no batch dimension matching the other outputs, so it cannot "
                "be returned in row format; send 'inputs' (columnar format) instead"
            )
        rows = array.shape[0]
    if len(names) == 1:
        return _dumps({"predictions": values[names[0]]})
    return _dumps(
        {"predictions": [{name: values[name][i] for name in names} for i in range(rows or 0)]}
    )


def _dumps(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def _jsonable(name: str, array: np.ndarray) -> Any:
    """Something orjson writes as TF Serving would: an array, or nested lists."""
    if array.dtype == object or array.dtype.kind in "SU":
        as_b64 = name.endswith(BYTES_SUFFIX)
        items = [_string_out(v, as_b64) for v in array.reshape(-1)]
        return _nest(items, list(array.shape))
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    if array.ndim:  # (ascontiguousarray makes a scalar a list of one)
        array = np.ascontiguousarray(array)
    if array.dtype.kind == "f":
        return json_floats.with_tokens(array)
    if array.dtype.kind in "iu":
        # onnxruntime's 64-bit integers are NumPy's longlong, whose scalars (a row's value
        # in row format, a scalar output) orjson does not write; int64's it does.
        array = array.view(f"{array.dtype.kind}{array.dtype.itemsize}")
    return array[()] if array.ndim == 0 else array


def _string_out(value: Any, as_b64: bool) -> Any:
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    if as_b64:
        return {"b64": base64.b64encode(raw).decode("ascii")}
    return raw.decode("utf-8", "replace")


def _nest(items: list[Any], shape: list[int]) -> Any:
    if not shape:
        return items[0]
    if len(shape) == 1:
        return items
    step = len(items) // shape[0] if shape[0] else 0
    return [_nest(items[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]
