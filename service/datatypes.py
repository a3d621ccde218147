"""Open Inference Protocol datatypes and their NumPy and onnxruntime equivalents."""

from __future__ import annotations

import numpy as np

from layerserve.service.errors import InvalidInput

V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
NUMPY_TO_V2 = {dtype: name for name, dtype in V2_TO_NUMPY.items()}
ORT_TO_V2 = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
    "tensor(bfloat16)": "BF16",
}


def numpy_dtype(datatype: str) -> np.dtype:
    name = "BYTES" if datatype == "STRING" else datatype
    if name not in V2_TO_NUMPY:
        raise InvalidInput(
            f"unsupported datatype '{datatype}'; expected one of {', '.join(V2_TO_NUMPY)}"
        )
    return V2_TO_NUMPY[name]


def v2_datatype(dtype: np.dtype) -> str:
    return NUMPY_TO_V2.get(np.dtype(dtype), "BYTES")


def element_size(datatype: str) -> int:
    """Bytes per element in the binary format (0 for variable-size BYTES)."""
    return 0 if datatype in ("BYTES", "STRING") else numpy_dtype(datatype).itemsize


def to_float(array: np.ndarray, dtype: np.dtype, datatype: str, where: str) -> np.ndarray:
    """Numbers from a JSON request as a float ``dtype``: a finite number the datatype
    cannot hold (3.5e38 as FP32, 70000 as FP16) is refused, not turned into infinity;
    NaN and infinities the client sent stay as they are."""
    if array.dtype == dtype:
        return array
    if array.size:
        limit = float(np.finfo(dtype).max)
        low, high = array.min(), array.max()
        if low >= -limit and high <= limit:  # the common case; False with a NaN too
            return array.astype(dtype)
    with np.errstate(over="ignore"):  # slow (about 10 µs): only for NaN, infinity, overflow
        cast = array.astype(dtype)
    if np.isinf(cast).any():
        overflow = np.isinf(cast) & np.isfinite(array)
        if overflow.any():
            raise InvalidInput(
                f"{where}: value {array[overflow][0].item()!r} does not fit {datatype}: "
                f"finite {datatype} values are at most {float(np.finfo(dtype).max):g} "
                "in magnitude"
            )
    return cast


def from_little_endian(data: bytes | memoryview, dtype: np.dtype, where: str) -> np.ndarray:
    """A flat array of ``dtype`` read from little-endian bytes (the binary extension's,
    gRPC's raw contents', TF Serving's ``tensor_content``): a view of ``data`` where the
    machine is little-endian, no copy (read-only: nothing downstream writes into inputs).
    BOOL bytes must be 0 or 1: NumPy and onnxruntime take a byte as a bool without looking
    at it, and onnxruntime's operators then give answers for other bytes that are neither
    true's nor false's (``Not`` of byte 2 is byte 3)."""
    little = np.frombuffer(data, dtype=dtype.newbyteorder("<"))
    if dtype.kind == "b" and little.size:
        octets = little.view(np.uint8)
        if octets.max() > 1:
            index = int(np.argmax(octets > 1))
            raise InvalidInput(
                f"{where}: BOOL bytes must be 0 (false) or 1 (true); byte {index} is "
                f"{int(octets[index])}"
            )
    return little.astype(dtype, copy=False)
