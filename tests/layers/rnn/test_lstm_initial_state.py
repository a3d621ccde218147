"""LSTM ``initial_state``: the reference against a step-by-step second implementation,
the ONNX export against the reference, and the state inputs really mattering."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_checks import BATCH_SIZES, assert_graph_quality, assert_matches_reference

from layerserve.errors import ShapeError
from layerserve.export import to_onnx
from layerserve.export.api import output_names
from layerserve.export.parity import session
from layerserve.layers import LSTM, Dense, Input, Masking
from layerserve.models import Model, model_from_json
from layerserve.serialization import keras_semantics

UNITS, STEPS, FEATURES = 4, 6, 3


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def second_lstm(x, kernel, recurrent, bias, h, c, mask, go_backwards, first_output):
    """Keras's LSTM written out again, in float64, one sample and one step at a time."""
    x, kernel, recurrent, bias = (np.asarray(a, np.float64) for a in (x, kernel, recurrent, bias))
    outputs = np.zeros((x.shape[0], x.shape[1], UNITS))
    finals_h, finals_c = np.zeros((x.shape[0], UNITS)), np.zeros((x.shape[0], UNITS))
    order = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    for n in range(x.shape[0]):
        hn, cn = np.asarray(h[n], np.float64), np.asarray(c[n], np.float64)
        last = np.zeros(UNITS) if first_output == "zeros" else hn
        for position, t in enumerate(order):
            z = x[n, t] @ kernel + hn @ recurrent + bias
            i, f, g, o = (z[k * UNITS : (k + 1) * UNITS] for k in range(4))
            c_new = sigmoid(f) * cn + sigmoid(i) * np.tanh(g)
            h_new = sigmoid(o) * np.tanh(c_new)
            if mask is None or mask[n, t]:
                hn, cn, last = h_new, c_new, h_new
            outputs[n, position] = last
        finals_h[n], finals_c[n] = hn, cn
    return outputs, finals_h, finals_c


def decoder(version: str, masked: bool, go_backwards: bool = False, activation: str = "tanh"):
    """A model whose LSTM starts from client-given states, as decoders and step models do."""
    with keras_semantics(version):
        x = Input((STEPS, FEATURES), name="tokens")
        h0, c0 = Input((UNITS,), name="h0"), Input((UNITS,), name="c0")
        source = Masking(name="masking")(x) if masked else x
        out, h, c = LSTM(
            UNITS,
            return_sequences=True,
            return_state=True,
            go_backwards=go_backwards,
            activation=activation,
            recurrent_activation="sigmoid",
            name="lstm",
        )(source, initial_state=[h0, c0])
        model = Model([x, h0, c0], [Dense(2, name="head")(out), h, c])
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


def inputs(batch: int, seed: int = 0, leading_masked: bool = True) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, STEPS, FEATURES)).astype("float32")
    if batch:
        x[:, 2] = 0.0  # an interior masked step in every sample
        if leading_masked:
            x[0, 0] = 0.0  # and a leading one in the first
    h = rng.normal(size=(batch, UNITS)).astype("float32")
    c = rng.normal(size=(batch, UNITS)).astype("float32")
    return [x, h, c]


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize(
    ("version", "masked", "first_output"),
    [
        ("2.2.4", True, "initial_h"),  # multi-backend Keras applies the mask
        ("2.15.0", True, "zeros"),  # tf.keras applies it, the previous output starts at 0
        ("2.15.0", False, "zeros"),
        ("3.15.1", True, "unmasked"),  # Keras 3 runs the steps unmasked with initial_state
    ],
)
def test_reference_equals_second_implementation(version, masked, first_output, go_backwards):
    model = decoder(version, masked, go_backwards)
    lstm = model.get_layer("lstm")
    x, h, c = inputs(5)
    kernel, recurrent, bias = (w.value for w in lstm.weights)
    mask = np.any(x != 0, axis=-1) if masked and first_output != "unmasked" else None
    sequence, h_t, c_t = second_lstm(
        x, kernel, recurrent, bias, h, c, mask, go_backwards, first_output
    )
    head = model.get_layer("head")
    expected = sequence @ head.kernel.value.astype(np.float64) + head.bias.value
    got = model.predict([x, h, c])
    np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], h_t, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[2], c_t, rtol=1e-5, atol=1e-5)
    masks = model.compute_mask([x, h, c])
    if masked:  # the output carries the input's mask in every version, Keras 3 included
        np.testing.assert_array_equal(masks[0], np.any(x != 0, axis=-1))
    else:
        assert masks[0] is None


