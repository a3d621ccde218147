#!/bin/sh
# Regenerates service/grpc/tfs_generated from the protos here (see ../README.md); run from
# the repository root with the grpcio-tools 1.75.1 environment as $GEN (default /tmp/grpc-gen).
set -eu
GEN=${GEN:-/tmp/grpc-gen}
SRC=service/grpc/protos/tfserving
OUT=service/grpc/tfs_generated
PKG=layerserve.service.grpc.tfs_generated
rm -rf "$OUT" && mkdir "$OUT"
TF_FILES=$("$GEN/bin/python" -c "
from google.protobuf import descriptor_pb2
s = descriptor_pb2.FileDescriptorSet.FromString(open('$SRC/tensorflow_core.binpb', 'rb').read())
print(' '.join(f.name for f in s.file))")
"$GEN/bin/python" -m grpc_tools.protoc -I "$SRC" --descriptor_set_in="$SRC/tensorflow_core.binpb" \
    --python_out="$OUT" --pyi_out="$OUT" $TF_FILES
(cd "$SRC" && find tensorflow_serving -name '*.proto' | sort) | while read -r f; do
    "$GEN/bin/python" -m grpc_tools.protoc -I "$SRC" \
        --descriptor_set_in="$SRC/tensorflow_core.binpb" \
        --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" "$SRC/$f"
done
# protoc writes top-level imports (tensorflow..., xla..., which would import the real
# TensorFlow); the modules live in this package. Their descriptors go into layerserve's
# own pool (service/grpc/pool.py), which also gets the well-known types they import.
find "$OUT" -name '*.py' -o -name '*.pyi' | xargs sed -i -E \
    "s/^from (tensorflow|tensorflow_serving|xla)([. ])/from $PKG.\1\2/"
find "$OUT" -name '*_pb2.py' | xargs sed -i -E \
    -e 's/^DESCRIPTOR = _descriptor_pool.Default\(\)\.AddSerializedFile\(/DESCRIPTOR = POOL.AddSerializedFile(/' \
    -e "s/^_sym_db = _symbol_database.Default\(\)\$/&\nfrom layerserve.service.grpc.tfserving_pool import POOL/"
find "$OUT" -type d | while read -r d; do
    echo '"""Generated from service/grpc/protos/tfserving (see its README.md); do not edit."""' \
        > "$d/__init__.py"
done
cp "$SRC/LICENSE" "$OUT/LICENSE"
