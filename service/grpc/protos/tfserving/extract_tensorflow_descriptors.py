"""Writes ``tensorflow_core.binpb``: the FileDescriptorSet of the TensorFlow core protos
that TF Serving's APIs import (``tensor.proto``, ``meta_graph.proto`` and its imports,
``example.proto``, ``error_codes.proto``), read from the ``_pb2`` modules of an installed
``tensorflow`` (2.21.0 wrote the checked-in file). Run with that environment's python."""

import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from tensorflow.core.example import example_pb2
from tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2

WELL_KNOWN = "google/protobuf/"  # protoc has these itself


def main() -> None:
    files: list = []

    def add(descriptor) -> None:  # dependencies first, as protoc wants them
        for dependency in descriptor.dependencies:
            add(dependency)
        if descriptor not in files and not descriptor.name.startswith(WELL_KNOWN):
            files.append(descriptor)

    for module in (meta_graph_pb2, example_pb2, error_codes_pb2):
        add(module.DESCRIPTOR)
    bundle = descriptor_pb2.FileDescriptorSet()
    for descriptor in files:
        descriptor.CopyToProto(bundle.file.add())
    out = Path(
        sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("tensorflow_core.binpb")
    )
    out.write_bytes(bundle.SerializeToString(deterministic=True))
    sys.stdout.write("".join(f"{d.name}\n" for d in files))


if __name__ == "__main__":
    main()
