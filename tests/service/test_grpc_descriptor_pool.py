"""layerserve's generated gRPC modules keep their descriptors in a pool of their own: a
process that already holds another copy of Triton's protos (``tritonclient.grpc`` of
another version, here a stand-in) still imports them and serves."""

import subprocess
import sys

CHILD = """
from google.protobuf import descriptor_pb2, descriptor_pool

other = descriptor_pb2.FileDescriptorProto(name="model_config.proto", package="inference")
other.message_type.add(name="ModelConfig")  # another copy of the file, unlike layerserve's
descriptor_pool.Default().Add(other)

from layerserve.service.grpc.generated import grpc_service_pb2 as pb

request = pb.ModelInferRequest(model_name="mlp", id="7")
again = pb.ModelInferRequest.FromString(request.SerializeToString())
print(again.model_name, again.id, len(pb.ModelConfigResponse.DESCRIPTOR.fields))
"""


def test_generated_modules_import_beside_another_copy_of_the_protos():
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["mlp", "7", "1"]
