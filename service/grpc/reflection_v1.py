"""Server reflection as ``grpc.reflection.v1`` beside ``grpc.reflection.v1alpha``.

grpcio-reflection serves v1alpha only; grpcurl (1.8.8 and later), buf curl and other
tools ask v1 first and fall back to v1alpha when v1 is unimplemented. The two versions
are the same messages under another package (their fields and numbers are identical), so
v1 is v1alpha's servicer under v1's method path, and v1's file, for reflection to
describe, is v1alpha's with its package renamed."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from layerserve.service.grpc.pool import POOL

PACKAGE = "grpc.reflection.v1"
SERVICE_NAME = f"{PACKAGE}.ServerReflection"
FILE_NAME = "grpc/reflection/v1/reflection.proto"


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old, new = f".{file.package}.", f".{PACKAGE}."
    file.name, file.package = FILE_NAME, PACKAGE
    file.ClearField("options")  # v1alpha's Java and Objective-C names
    for message in file.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # a message field (set, even empty, means one)
                field.type_name = field.type_name.replace(old, new)
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    return file


def add_to_server(servicer: Any, server: Any) -> None:
    """``servicer`` (grpcio-reflection's, built with ``SERVICE_NAME`` among the names it
    lists) answering v1 too, its file in ``POOL``."""
    try:
        POOL.FindFileByName(FILE_NAME)
    except KeyError:
        POOL.Add(_v1_file())
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    generic = grpc.method_handlers_generic_handler(SERVICE_NAME, {"ServerReflectionInfo": handler})
    server.add_generic_rpc_handlers((generic,))
