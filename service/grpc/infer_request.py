"""A ``ModelInferRequest`` read without copying its tensors: the request deserializer of
ModelInfer and ModelStreamInfer.

Parsed whole, a request's ``raw_input_contents`` would be copied twice more after gRPC
hands the message over (into protobuf's arena, then into a new ``bytes`` when read), a
few hundred microseconds of the event loop for a batch of a few megabytes. Instead the
message's top-level fields are walked once (a handful of tags): each raw content becomes a
``memoryview`` of the received bytes, and every other field is parsed by protobuf, in
its order, exactly as the whole message would be. Bytes that do not walk as a message
are handed to protobuf whole, so a malformed request fails exactly as it would without
this module."""

from __future__ import annotations

from dataclasses import dataclass

from layerserve.service.grpc.generated import grpc_service_pb2 as pb

RAW_INPUT_CONTENTS = pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number
# Protobuf wire types: their payload after the tag.
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
MAX_VARINT_BYTES = 10


class _NotAMessage(Exception):
    """The bytes do not walk as protobuf fields (protobuf's own parse says why)."""


@dataclass(frozen=True)
class InferRequest:
    """A received ``ModelInferRequest``: ``message`` holds every field but
    ``raw_input_contents``, which ``raw`` holds as views of the received bytes."""

    message: pb.ModelInferRequest
    raw: list[memoryview]

    @classmethod
    def of(cls, message: pb.ModelInferRequest) -> InferRequest:
        """A message built in this process (tests, the load generator's checks)."""
        raw = [memoryview(chunk) for chunk in message.raw_input_contents]
        rest = pb.ModelInferRequest()
        rest.CopyFrom(message)
        rest.ClearField("raw_input_contents")
        return cls(rest, raw)


def read_infer_request(data: bytes) -> InferRequest:
    """The request deserializer: ``data`` as an :class:`InferRequest`."""
    try:
        rest, raw = _split(data)
    except _NotAMessage:
        message = pb.ModelInferRequest.FromString(data)  # raises protobuf's DecodeError
        return InferRequest.of(message)
    return InferRequest(pb.ModelInferRequest.FromString(rest), raw)


def _split(data: bytes) -> tuple[bytes, list[memoryview]]:
    """The message without its raw contents (its other fields in order) and the raw
    contents as views."""
    view = memoryview(data)
    size = len(data)
    kept: list[list[int]] = []  # [start, end) ranges of the other fields, joined up
    raw: list[memoryview] = []
    position = 0
    while position < size:
        start = position
        key = data[position]  # a one-byte tag, for every field of this message
        position += 1
        if key >= 0x80:
            key, position = _varint(data, start)
        wire_type = key & 7
        if wire_type == LENGTH_DELIMITED:
            length = data[position] if position < size else 0x80
            if length < 0x80:
                position += 1
            else:
                length, position = _varint(data, position)
            end = position + length
            if end > size:
                raise _NotAMessage
            if key >> 3 == RAW_INPUT_CONTENTS:
                raw.append(view[position:end])
                position = end
                continue
            position = end
        elif wire_type == VARINT:
            _, position = _varint(data, position)
        elif wire_type == FIXED64:
            position += 8
        elif wire_type == FIXED32:
            position += 4
        else:  # groups: no field of this message has them
            raise _NotAMessage
        if position > size:
            raise _NotAMessage
        if kept and kept[-1][1] == start:
            kept[-1][1] = position
        else:
            kept.append([start, position])
    return b"".join(view[start:end] for start, end in kept), raw


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    for index in range(position, min(position + MAX_VARINT_BYTES, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, index + 1
        shift += 7
    raise _NotAMessage
