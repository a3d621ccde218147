"""The descriptor pool of layerserve's generated gRPC modules.

A private pool, not protobuf's default one: a process that also imports another copy of
Triton's protos (``tritonclient.grpc``, in any version) would otherwise fail with
"duplicate file name model_config.proto" as soon as the two copies differ."""

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
