"""Open Inference Protocol (V2) gRPC messages to and from the protocol-neutral data plane:
``ModelInferRequest`` to named arrays, arrays to ``ModelInferResponse``, and the JSON
documents REST answers (metadata, configuration, statistics) as their messages.

Inputs come as ``raw_input_contents`` (little-endian bytes, one entry per input in order,
read with ``np.frombuffer`` without a copy) or typed ``contents``; outputs always go back
as ``raw_output_contents``, as Triton answers. Checks are REST's (``protocols/v2.py``,
``LoadedModel``), with their messages."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf import json_format

from layerserve.service.datatypes import v2_datatype
from layerserve.service.errors import InvalidInput, NotSupported
from layerserve.service.grpc import infer_response
from layerserve.service.grpc.generated import grpc_service_pb2 as pb
from layerserve.service.grpc.generated import model_config_pb2
from layerserve.service.grpc.infer_request import InferRequest
from layerserve.service.protocols import v2, v2_tensors
from layerserve.service.runtime import LoadedModel

# The typed ``InferTensorContents`` field of each datatype (FP16 and BF16 have none).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
CONTENTS_FIELDS = sorted(set(CONTENTS_FIELD.values()))


@dataclass
class GrpcRequest:
    id: str
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def timeout_us(self) -> int | None:
        value = self.parameters.get("timeout")
        return value if isinstance(value, int) and value > 0 else None


def parameter_value(parameter: Any) -> Any:
    """The Python value of an ``InferParameter`` (None when none is set)."""
    kind = parameter.WhichOneof("parameter_choice")
    return None if kind is None else getattr(parameter, kind)


def parameters_dict(parameters: Any) -> dict[str, Any]:
    return {key: parameter_value(value) for key, value in parameters.items()}


def decode_request(received: InferRequest, model: LoadedModel, limit: int) -> GrpcRequest:
    """The inputs, requested outputs and parameters of a ``ModelInferRequest`` for
    ``model``; ``limit`` bounds one input's size in bytes."""
    request, raw = received.message, received.raw
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"the request has {len(raw)} raw_input_contents for {len(request.inputs)} "
            "inputs: give raw contents for every input or for none"
        )
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if name in inputs:
            raise InvalidInput(f"input '{name}' is given more than once")
        inputs[name] = _decode_input(tensor, raw[index] if raw else None, model, limit)
    parameters = parameters_dict(request.parameters)
    v2.schedule_parameters(parameters)
    return GrpcRequest(request.id, inputs, _requested_outputs(request.outputs, model), parameters)


def _decode_input(
    tensor: Any, raw: bytes | memoryview | None, model: LoadedModel, limit: int
) -> np.ndarray:
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
    if not name:
        raise InvalidInput("an input has no name")
    if any(d < 0 for d in shape):
        raise InvalidInput(
            f"input '{name}' needs 'shape' as a list of non-negative integers, got {shape!r}"
        )
    dtype = v2.input_dtype(model, name, shape, datatype, limit)
    v2.refuse_shared_memory(tensor.parameters, f"input '{name}'")
    count = math.prod(shape)
    typed = tensor.HasField("contents")
    if raw is not None:
        if typed:
            raise InvalidInput(
                f"input '{name}' has both typed contents and raw_input_contents; give one"
            )
        if dtype.kind != "O" and len(raw) != count * dtype.itemsize:
            raise InvalidInput(
                f"input '{name}': raw_input_contents holds {len(raw)} bytes but "
                f"{datatype} {shape} takes {count * dtype.itemsize}"
            )
        # A read-only view of the received bytes (little-endian, as the protocol's).
        return v2_tensors.read_binary(name, memoryview(raw), datatype, dtype, shape)
    if datatype not in CONTENTS_FIELD:
        raise InvalidInput(
            f"input '{name}': {datatype} has no typed contents; send it as raw_input_contents"
        )
    field = CONTENTS_FIELD[datatype]
    others = [f for f in CONTENTS_FIELDS if f != field and len(getattr(tensor.contents, f))]
    if others:  # values in another field would be ignored
        raise InvalidInput(
            f"input '{name}': {datatype} values go in {field}, but {others} hold values; "
            f"set {field} only"
        )
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"input '{name}': shape {shape} needs {count} elements, its {field} hold {len(values)}"
        )
    return _from_contents(name, values, datatype, dtype).reshape(shape)


def _from_contents(name: str, values: Any, datatype: str, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "O":
        return v2_tensors.text_array(name, list(values))
    if dtype.kind in "iu" and dtype.itemsize < 4 and len(values):
        # int_contents / uint_contents are 32-bit: narrower types are range-checked
        wide = np.asarray(values, dtype=np.int64)
        v2_tensors.check_range(name, int(wide.min()), int(wide.max()), datatype, dtype)
        return wide.astype(dtype)
    return np.asarray(values, dtype=dtype)


def _requested_outputs(outputs: Any, model: LoadedModel) -> list[str] | None:
    if not outputs:
        return None
    names = []
    for output in outputs:
        model.output_spec(output.name)
        v2.check_requested_once(output.name, names)
        if "classification" in output.parameters:
            raise NotSupported(
                f"output '{output.name}': the classification extension is not supported"
            )
        v2.refuse_shared_memory(output.parameters, f"output '{output.name}'")
        names.append(output.name)
    return names


def encode_response(
    model: LoadedModel, request: GrpcRequest, outputs: dict[str, np.ndarray]
) -> infer_response.EncodedResponse:
    """The ``ModelInferResponse``, in its wire format: the requested outputs, or the
    model's own outputs (a ``<output>_mask`` output only when asked for by name, as REST
    answers)."""
    answers = []
    for name in request.outputs or model.value_outputs:
        array = outputs[name]
        answers.append((name, v2_datatype(array.dtype), array.shape, v2_tensors.to_binary(array)))
    return infer_response.infer_response(model.name, model.version, request.id, answers)


# ---- the JSON documents REST answers, as messages ----------------------------------------
def model_metadata(document: dict[str, Any]) -> Any:
    return json_format.ParseDict(document, pb.ModelMetadataResponse())


def model_config(document: dict[str, Any]) -> Any:
    """Triton's ModelConfig JSON (REST's ``/config``) as the message."""
    config = {key: value for key, value in document.items() if value is not None}
    message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    return pb.ModelConfigResponse(config=message)


def model_statistics(document: dict[str, Any]) -> Any:
    return json_format.ParseDict(document, pb.ModelStatisticsResponse())


def repository_index(entries: list[dict[str, str]]) -> Any:
    response = pb.RepositoryIndexResponse()
    for entry in entries:
        response.models.add(**entry)
    return response
