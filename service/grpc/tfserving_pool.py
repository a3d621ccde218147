"""layerserve's private descriptor pool (``service/grpc/pool.py``) with the well-known
types that TF Serving's protos import (``google/protobuf/any.proto``, ``wrappers.proto``):
the generated modules of ``tfs_generated/`` add their files to this pool, which must hold
every file they import first."""

from google.protobuf import any_pb2, wrappers_pb2

from layerserve.service.grpc.pool import POOL

for _module in (any_pb2, wrappers_pb2):
    try:
        POOL.FindFileByName(_module.DESCRIPTOR.name)
    except KeyError:
        POOL.AddSerializedFile(_module.DESCRIPTOR.serialized_pb)

__all__ = ["POOL"]
