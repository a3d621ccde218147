"""The descriptor pool of layerserve's generated gRPC modules.

A private pool, not protobuf's default one: a process that also imports another copy of
Triton's protos (``tritonclient.grpc``, in any version) would otherwise fail with
"duplicate file name model_config.proto" as soon as the two copies differ."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
