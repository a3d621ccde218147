"""Open Inference Protocol (KServe V2) inference requests and responses, with the
binary tensor data extension in both directions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from layerserve.service.datatypes import from_little_endian, numpy_dtype, v2_datatype
from layerserve.service.errors import InvalidInput, NotSupported, PayloadTooLarge
from layerserve.service.protocols import json_floats
from layerserve.service.protocols.v2_tensors import (
    read_binary,
    read_json_data,
    text_array,
    to_binary,
)
from layerserve.service.runtime import LoadedModel

HEADER_LENGTH = "inference-header-content-length"
HEADER_LENGTH_BYTES = HEADER_LENGTH.encode()


def header_length(values: list[str]) -> int | None:
    """The ``Inference-Header-Content-Length`` header (``values``: each time the request
    gives it): where the JSON header of a binary request ends (None: the whole body is
    JSON). Like Content-Length, it frames the body, so only plain digits are read (not
    Python's ``+12`` or ``1_2``), and a request giving two different lengths is refused."""
    if not values:
        return None
    if len(set(values)) > 1:
        raise InvalidInput(
            f"Inference-Header-Content-Length is given {len(values)} times with different "
            f"values ({', '.join(repr(v) for v in values)}); give it once"
        )
    value = values[0].strip()
    # at most 18 digits: a longer one frames no body this server takes, and Python refuses
    # to read past 4,300 digits
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise InvalidInput(
            f"invalid Inference-Header-Content-Length: {values[0]!r}; expected the JSON "
            "header's length in bytes, in decimal digits"
        )
    return int(value)


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None


@dataclass
class V2Request:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None
    parameters: dict[str, Any] = field(default_factory=dict)
    binary_output_default: bool = False

    @property
    def timeout_us(self) -> int | None:
        value = self.parameters.get("timeout")
        return value if isinstance(value, int) and value > 0 else None


def parse_json(text: bytes) -> Any:
    """The JSON document; NaN, Infinity and -Infinity are accepted, as Triton does."""
    try:
        return json_floats.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"failed to parse the request JSON buffer: {exc}") from exc


def decode_request(
    body: bytes, header_length: int | None, model: LoadedModel, limit: int
) -> V2Request:
    if header_length == 0:
        return _raw_binary_request(body, model)
    if header_length is not None and not 0 < header_length <= len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length {header_length} does not fit "
            f"the body of {len(body)} bytes"
        )
    json_part = body[:header_length] if header_length else body
    binary = memoryview(body)[header_length:] if header_length else memoryview(b"")
    document = parse_json(json_part)
    booleans = json_floats.may_hold_booleans(json_part)
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise InvalidInput("the inference request must be a JSON object with an 'inputs' array")
    parameters = _parameters(document.get("parameters"), "request")
    offset = 0
    inputs: dict[str, np.ndarray] = {}
    for entry in document["inputs"]:
        name, array, used = _decode_input(entry, binary, offset, limit, model, booleans)
        if name in inputs:
            raise InvalidInput(f"input '{name}' is given more than once")
        inputs[name] = array
        offset += used
    if offset != len(binary):
        raise InvalidInput(
            f"the request has {len(binary) - offset} bytes of binary data "
            "that no input claims (check binary_data_size)"
        )
    schedule_parameters(parameters)
    return V2Request(
        request_id(document),
        inputs,
        _requested_outputs(document.get("outputs"), model),
        parameters,
        _flag(parameters, "binary_data_output", "request") or False,
    )


def request_id(document: dict[str, Any]) -> str | None:
    """A V2 request's ``id``: a string when given."""
    value = document.get("id")
    if value is not None and not isinstance(value, str):
        raise InvalidInput("'id' must be a string")
    return value


def fp16_in_json(name: str) -> InvalidInput:
    """FP16 values in JSON are refused, as Triton refuses them (inference and :validate)."""
    return InvalidInput(
        f"input '{name}': receiving FP16 data via JSON is not supported; "
        "send it with the binary tensor data extension"
    )


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"'parameters' of the {where} must be an object")
    return value


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"parameter '{key}' of the {where} must be true or false, got {value!r}")
    return value


def schedule_parameters(parameters: dict[str, Any]) -> int | None:
    """The schedule_policy extension's request parameters (REST and gRPC), checked; the
    ``timeout`` returned (microseconds). ``priority`` must be a non-negative integer; as
    in Triton for a model without priority levels (layerserve's models have none), every
    request has the same one."""
    priority = parameters.get("priority")
    if priority is not None and not _is_count(priority):
        raise InvalidInput(
            f"request parameter 'priority' must be a non-negative integer, got {priority!r}"
        )
    timeout = parameters.get("timeout")
    if timeout is not None and not _is_count(timeout):
        raise InvalidInput(
            f"request parameter 'timeout' must be a non-negative integer number of "
            f"microseconds, got {timeout!r}"
        )
    return timeout


