"""Tensors of the Open Inference Protocol's requests and answers, one input or output at
a time: JSON ``data`` read with every value of the datatype's kind and range, the binary
tensor data extension's bytes (and gRPC's raw contents, which share its layout) read and
written. Shared by V2 REST, V2 gRPC and ``:validate``."""

from __future__ import annotations

import math
import struct
import sys
from typing import Any

import numpy as np

from layerserve.service.datatypes import from_little_endian, to_float
from layerserve.service.errors import InvalidInput
from layerserve.service.protocols.json_floats import first_boolean, snippet
from layerserve.service.runtime import MAX_RANK

LITTLE_ENDIAN = sys.byteorder == "little"  # the binary format's byte order is the host's


def read_json_data(
    name: str,
    data: Any,
    datatype: str,
    dtype: np.dtype,
    shape: list[int],
    booleans: bool = True,
) -> np.ndarray:
    """Input ``name``'s JSON ``data`` as an array of ``shape``, every value of the
    datatype's kind and range (as inference and ``:validate`` read it). ``booleans``:
    False when the request's text names no ``true`` or ``false`` (``may_hold_booleans``),
    which spares looking for them among numbers."""
    if not isinstance(data, list):
        raise InvalidInput(
            f"input '{name}': 'data' must be a JSON array (nested or flat), "
            f"got {type(data).__name__}"
        )
    if dtype.kind == "O":
        flat = list(_flatten(name, data, 0))
        if not _regular(data):  # as numbers are read: never re-flowed into the shape
            raise InvalidInput(
                f"input '{name}': 'data' is not a regular array of {datatype} values "
                "(its nested lists differ in length or depth)"
            )
        for item in flat:
            if not isinstance(item, str):
                raise InvalidInput(
                    f"input '{name}': BYTES 'data' must hold JSON strings, got {item!r}; "
                    "send raw bytes with the binary tensor data extension"
                )
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        try:
            raw = np.asarray(data)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput(
                f"input '{name}': 'data' is not a regular array of {datatype} values ({exc})"
            ) from exc
        if raw.size == 0:
            array = np.empty(0, dtype=dtype)
        elif dtype.kind in "iu" and raw.dtype.kind not in "iub":
            array = _integers(name, data, datatype, dtype)  # e.g. UINT64 beyond int64
        else:
            array = _coerce(name, raw, datatype, dtype).reshape(-1)
            if booleans and dtype.kind != "b":
                _refuse_booleans(name, data, raw, datatype, dtype)
    if array.size != math.prod(shape):
        raise InvalidInput(
            f"unable to parse 'data': shape does not match true shape of "
            f"'data' field for input '{name}': shape {shape} needs "
            f"{math.prod(shape)} elements, 'data' has {array.size}"
        )
    return array.reshape(shape)


_KIND_NAMES = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers", "U": "strings"}


def _integers(name: str, data: list, datatype: str, dtype: np.dtype) -> np.ndarray:
    """The slow path for integers NumPy cannot infer as one integer type."""
    flat = list(_flatten(name, data, 0))
    for item in flat:
        if isinstance(item, float) and (item >= 2**64 or item < -(2**63)):
            # the JSON parser reads an integer beyond 64 bits as a float
            info = np.iinfo(dtype)
            raise InvalidInput(
                f"input '{name}': value {item!r} is out of range for {datatype} "
                f"[{info.min}, {info.max}]"
            )
        if isinstance(item, bool) or not isinstance(item, int):
            raise InvalidInput(
                f"input '{name}': 'data' must hold JSON integers for datatype {datatype}, "
                f"got {snippet(item)}"
            )
    check_range(name, min(flat), max(flat), datatype, dtype)
    return np.array(flat, dtype=dtype)


def check_range(name: str, low: int, high: int, datatype: str, dtype: np.dtype) -> None:
    info = np.iinfo(dtype)
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise InvalidInput(
            f"input '{name}': value {bad} is out of range for {datatype} [{info.min}, {info.max}]"
        )


