"""layerserve's private descriptor pool (``service/grpc/pool.py``) with the well-known
types that TF Serving's protos import (``google/protobuf/any.proto``, ``wrappers.proto``):
the generated modules of ``tfs_generated/`` add their files to this pool, which must hold
every file they import first."""

from google.protobuf import any_pb2, wrappers_pb2

from layerserve.service.grpc.pool import POOL, hold

for _module in (any_pb2, wrappers_pb2):
    hold(_module.DESCRIPTOR)

__all__ = ["POOL"]