def _is_count(value: Any) -> bool:
    """A JSON non-negative integer (``true`` is not one, though Python's bool is an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def input_dtype(
    model: LoadedModel, name: str, shape: list[int], datatype: str, limit: int
) -> np.dtype:
    """The NumPy dtype of a V2 input (REST or gRPC), once its datatype, rank and size are
    checked against the model and the byte ``limit``, before any data is read."""
    if datatype == "BF16":
        raise InvalidInput(f"input '{name}': BF16 is not supported by this server")
    dtype = numpy_dtype(datatype)
    model.check_datatype(name, dtype)
    model.check_rank(name, len(shape))
    if dtype.kind != "O":  # (a BYTES input's size is its data's, known as it is read)
        check_input_size(name, shape, dtype.itemsize, limit)
    model.check_shape(name, shape, dtype.itemsize)
    return dtype


def check_input_size(name: str, shape: list[int], itemsize: int, limit: int) -> None:
    """:class:`PayloadTooLarge` for an input of ``shape`` whose values would take more
    than ``limit`` bytes (``itemsize`` each: for BYTES made from one value, a reference)."""
    size = math.prod(shape) * itemsize
    if size > limit:
        raise PayloadTooLarge(
            f"input '{name}' of shape {shape} ({size} bytes) exceeds the maximum allowed "
            f"input size of {limit} bytes"
        )


def _decode_input(
    entry: Any,
    binary: memoryview,
    offset: int,
    limit: int,
    model: LoadedModel,
    booleans: bool = True,
) -> tuple[str, np.ndarray, int]:
    if not isinstance(entry, dict):
        raise InvalidInput("each entry of 'inputs' must be an object")
    name, shape, datatype = entry.get("name"), entry.get("shape"), entry.get("datatype")
    if not isinstance(name, str):
        raise InvalidInput("an input has no 'name' string")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInput(
            f"input '{name}' needs 'shape' as a list of non-negative integers, got {shape!r}"
        )
    if not isinstance(datatype, str):
        raise InvalidInput(f"input '{name}' has no 'datatype' string")
    dtype = input_dtype(model, name, shape, datatype, limit)
    parameters = _parameters(entry.get("parameters"), f"input '{name}'")
    refuse_shared_memory(parameters, f"input '{name}'")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not _is_count(size):
            raise InvalidInput(
                f"input '{name}': binary_data_size must be a non-negative integer number of "
                f"bytes, got {size!r}"
            )
        if entry.get("data") not in (None, []):  # an empty or null 'data' says nothing
            raise InvalidInput(
                f"input '{name}' has both 'data' and a binary_data_size; send its values one "
                "way: in 'data', or in the binary data after the JSON header"
            )
        if offset + size > len(binary):
            raise InvalidInput(
                f"input '{name}': binary_data_size {size!r} does not fit the "
                f"{len(binary) - offset} bytes of binary data left"
            )
        chunk = binary[offset : offset + size]
        return name, read_binary(name, chunk, datatype, dtype, shape), size
    if "data" not in entry:
        raise InvalidInput(f"input '{name}' has neither 'data' nor a binary_data_size")
    if datatype == "FP16":
        raise fp16_in_json(name)
    return name, read_json_data(name, entry["data"], datatype, dtype, shape, booleans), 0


def _raw_binary_request(body: bytes, model: LoadedModel) -> V2Request:
    """``Inference-Header-Content-Length: 0``: the body is one input's bytes, batch 1."""
    if len(model.inputs) != 1:
        raise InvalidInput(
            f"a raw binary request needs a model with exactly one input; "
            f"'{model.name}' has {len(model.inputs)}"
        )
    spec = model.inputs[0]
    if not body:
        raise InvalidInput(
            f"a raw binary request (Inference-Header-Content-Length 0) needs the bytes "
            f"of input '{spec.name}'; the body is empty"
        )
    if spec.datatype == "BYTES":
        dims = [1 if d < 0 else d for d in spec.shape]
        if math.prod(dims) != 1:
            raise InvalidInput(
                f"a raw binary request holds one BYTES element, but input '{spec.name}' "
                f"has shape {list(spec.shape)}"
            )
        array = text_array(spec.name, [body]).reshape(dims)
        return V2Request(None, {spec.name: array}, None, {}, True)
    dims = list(spec.shape)
    fixed = math.prod(d for d in dims if d >= 0) * spec.dtype.itemsize
    unknown = [i for i, d in enumerate(dims) if d < 0]
    if len(unknown) > 1 and model.batched:
        unknown = unknown[1:]
        dims[0] = 1
    # with no dimension left to deduce, the body is the input's bytes exactly
    if len(unknown) > 1 or fixed == 0 or (len(body) % fixed if unknown else len(body) != fixed):
        raise InvalidInput(
            f"cannot deduce the shape of input '{spec.name}' {list(spec.shape)} "
            f"from {len(body)} bytes of raw binary data"
        )
    for index in unknown:
        dims[index] = len(body) // fixed
    array = from_little_endian(body, spec.dtype, f"input '{spec.name}'")
    return V2Request(None, {spec.name: array.reshape(dims)}, None, {}, True)