@pytest.mark.parametrize("version", ["2.2.4", "2.15.0", "3.15.1"])
def test_changing_a_state_input_changes_every_output(version):
    model = decoder(version, masked=True)
    x, h, c = inputs(3)
    base = model.predict([x, h, c])
    for changed in ([x, h + 0.5, c], [x, h, c + 0.5]):
        moved = model.predict(changed)
        for before, after in zip(base, moved, strict=True):
            assert np.abs(before - after).max() > 1e-3
    runner = session(to_onnx(model))
    names = [i.name for i in runner.get_inputs()]
    before = runner.run(["head"], dict(zip(names, [x, h, c], strict=True)))[0]
    after = runner.run(["head"], dict(zip(names, [x, h + 0.5, c], strict=True)))[0]
    assert np.abs(before - after).max() > 1e-3
    np.testing.assert_allclose(after, model.predict([x, h + 0.5, c])[0], atol=1e-5)


@pytest.mark.parametrize(
    ("version", "masked", "go_backwards", "activation"),
    [
        ("2.15.0", False, False, "tanh"),  # the native ONNX LSTM with initial_h/initial_c
        ("2.15.0", False, True, "tanh"),
        ("2.15.0", True, False, "tanh"),  # Scan; tf.keras's zero first output tracked
        ("2.15.0", True, True, "gelu"),
        ("2.2.4", True, False, "tanh"),  # Scan; the previous output starts at the initial h
        ("3.15.1", True, True, "tanh"),  # Keras 3: unmasked steps, native op
        ("3.15.1", False, False, "swish"),  # Scan without a mask
    ],
)
def test_export_matches_reference(version, masked, go_backwards, activation, opset):
    model = decoder(version, masked, go_backwards, activation)
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    assert_matches_reference(model, onnx_model, batch_sizes=BATCH_SIZES)
    runner = session(onnx_model)
    names = [i.name for i in runner.get_inputs()]
    graph_outputs = [o.name for o in runner.get_outputs()]
    for batch in (1, 7):  # leading, interior and unmasked steps with non-zero states
        feeds = inputs(batch, seed=batch)
        results = runner.run(None, dict(zip(names, feeds, strict=True)))
        got = dict(zip(graph_outputs, results, strict=True))
        for name, expected in zip(output_names(model), model.predict(feeds), strict=True):
            np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-5)


def test_config_round_trip_keeps_the_state_inputs():
    model = decoder("2.15.0", masked=True)
    again = model_from_json(model.to_json())
    again.set_weights(model.get_weights())
    feeds = inputs(4)
    for a, b in zip(model.predict(feeds), again.predict(feeds), strict=True):
        np.testing.assert_array_equal(a, b)


def test_keras3_recorded_mask_survives_a_layerserve_round_trip():
    """Keras 3 semantics (no mask reaches the steps) must survive to_json/from_json."""
    model = decoder("3.15.1", masked=True)
    again = model_from_json(model.to_json())
    again.set_weights(model.get_weights())
    feeds = inputs(4)
    np.testing.assert_array_equal(model.predict(feeds)[0], again.predict(feeds)[0])
    tf_keras = decoder("2.15.0", masked=True)
    assert np.abs(tf_keras.predict(feeds)[0] - model.predict(feeds)[0]).max() > 1e-3


def test_initial_state_errors():
    x = Input((STEPS, FEATURES))
    h = Input((UNITS,))
    with pytest.raises(ShapeError, match="list of 2 tensors"):
        LSTM(UNITS)(x, initial_state=[h])
    with pytest.raises(ShapeError, match="expected axis -1 of input shape to have value 4"):
        LSTM(UNITS)(x, initial_state=[Input((3,)), Input((3,))])
    layer = LSTM(UNITS)
    with pytest.raises(ShapeError, match=r"initial states of shape \(batch, units\)"):
        layer(
            [
                np.zeros((2, STEPS, FEATURES), "float32"),
                np.zeros((3, UNITS), "float32"),
                np.zeros((2, UNITS), "float32"),
            ]
        )
