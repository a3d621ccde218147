"""``POST /v1/shapes`` takes what the README says: ``{"model": <config>}`` where the config
is ``model.to_json()`` of tf.keras (tf_keras) as well as Keras 3's (test_shapes.py), as an
object or as JSON text. The expectations are tf_keras' own: its layers' output shapes and
parameter counts, written by tf_keras in a subprocess (TensorFlow stays out of this one)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

pytestmark = pytest.mark.parallel_safe

WRITER = """
import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tf_keras as k

def report(model):
    return {
        "json": model.to_json(),
        "total": model.count_params(),
        "layers": [
            [layer.name, type(layer).__name__, list(layer.output.shape), layer.count_params()]
            for layer in model.layers
        ],
    }

sequential = k.Sequential(
    [
        k.layers.Conv2D(4, 3, activation="relu", input_shape=(12, 12, 1), name="conv"),
        k.layers.Flatten(name="flatten"),
        k.layers.Dense(5, name="logits"),
    ],
    name="tf_cnn",
)
steps = k.Input((7, 3), name="steps")
hidden = k.layers.LSTM(6, name="lstm")(k.layers.Masking(name="masking")(steps))
functional = k.Model(steps, k.layers.Dense(2, name="out")(hidden), name="tf_rnn")
# Keras 2's cuDNN layers: an LSTM's bias of 8 x units (input and recurrent biases)
from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU
from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM

cudnn = k.Sequential(
    [
        k.Input((7, 8)),
        CuDNNLSTM(5, return_sequences=True, name="cudnn_lstm"),
        k.layers.Bidirectional(CuDNNLSTM(4, return_sequences=True), name="bi_cudnn"),
        k.layers.TimeDistributed(k.layers.Dense(2), name="per_step"),
        CuDNNGRU(3, name="cudnn_gru"),
    ],
    name="tf_cudnn",
)
print(json.dumps({
    "sequential": report(sequential), "functional": report(functional), "cudnn": report(cudnn)
}))
"""


@pytest.fixture(scope="module")
def tf_keras_models() -> dict:
    done = subprocess.run(
        [sys.executable, "-c", WRITER], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("as_text", [False, True], ids=["object", "json-text"])
@pytest.mark.parametrize("name", ["sequential", "functional", "cudnn"])
def test_tf_keras_to_json(server_url, tf_keras_models, name, as_text):
    written = tf_keras_models[name]
    config = written["json"] if as_text else json.loads(written["json"])
    response = httpx.post(f"{server_url}/v1/shapes", json={"model": config}, timeout=30)
    assert response.status_code == 200, response.text
    document = response.json()
    by_name = {row["name"]: row for row in document["layers"]}
    for layer, class_name, shape, params in written["layers"]:
        row = by_name[layer]
        assert (row["class_name"], row["output_shape"], row["params"]) == (
            class_name,
            shape,
            params,
        )
    assert document["total_params"] == written["total"]
