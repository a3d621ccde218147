"""Models saved by real Keras 3 load in layerserve, export to ONNX, and onnxruntime's
outputs (and masks) equal Keras's own."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402 - the backend must be chosen first

from layerserve.export import to_onnx  # noqa: E402
from layerserve.export.parity import session  # noqa: E402
from layerserve.models import load_model  # noqa: E402

L = keras.layers


def mlp():
    return keras.Sequential(
        [
            keras.Input((20,)),
            L.Dense(16, activation="relu"),
            L.Dropout(0.3),
            L.Dense(4, activation="softmax"),
        ]
    )


def conv(data_format):
    shape = (3, 9, 8) if data_format == "channels_first" else (9, 8, 3)
    return keras.Sequential(
        [
            keras.Input(shape),
            L.Conv2D(
                4, 3, strides=2, padding="same", data_format=data_format, activation="hard_sigmoid"
            ),
            L.Conv2D(2, 2, dilation_rate=2, data_format=data_format, activation="gelu"),
            L.Flatten(data_format=data_format),
            L.Dense(3),
        ]
    )


def masked_lstm(go_backwards, return_sequences):
    return keras.Sequential(
        [
            keras.Input((6, 3)),
            L.Masking(),
            L.LSTM(5, return_sequences=True, go_backwards=go_backwards),
            L.LSTM(4, return_sequences=return_sequences, recurrent_activation="hard_sigmoid"),
        ]
    )


def multi_io():
    a, b = keras.Input((5,), name="a"), keras.Input((2, 3), name="b")
    shared = L.Dense(4, activation="silu", name="shared")
    left = L.RepeatVector(2)(shared(a))
    right = L.Permute((2, 1))(L.Reshape((3, 2))(b))
    return keras.Model([a, b], [L.Dense(3, name="head_a")(left), L.Flatten(name="head_b")(right)])


def lstm_states():
    x = keras.Input((5, 2))
    masked = L.Masking()(x)
    out, h, c = L.LSTM(3, return_state=True, return_sequences=True)(masked)
    return keras.Model(x, [out, h, c])


MODELS = {
    "mlp": mlp,
    "conv-channels-last": lambda: conv("channels_last"),
    "conv-channels-first": lambda: conv("channels_first"),
    "masking-lstm-sequences": lambda: masked_lstm(False, True),
    "masking-lstm-backwards": lambda: masked_lstm(True, False),
    "multi-io": multi_io,
    "lstm-return-state": lstm_states,
}


def keras_inputs(model, batch, rng):
    arrays = []
    for tensor in model.inputs:
        array = rng.standard_normal((batch, *tensor.shape[1:])).astype("float32")
        if array.ndim == 3:
            array[rng.random(array.shape[:2]) < 0.35] = 0.0  # interior masked timesteps
        arrays.append(array)
    return arrays


def keras_masks(model, arrays):
    outputs = model(arrays if len(arrays) > 1 else arrays[0])
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [
        None if getattr(o, "_keras_mask", None) is None else np.asarray(o._keras_mask)
        for o in outputs
    ]


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_keras_file_exports_and_matches_keras(build, tmp_path):
    keras_model = build()
    rng = np.random.default_rng(0)
    for weights in keras_model.weights:
        weights.assign(rng.standard_normal(weights.shape).astype("float32") * 0.5)
    path = tmp_path / "model.keras"
    keras_model.save(path)
    onnx_model = to_onnx(load_model(path))
    runner = session(onnx_model)
    names = [o.name for o in onnx_model.graph.output]
    for batch in (1, 6):
        arrays = keras_inputs(keras_model, batch, rng)
        expected = keras_model.predict(arrays if len(arrays) > 1 else arrays[0], verbose=0)
        expected = expected if isinstance(expected, list) else [expected]
        feeds = {i.name: a for i, a in zip(runner.get_inputs(), arrays, strict=True)}
        got = dict(zip(names, runner.run(None, feeds), strict=True))
        data_names = [n for n in names if not n.endswith("_mask")]
        for name, value in zip(data_names, expected, strict=True):
            np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
        for name, mask in zip(data_names, keras_masks(keras_model, arrays), strict=True):
            if mask is None:
                assert f"{name}_mask" not in got
            else:
                np.testing.assert_array_equal(got[f"{name}_mask"], mask)
