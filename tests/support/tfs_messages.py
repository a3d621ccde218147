"""TF Serving gRPC messages for the tests, written from tensor.proto's comments (not from
the server's codec): arrays to ``TensorProto`` and back, and the requests of
PredictionService and ModelService."""

from __future__ import annotations

import numpy as np

from layerserve.service.grpc.tfs_generated.tensorflow.core.framework import (
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from layerserve.service.grpc.tfs_generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

DT = types_pb2.DataType
# numpy dtype -> (TF dtype, typed field), after tensor.proto's comments.
FIELDS = {
    np.dtype(np.float32): (DT.DT_FLOAT, "float_val"),
    np.dtype(np.float64): (DT.DT_DOUBLE, "double_val"),
    np.dtype(np.float16): (DT.DT_HALF, "half_val"),
    np.dtype(np.int8): (DT.DT_INT8, "int_val"),
    np.dtype(np.int32): (DT.DT_INT32, "int_val"),
    np.dtype(np.int64): (DT.DT_INT64, "int64_val"),
    np.dtype(np.uint64): (DT.DT_UINT64, "uint64_val"),
    np.dtype(bool): (DT.DT_BOOL, "bool_val"),
    np.dtype(object): (DT.DT_STRING, "string_val"),
}
NUMPY_OF = {dt: dtype for dtype, (dt, _) in FIELDS.items()}


def tensor_of(array: np.ndarray, content: bool = False) -> tensor_pb2.TensorProto:
    dtype, field = FIELDS[array.dtype]
    tensor = tensor_pb2.TensorProto(dtype=dtype)
    tensor.tensor_shape.dim.extend(
        tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape
    )
    if content:
        tensor.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
    elif array.dtype == np.float16:
        tensor.half_val.extend(array.reshape(-1).view(np.uint16).tolist())
    elif array.dtype == object:
        tensor.string_val.extend(v.encode() for v in array.reshape(-1))
    else:
        getattr(tensor, field).extend(array.reshape(-1).tolist())
    return tensor


def array_of(tensor: tensor_pb2.TensorProto) -> np.ndarray:
    dtype = NUMPY_OF[tensor.dtype]
    shape = [d.size for d in tensor.tensor_shape.dim]
    if tensor.dtype == DT.DT_HALF:
        return np.array(tensor.half_val, np.uint16).view(np.float16).reshape(shape)
    if tensor.dtype == DT.DT_STRING:
        return np.array([v.decode() for v in tensor.string_val], object).reshape(shape)
    return np.array(getattr(tensor, FIELDS[dtype][1]), dtype).reshape(shape)


def predict_request(model: str, inputs: dict, version: int | None = None, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    for key, value in spec.items():
        setattr(request.model_spec, key, value)
    for name, tensor in inputs.items():
        request.inputs[name].CopyFrom(tensor)
    return request


def metadata_request(name: str, fields=("signature_def",), version: int | None = None):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    return request


def status_request(name: str, version: int | None = None, label: str = ""):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label:  # version and version_label are a oneof: setting one clears the other
        request.model_spec.version_label = label
    return request