def _coerce(name: str, raw: np.ndarray, datatype: str, dtype: np.dtype) -> np.ndarray:
    """JSON values to ``dtype``: no silent truncation, wrap-around or type change."""
    if dtype.kind == "b":
        accepted, wanted = "b", "true/false"
    elif dtype.kind in "iu":
        accepted, wanted = "iu", "integers"
    else:
        accepted, wanted = "iuf", "numbers"
    if raw.dtype.kind not in accepted:
        got = _KIND_NAMES.get(raw.dtype.kind) or _first_stranger(raw)
        raise InvalidInput(
            f"input '{name}': 'data' must hold JSON {wanted} for datatype {datatype}, got {got}"
        )
    if dtype.kind in "iu":
        check_range(name, int(raw.min()), int(raw.max()), datatype, dtype)
    if dtype.kind == "f":
        return to_float(raw, dtype, datatype, f"input '{name}'")
    return raw.astype(dtype, copy=False)


def _refuse_booleans(
    name: str, data: list, raw: np.ndarray, datatype: str, dtype: np.dtype
) -> None:
    found = first_boolean(data, raw)
    if found is not None:
        wanted = "integers" if dtype.kind in "iu" else "numbers"
        raise InvalidInput(
            f"input '{name}': 'data' must hold JSON {wanted} for datatype {datatype}, "
            f"got {found[1]} at element {found[0]}"
        )


def _first_stranger(raw: np.ndarray) -> str:
    """The first value of a mixed object array that is not a JSON number, named."""
    for index, value in enumerate(raw.reshape(-1)):
        if value is None:
            return f"null at element {index}"
        if isinstance(value, str):
            return f"the string {value[:40]!r} at element {index}"
        if isinstance(value, dict):
            return f"an object at element {index}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{snippet(value, 40)} at element {index}"
        if isinstance(value, int) and not -(2**63) <= value < 2**64:
            return f"{value} at element {index}, beyond 64 bits"
    return "mixed values"


def _regular(value: list) -> bool:
    """Whether nested lists form an array: at each depth, all lists or all values, the
    lists all of one length."""
    level: list[Any] = [value]
    while True:
        lists = [item for item in level if isinstance(item, list)]
        if not lists:
            return True
        if len(lists) != len(level) or len({len(item) for item in lists}) > 1:
            return False
        level = [item for inner in lists for item in inner]


def _flatten(name: str, value: Any, depth: int) -> Any:
    if depth > MAX_RANK:
        raise InvalidInput(f"input '{name}': 'data' is nested deeper than {MAX_RANK} levels")
    if isinstance(value, list):
        for item in value:
            yield from _flatten(name, item, depth + 1)
    else:
        yield value


def read_binary(
    name: str, chunk: memoryview, datatype: str, dtype: np.dtype, shape: list[int]
) -> np.ndarray:
    if datatype in ("BYTES", "STRING"):
        items = _split_bytes(name, bytes(chunk))
        if len(items) != math.prod(shape):
            raise InvalidInput(
                f"input '{name}': the binary data holds {len(items)} BYTES elements "
                f"but shape {shape} needs {math.prod(shape)}"
            )
        return text_array(name, items).reshape(shape)
    expected = math.prod(shape) * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidInput(
            f"input '{name}': binary_data_size {len(chunk)} does not match the "
            f"{expected} bytes that {datatype} {shape} takes"
        )
    return from_little_endian(chunk, dtype, f"input '{name}'").reshape(shape)


def _split_bytes(name: str, data: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidInput(f"input '{name}': truncated BYTES element length")
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + length > len(data):
            raise InvalidInput(f"input '{name}': BYTES element longer than the data")
        items.append(data[offset : offset + length])
        offset += length
    return items


def text_array(name: str, items: list[bytes]) -> np.ndarray:
    """BYTES elements as an object array of ``str``: onnxruntime's string tensors hold
    UTF-8 text (it would turn ``bytes`` objects into their ``repr``)."""
    array = np.empty(len(items), dtype=object)
    try:
        array[:] = [item.decode("utf-8") for item in items]
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"input '{name}': a BYTES element is not valid UTF-8 ({exc}); "
            "onnxruntime string tensors hold text"
        ) from exc
    return array


def to_binary(array: np.ndarray) -> bytes:
    if array.dtype == object:
        parts = []
        for item in array.reshape(-1):
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    if LITTLE_ENDIAN and array.dtype.isnative:
        return array.tobytes()  # in C order, whatever the array's layout
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