def _requested_outputs(value: Any, model: LoadedModel) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be an array")
    requested = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidInput("each requested output needs a 'name' string")
        model.output_spec(entry["name"])
        check_requested_once(entry["name"], [r.name for r in requested])
        parameters = _parameters(entry.get("parameters"), f"output '{entry['name']}'")
        if "classification" in parameters:
            raise NotSupported(
                f"output '{entry['name']}': the classification extension is not supported"
            )
        refuse_shared_memory(parameters, f"output '{entry['name']}'")
        binary = _flag(parameters, "binary_data", f"output '{entry['name']}'")
        requested.append(RequestedOutput(entry["name"], binary))
    return requested


SHARED_MEMORY_PARAMETERS = (
    "shared_memory_region",
    "shared_memory_byte_size",
    "shared_memory_offset",
)


def refuse_shared_memory(parameters: Mapping[str, Any], where: str) -> None:
    """A tensor naming a shared memory region (REST and gRPC): this server registers no
    region (its register calls are refused), so such an input would be read from nowhere
    and such an output answered in the response, where its client does not look."""
    named = [key for key in SHARED_MEMORY_PARAMETERS if key in parameters]
    if named:
        raise NotSupported(
            f"{where}: the shared memory extension is not supported (parameter "
            f"'{named[0]}'); send the tensor in the request and read it from the response"
        )


def check_requested_once(name: str, earlier: list[str]) -> None:
    """An output requested twice would come back twice: refused, as a repeated input is."""
    if name in earlier:
        raise InvalidInput(f"output '{name}' is requested more than once")


def encode_response(
    model: LoadedModel, request: V2Request, outputs: dict[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """``(body, json_length)``; ``json_length`` is None when no output is binary. Without
    ``outputs`` in the request, the model's own outputs: a ``<output>_mask`` output comes
    back only when asked for by name."""
    entries, chunks = [], []
    for name, binary in _answered(model, request):
        array = outputs[name]
        entry: dict[str, Any] = {
            "name": name,
            "datatype": v2_datatype(array.dtype),
            "shape": list(array.shape),
        }
        if binary:
            chunk = to_binary(array)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = _json_data(array)
        entries.append(entry)
    document: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request.id is not None:
        document["id"] = request.id
    document["outputs"] = entries
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def _answered(model: LoadedModel, request: V2Request) -> list[tuple[str, bool]]:
    """The outputs an answer holds, in order, and whether each is binary."""
    wanted = request.outputs or [RequestedOutput(name) for name in model.value_outputs]
    default = request.binary_output_default
    return [(item.name, default if item.binary is None else item.binary) for item in wanted]


def text_values(model: LoadedModel, request: V2Request, outputs: dict[str, np.ndarray]) -> int:
    """The values :func:`encode_response` writes as JSON (binary outputs cost a copy)."""
    return sum(outputs[name].size for name, binary in _answered(model, request) if not binary)


def _json_data(array: np.ndarray) -> Any:
    if array.dtype == object:
        return [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            for v in array.reshape(-1)
        ]
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    flat = np.ascontiguousarray(array).reshape(-1)
    return json_floats.with_tokens(flat) if flat.dtype.kind == "f" else flat


def tensor_metadata(model: LoadedModel, versions: list[str]) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": versions,
        "platform": "onnxruntime_onnx",
        "inputs": [s.as_dict() for s in model.inputs],
        "outputs": [s.as_dict() for s in model.outputs],
    }


def config_type(datatype: str) -> str:
    """A V2 datatype as Triton's ModelConfig ``DataType`` names it: BYTES is ``TYPE_STRING``
    there (model_config.proto), the others are ``TYPE_`` and the V2 name."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def model_configuration(model: LoadedModel) -> dict[str, Any]:
    """The model configuration in Triton's ModelConfig JSON form (REST and gRPC)."""
    config = model.config
    batched = model.batched

    def dims(spec: Any) -> list[int]:
        return list(spec.shape[1:] if batched else spec.shape)

    return {
        "name": model.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": config.max_batch_size,
        "version_policy": config.version_policy,
        "input": [
            {"name": s.name, "data_type": config_type(s.datatype), "dims": dims(s)}
            for s in model.inputs
        ],
        "output": [
            {"name": s.name, "data_type": config_type(s.datatype), "dims": dims(s)}
            for s in model.outputs
        ],
        "dynamic_batching": {
            "max_queue_delay_microseconds": config.max_queue_delay_us,
            "default_queue_policy": {
                "max_queue_size": config.max_queue_size,
                "default_timeout_microseconds": config.queue_timeout_ms * 1000,
                "allow_timeout_override": True,
            },
        }
        if model.merges_requests
        else None,
        "instance_group": [
            {
                "count": config.instances,
                "kind": "KIND_GPU" if "CUDAExecutionProvider" in model.providers else "KIND_CPU",
            }
        ],
        "parameters": {
            "intra_op_thread_count": {"string_value": str(config.intra_op_threads)},
            "execution_providers": {"string_value": ",".join(model.providers)},
        },
    }
