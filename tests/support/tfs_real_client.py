"""The real TF Serving client (``tensorflow-serving-api``, TensorFlow's
``make_tensor_proto`` / ``make_ndarray``) against a server: ``python tfs_real_client.py
HOST:PORT ROWS`` prints one JSON line of what it got. Run in a subprocess by
test_grpc_tfserving.py, so that TensorFlow stays out of the test process."""

import json
import sys

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

target, rows = sys.argv[1], int(sys.argv[2])
x = np.random.default_rng(rows).random((rows, 784), dtype=np.float32)
channel = grpc.insecure_channel(target)
stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
request = predict_pb2.PredictRequest()
request.model_spec.name = "mlp"
request.model_spec.version.value = 1
request.inputs["hidden_1_input"].CopyFrom(tf.make_tensor_proto(x))
response = stub.Predict(request, timeout=30)
y = tf.make_ndarray(response.outputs["probabilities"])
fill = predict_pb2.PredictRequest()
fill.model_spec.name = "identity_fp16"
fill.inputs["x"].CopyFrom(tf.make_tensor_proto(1.5, dtype=tf.float16, shape=[2, 3]))
filled = tf.make_ndarray(stub.Predict(fill, timeout=30).outputs["y"])
metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
metadata.model_spec.name = "mlp"
answer = stub.GetModelMetadata(metadata, timeout=30)
signatures = get_model_metadata_pb2.SignatureDefMap()
answer.metadata["signature_def"].Unpack(signatures)
signature = signatures.signature_def["serving_default"]
status = get_model_status_pb2.GetModelStatusRequest()
status.model_spec.name = "mlp"
versions = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=30)
print(
    json.dumps(
        {
            "x_seed": rows,
            "y": y.tolist(),
            "y_dtype": str(y.dtype),
            "filled": filled.tolist(),
            "filled_dtype": str(filled.dtype),
            "inputs": {
                k: [tf.dtypes.as_dtype(v.dtype).name, [d.size for d in v.tensor_shape.dim]]
                for k, v in signature.inputs.items()
            },
            "method": signature.method_name,
            "versions": [[v.version, v.state] for v in versions.model_version_status],
        }
    )
)
