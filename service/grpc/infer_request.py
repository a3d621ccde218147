"""A ``ModelInferRequest`` read without copying its tensors: the request deserializer of
ModelInfer and ModelStreamInfer.

Parsed whole, a request's ``raw_input_contents`` would be copied twice more after gRPC
hands the message over (into protobuf's arena, then into a new ``bytes`` when read), a
few hundred microseconds of the event loop for a batch of a few megabytes. Instead the
message's top-level fields are walked once (a handful of tags): each raw content becomes a
``memoryview`` of the received bytes, and every other field is parsed by protobuf, in
its order, exactly as the whole message would be. Bytes that do not walk as a message
under protobuf's own limits (a tag or a length of at most five bytes), and messages of
more than ``MAX_FIELDS`` top-level fields (a walk in Python would take the event loop
long, where protobuf's parse in C takes it briefly), are handed to protobuf whole: a
malformed request fails exactly as it would without this module."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from layerserve.service.grpc.generated import grpc_service_pb2 as pb

RAW_INPUT_CONTENTS = pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number
# Protobuf wire types: their payload after the tag.
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
MAX_VARINT_BYTES = 10
# protobuf's limits for a tag (a 32-bit value) and a length (under 2 GiB), in five bytes
MAX_TAG_BYTES, MAX_TAG = 5, 0xFFFF_FFFF
MAX_LENGTH_BYTES, MAX_LENGTH = 5, 0x7FFF_FFFF
MAX_FIELDS = 1024  # far more than a request of a few hundred inputs has


class _NotAMessage(Exception):
    """The bytes do not walk as protobuf fields (protobuf's own parse says why)."""


@dataclass(frozen=True)
class InferRequest:
    """A received ``ModelInferRequest``: its ``raw_input_contents`` are ``raw`` (views of
    the received bytes, or the message's own field when protobuf parsed it whole), every
    other field is read from ``message``."""

    message: pb.ModelInferRequest
    raw: Sequence[bytes | memoryview]

    @classmethod
    def of(cls, message: pb.ModelInferRequest) -> InferRequest:
        """A message parsed whole (or built in this process)."""
        return cls(message, message.raw_input_contents)


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
    fields = 0
    kept: list[list[int]] = []  # [start, end) ranges of the other fields, joined up
    raw: list[memoryview] = []
    position = 0
    while position < size:
        fields += 1
        if fields > MAX_FIELDS:
            raise _NotAMessage
        start = position
        key = data[position]  # a one-byte tag, for every field of this message
        position += 1
        if key >= 0x80:
            key, position = _varint(data, start, MAX_TAG_BYTES, MAX_TAG)
        wire_type = key & 7
        if wire_type == LENGTH_DELIMITED:
            length = data[position] if position < size else 0x80
            if length < 0x80:
                position += 1
            else:
                length, position = _varint(data, position, MAX_LENGTH_BYTES, MAX_LENGTH)
            end = position + length
            if end > size:
                raise _NotAMessage
            if key >> 3 == RAW_INPUT_CONTENTS:
                raw.append(view[position:end])
                position = end
                continue
            position = end
        elif wire_type == VARINT:
            _, position = _varint(data, position, MAX_VARINT_BYTES, 2**64 - 1)
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


def _varint(data: bytes, position: int, most_bytes: int, most: int) -> tuple[int, int]:
    """The varint at ``position`` and the position after it, within protobuf's limits."""
    value = shift = 0
    for index in range(position, min(position + most_bytes, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value > most:
                raise _NotAMessage
            return value, index + 1
        shift += 7
    raise _NotAMessage
