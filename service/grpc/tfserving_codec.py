"""TensorFlow Serving gRPC messages to and from the protocol-neutral data plane: a
``TensorProto`` to a NumPy array and back, and the JSON documents of REST's status and
metadata routes (``protocols/tfserving_models.py``) as their messages.

A request tensor carries its values in ``tensor_content`` (little-endian bytes, read with
``np.frombuffer`` without a copy; not for DT_STRING) or in the typed field of its dtype
(``float_val``, ``int_val``, ...). As TensorFlow's ``Tensor::FromProto`` does, one typed
value fills a tensor of any shape (``tf.make_tensor_proto(0.5, shape=[2, 3])``); any
other count that is not the shape's is refused, and so are values in a field that is not
the dtype's (TensorFlow would read zeros there: a wrong number returned silently). Outputs
go back in typed fields, as TF Serving answers (``AsProtoField``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from google.protobuf import json_format

from layerserve.service.datatypes import from_little_endian, v2_datatype
from layerserve.service.errors import InvalidInput
from layerserve.service.grpc.infer_response import varint
from layerserve.service.grpc.tfs_generated.tensorflow.core.framework import types_pb2
from layerserve.service.grpc.tfs_generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
)
from layerserve.service.protocols import v2, v2_tensors
from layerserve.service.protocols.tfserving_models import DT_NAMES
from layerserve.service.runtime import LoadedModel

DataType = types_pb2.DataType
# The TensorFlow dtype of each V2 datatype, and back (DT_STRING is V2's BYTES).
DTYPE_OF = {datatype: DataType.Value(name) for datatype, name in DT_NAMES.items()}
DATATYPE_OF = {dtype: datatype for datatype, dtype in DTYPE_OF.items() if datatype != "STRING"}
# The typed field of each dtype (tensor.proto: int_val holds the narrow integers, half_val
# the bit patterns of DT_HALF).
VALUE_FIELD = {
    DataType.DT_FLOAT: "float_val",
    DataType.DT_DOUBLE: "double_val",
    DataType.DT_INT32: "int_val",
    DataType.DT_INT16: "int_val",
    DataType.DT_INT8: "int_val",
    DataType.DT_UINT8: "int_val",
    DataType.DT_UINT16: "int_val",
    DataType.DT_INT64: "int64_val",
    DataType.DT_UINT32: "uint32_val",
    DataType.DT_UINT64: "uint64_val",
    DataType.DT_BOOL: "bool_val",
    DataType.DT_STRING: "string_val",
    DataType.DT_HALF: "half_val",
}
# float_val (5) and double_val (6) of TensorProto: packed, little-endian, fixed width;
# their key is the field number with wire type 2 (length-delimited).
_FIXED_WIDTH = {DataType.DT_FLOAT: "<f4", DataType.DT_DOUBLE: "<f8"}
_FIXED_WIDTH_KEY = {DataType.DT_FLOAT: bytes([5 << 3 | 2]), DataType.DT_DOUBLE: bytes([6 << 3 | 2])}
ALL_VALUE_FIELDS = (
    *sorted(set(VALUE_FIELD.values())),
    "scomplex_val",
    "dcomplex_val",
    "resource_handle_val",
    "variant_val",
    "float8_val",
)


def dtype_name(dtype: int) -> str:
    try:
        return DataType.Name(dtype)
    except ValueError:
        return str(dtype)


# ---- request tensors --------------------------------------------------------------------
def decode_tensor(name: str, tensor: Any, model: LoadedModel, limit: int) -> np.ndarray:
    """The array of request input ``name`` for ``model``; ``limit`` bounds its bytes."""
    model.input_spec(name)  # an unknown input is named before its values are read
    datatype = DATATYPE_OF.get(tensor.dtype)
    if datatype is None or datatype == "BF16":
        supported = ", ".join(dtype_name(d) for d in VALUE_FIELD)
        raise InvalidInput(
            f"input '{name}': dtype {dtype_name(tensor.dtype)} is not supported by this "
            f"server; expected one of {supported}"
        )
    if tensor.tensor_shape.unknown_rank:
        raise InvalidInput(f"input '{name}': tensor_shape must be known (unknown_rank is set)")
    shape = [d.size for d in tensor.tensor_shape.dim]
    if any(d < 0 for d in shape):
        raise InvalidInput(
            f"input '{name}' needs 'tensor_shape' of non-negative sizes, got {shape!r}"
        )
    dtype = v2.input_dtype(model, name, shape, datatype, limit)
    field = VALUE_FIELD[tensor.dtype]
    content = tensor.tensor_content
    others = [f for f in ALL_VALUE_FIELDS if f != field and len(getattr(tensor, f))]
    if content and len(getattr(tensor, field)):
        others.append(field)
    if others:
        where = "tensor_content" if content else field
        raise InvalidInput(
            f"input '{name}': {dtype_name(tensor.dtype)} values belong in {where}, "
            f"but {others} hold values; set {where} only"
        )
    count = math.prod(shape)
    if content:
        if dtype.kind == "O":
            raise InvalidInput(
                f"input '{name}': DT_STRING values travel in string_val, not tensor_content"
            )
        if len(content) != count * dtype.itemsize:
            raise InvalidInput(
                f"input '{name}': tensor_content holds {len(content)} bytes but "
                f"{dtype_name(tensor.dtype)} {shape} takes {count * dtype.itemsize}"
            )
        return from_little_endian(content, dtype, f"input '{name}'").reshape(shape)
    values = getattr(tensor, field)
    if len(values) != count and not (len(values) == 1 and count > 0):
        raise InvalidInput(
            f"input '{name}': tensor_shape {shape} needs {count} values (or one, which "
            f"fills it), its {field} holds {len(values)}"
        )
    if len(values) != count:  # one value fills the shape: bounded before it is made
        v2.check_input_size(name, shape, dtype.itemsize, limit)
    array = _from_values(name, values, tensor.dtype, datatype, dtype)
    if len(values) != count:
        array = np.full(shape, array[0], dtype=array.dtype)
    return array.reshape(shape)


def _from_values(
    name: str, values: Any, dtype_enum: int, datatype: str, dtype: np.dtype
) -> np.ndarray:
    if dtype.kind == "O":
        return v2_tensors.text_array(name, list(values))
    if dtype_enum == DataType.DT_HALF:
        bits = np.asarray(values, dtype=np.int64)
        outside = bits[(bits < 0) | (bits > 0xFFFF)]
        if outside.size:
            raise InvalidInput(
                f"input '{name}': half_val holds 16-bit patterns (0 to 65535), "
                f"got {int(outside[0])}"
            )
        return bits.astype(np.uint16).view(np.float16)
    if dtype.kind in "iu" and dtype.itemsize < 4 and len(values):
        wide = np.asarray(values, dtype=np.int64)  # int_val is 32-bit: range-checked
        v2_tensors.check_range(name, int(wide.min()), int(wide.max()), datatype, dtype)
        return wide.astype(dtype)
    return np.asarray(values, dtype=dtype)


# ---- response tensors -------------------------------------------------------------------
def encode_tensor(tensor: Any, array: np.ndarray) -> None:
    """Fill the response ``TensorProto`` with ``array``: dtype, shape, typed values."""
    dtype = DTYPE_OF[v2_datatype(array.dtype)]
    tensor.dtype = dtype
    for size in array.shape:
        tensor.tensor_shape.dim.add(size=size)
    flat = array.reshape(-1)
    if dtype in _FIXED_WIDTH:
        # the packed field as protobuf writes it, parsed in one step: a Python float per
        # value (extend) took 0.2 s of the event loop for 4 million
        payload = flat.astype(_FIXED_WIDTH[dtype], copy=False).tobytes()
        tensor.MergeFromString(_FIXED_WIDTH_KEY[dtype] + varint(len(payload)) + payload)
    elif dtype == DataType.DT_STRING:
        tensor.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat
        )
    elif dtype == DataType.DT_HALF:
        tensor.half_val.extend(flat.view(np.uint16).tolist())
    else:
        getattr(tensor, VALUE_FIELD[dtype]).extend(flat.tolist())


# ---- REST's documents as messages ----------------------------------------------------------
def model_status(document: dict[str, Any]) -> Any:
    """REST's status body (without KServe V1's ``name`` and ``ready``) as the message."""
    entries = document["model_version_status"]
    return json_format.ParseDict(
        {"model_version_status": entries}, get_model_status_pb2.GetModelStatusResponse()
    )


def model_metadata(document: dict[str, Any]) -> Any:
    """REST's metadata body as the message: the ``signature_def`` entry of ``metadata``
    is a ``SignatureDefMap`` packed in an ``Any``, as TF Serving answers."""
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    spec = document["model_spec"]
    response.model_spec.name = spec["name"]
    response.model_spec.version.value = int(spec["version"])
    signatures = json_format.ParseDict(
        document["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap()
    )
    response.metadata["signature_def"].Pack(signatures)
    return response
