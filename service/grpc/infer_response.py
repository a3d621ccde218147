"""A ``ModelInferResponse`` written in protobuf's wire format directly: the answer of
ModelInfer and ModelStreamInfer.

Built as a message, an answer costs the event loop a message object and an output
message per output, the copy of every output's bytes into them, and the serialization
after: about a tenth of a batch-64 call's time on the event loop. Written here, it is a
few byte strings joined, the bytes protobuf's own serialization gives
(tests/service/test_grpc_infer_response.py compares the two). The answers that carry
``parameters`` or typed ``contents`` (none of this server's) would still be messages."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

# Wire-format tags, (field number << 3) | wire type; 2 is length-delimited.
_MODEL_NAME, _MODEL_VERSION, _ID, _OUTPUTS, _RAW_OUTPUT_CONTENTS = (
    b"\x0a",
    b"\x12",
    b"\x1a",
    b"\x2a",
    b"\x32",
)
_OUTPUT_NAME, _OUTPUT_DATATYPE, _OUTPUT_SHAPE = b"\x0a", b"\x12", b"\x1a"
_STREAM_INFER_RESPONSE = b"\x12"  # ModelStreamInferResponse.infer_response
_INT64 = (1 << 64) - 1  # a negative int64 is written as its two's complement


class EncodedResponse:
    """A message already in its wire format, ``data`` (which ``serialize`` passes on as it
    is: a server's serializer must give ``bytes`` itself, not a subclass)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def varint(value: int) -> bytes:
    """A non-negative integer as a protobuf varint."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def _text(tag: bytes, text: str) -> bytes:
    """A string field; proto3 leaves an empty one out."""
    return _field(tag, text.encode()) if text else b""


# The fields a model's answers repeat (its name and version, each output's name and
# datatype) are written once: the cache holds what a few thousand models would use.
_model_fields = functools.lru_cache(maxsize=4096)(
    lambda name, version: _text(_MODEL_NAME, name) + _text(_MODEL_VERSION, version)
)
_output_fields = functools.lru_cache(maxsize=4096)(
    lambda name, datatype: _text(_OUTPUT_NAME, name) + _text(_OUTPUT_DATATYPE, datatype)
)


def infer_response(
    model_name: str,
    model_version: str,
    request_id: str,
    outputs: Sequence[tuple[str, str, Sequence[int], bytes]],
) -> EncodedResponse:
    """``ModelInferResponse`` with ``outputs`` as (name, datatype, shape, raw bytes), the
    bytes in ``raw_output_contents`` in the outputs' order."""
    parts = [_model_fields(model_name, model_version), _text(_ID, request_id)]
    for name, datatype, shape, _ in outputs:
        tensor = _output_fields(name, datatype)
        if len(shape):
            tensor += _field(_OUTPUT_SHAPE, b"".join([varint(int(d) & _INT64) for d in shape]))
        parts.append(_field(_OUTPUTS, tensor))
    for _, _, _, raw in outputs:
        parts.append(_RAW_OUTPUT_CONTENTS + varint(len(raw)))
        parts.append(raw)
    return EncodedResponse(b"".join(parts))


def stream_infer_response(response: EncodedResponse) -> EncodedResponse:
    """``ModelStreamInferResponse`` carrying ``response`` (no error message)."""
    return EncodedResponse(_field(_STREAM_INFER_RESPONSE, response.data))


def serialize(response: Any) -> bytes:
    """The response serializer of ModelInfer and ModelStreamInfer: an encoded response
    as it is, a message (an error answer of the stream) serialized."""
    if isinstance(response, EncodedResponse):
        return response.data
    return response.SerializeToString()
