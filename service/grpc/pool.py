"""The descriptor pool of layerserve's generated gRPC modules.

A private pool, not protobuf's default one: a process that also imports another copy of
Triton's protos (``tritonclient.grpc``, in any version) would otherwise fail with
"duplicate file name model_config.proto" as soon as the two copies differ."""

from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor

POOL = descriptor_pool.DescriptorPool()


def hold(file: FileDescriptor) -> None:
    """``file`` of another pool (and the files it imports) in ``POOL`` too, unless there
    already: the files that layerserve's protos import, and those of the services that
    reflection describes from ``POOL`` beside layerserve's own (health, reflection)."""
    try:
        POOL.FindFileByName(file.name)
    except KeyError:
        for dependency in file.dependencies:
            hold(dependency)
        POOL.AddSerializedFile(file.serialized_pb)


class ReflectedPool:
    """``POOL`` as server reflection reads it, where a symbol may also name a service's
    method (``inference.GRPCInferenceService.ModelInfer``, as ``grpcurl describe`` asks
    for it: the reflection protocol's ``<package>.<service>[.<method>]``), which
    protobuf's own ``FindFileContainingSymbol`` does not find."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptor:  # noqa: N802 - protobuf's
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service, _, method = symbol.rpartition(".")
            try:
                found = self._pool.FindServiceByName(service)
            except KeyError:
                found = None
            if found is None or method not in found.methods_by_name:
                raise
            return found.file
