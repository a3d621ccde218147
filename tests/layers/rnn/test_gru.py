"""GRU against a step formula written here (spec 10.2), one sample and one step at a time
in float64; masks anywhere, fully masked rows, initial states, batch 0 and 64."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_checks import BATCH_SIZES, assert_matches_reference

from layerserve.export import to_onnx
from layerserve.layers import GRU, Input, Masking
from layerserve.models import Model, Sequential
from layerserve.serialization import keras_semantics

RTOL, ATOL = 1e-5, 1e-5


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def hard_sigmoid_k2(v):
    return np.clip(0.2 * v + 0.5, 0.0, 1.0)


def hard_sigmoid_k3(v):
    return np.clip(v / 6.0 + 0.5, 0.0, 1.0)


def gru_reference(
    x,
    kernel,
    recurrent,
    bias,
    reset_after,
    gate=sigmoid,
    act=np.tanh,
    mask=None,
    go_backwards=False,
    h0=None,
    zero_output_for_mask=False,
    first_output="zeros",
):
    """Keras's GRU written out again: returns (outputs in processing order, h_T)."""
    x, kernel, recurrent = (np.asarray(a, np.float64) for a in (x, kernel, recurrent))
    n_, t_, _ = x.shape
    u = recurrent.shape[0]
    if bias is None:
        bias = np.zeros((2, 3 * u)) if reset_after else np.zeros(3 * u)
    bias = np.asarray(bias, np.float64)
    outputs = np.zeros((n_, t_, u))
    finals = np.zeros((n_, u))
    order = range(t_ - 1, -1, -1) if go_backwards else range(t_)
    for n in range(n_):
        h = np.zeros(u) if h0 is None else np.asarray(h0[n], np.float64)
        last = np.zeros(u) if first_output == "zeros" else h
        for position, t in enumerate(order):
            xw = x[n, t] @ kernel
            if reset_after:
                xw = xw + bias[0]
                hu = h @ recurrent + bias[1]
                z = gate(xw[:u] + hu[:u])
                r = gate(xw[u : 2 * u] + hu[u : 2 * u])
                candidate = act(xw[2 * u :] + r * hu[2 * u :])
            else:
                xw = xw + bias
                z = gate(xw[:u] + h @ recurrent[:, :u])
                r = gate(xw[u : 2 * u] + h @ recurrent[:, u : 2 * u])
                candidate = act(xw[2 * u :] + (r * h) @ recurrent[:, 2 * u :])
            h_new = z * h + (1 - z) * candidate
            if mask is None or mask[n, t]:
                h, last = h_new, h_new
                outputs[n, position] = h_new
            else:
                outputs[n, position] = np.zeros(u) if zero_output_for_mask else last
        finals[n] = h
    return outputs, finals


def built_gru(rng, features, units, scale=1.0, **kwargs):
    layer = GRU(units, **kwargs)
    layer(np.zeros((1, 2, features), dtype="float32"))
    weights = [(rng.normal(size=w.shape) * scale).astype("float32") for w in layer.weights]
    layer.set_weights(weights)
    return layer, weights


def reference_for(layer, weights, x, **kwargs):
    kernel, recurrent, *rest = weights
    return gru_reference(
        x, kernel, recurrent, rest[0] if rest else None, layer.reset_after, **kwargs
    )


@pytest.mark.parametrize(
    ("reset_after", "go_backwards", "use_bias", "return_sequences"),
    list(itertools.product([False, True], repeat=4)),
)
def test_gru_matches_reference(rng, reset_after, go_backwards, use_bias, return_sequences):
    x = rng.normal(size=(3, 6, 4)).astype("float32")
    layer, weights = built_gru(
        rng,
        4,
        3,
        reset_after=reset_after,
        go_backwards=go_backwards,
        use_bias=use_bias,
        return_sequences=return_sequences,
        recurrent_activation="sigmoid",
    )
    assert layer.bias is None or layer.bias.shape == ((2, 9) if reset_after else (9,))
    sequence, h = reference_for(layer, weights, x, go_backwards=go_backwards)
    np.testing.assert_allclose(layer(x), sequence if return_sequences else h, RTOL, ATOL)


@pytest.mark.parametrize(
    ("version", "reset_after", "gate"),
    [
        ("2.2.4", False, hard_sigmoid_k2),
        ("2.3.1", False, sigmoid),
        ("2.13.1", True, sigmoid),
        ("3.15.1", True, sigmoid),
    ],
)
def test_defaults_follow_the_keras_version(rng, version, reset_after, gate):
    with keras_semantics(version):
        layer = GRU(2)
    assert layer.reset_after is reset_after
    x = rng.normal(size=(3, 4, 2)).astype("float32") * 3  # past hard_sigmoid's bends
    layer(x)
    weights = [rng.normal(size=w.shape).astype("float32") * 2 for w in layer.weights]
    layer.set_weights(weights)
    expected = reference_for(layer, weights, x, gate=gate)[1]
    np.testing.assert_allclose(layer(x), expected, RTOL, ATOL)
    other = sigmoid if gate is hard_sigmoid_k2 else hard_sigmoid_k2
    assert np.abs(reference_for(layer, weights, x, gate=other)[1] - expected).max() > 1e-3


def test_hard_sigmoid_by_name_follows_the_version(rng):
    x = rng.normal(size=(2, 4, 2)).astype("float32") * 3
    for version, gate in (("2.13.1", hard_sigmoid_k2), ("3.15.1", hard_sigmoid_k3)):
        with keras_semantics(version):
            layer = GRU(2, recurrent_activation="hard_sigmoid")
        layer(x)
        weights = [rng.normal(size=w.shape).astype("float32") * 2 for w in layer.weights]
        layer.set_weights(weights)
        expected = reference_for(layer, weights, x, gate=gate)[1]
        np.testing.assert_allclose(layer(x), expected, RTOL, ATOL)


MASK_ROWS = st.lists(st.booleans(), min_size=0, max_size=7)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(0, 4),
    steps=st.integers(1, 6),
    units=st.integers(1, 3),
    reset_after=st.booleans(),
    go_backwards=st.booleans(),
    zero_output_for_mask=st.booleans(),
    return_sequences=st.booleans(),
    version=st.sampled_from(["2.2.4", "2.13.1", "3.15.1"]),
    seed=st.integers(0, 2**16),
)
def test_masked_gru_matches_reference(
    batch,
    steps,
    units,
    reset_after,
    go_backwards,
    zero_output_for_mask,
    return_sequences,
    version,
    seed,
):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, 2)).astype("float32")
    mask = rng.random((batch, steps)) < 0.6
    if batch > 1:
        mask[1] = False  # a fully masked row
    h0 = rng.normal(size=(batch, units)).astype("float32")
    with keras_semantics(version):
        layer = GRU(
            units,
            reset_after=reset_after,
            go_backwards=go_backwards,
            zero_output_for_mask=zero_output_for_mask,
            return_sequences=return_sequences,
            return_state=True,
        )
    layer(np.zeros((1, 2, 2), "float32"))
    weights = [rng.normal(size=w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(weights)
    gate = hard_sigmoid_k2 if version == "2.2.4" else sigmoid
    first = "zeros" if version == "2.13.1" else "initial_h"
    (output, h), out_mask = layer.run([x, h0], mask=[mask, None])
    sequence, h_ref = reference_for(
        layer,
        weights,
        x,
        gate=gate,
        mask=mask,
        go_backwards=go_backwards,
        h0=h0,
        zero_output_for_mask=zero_output_for_mask,
        first_output=first,
    )
    if return_sequences:
        expected = sequence
    else:
        expected = sequence[:, -1]
    np.testing.assert_allclose(output, expected, RTOL, ATOL)
    np.testing.assert_allclose(h, h_ref, RTOL, ATOL)
    assert out_mask[1] is None
    assert (out_mask[0] is mask) if return_sequences else out_mask[0] is None


def test_fully_masked_rows_keep_the_initial_state(rng):
    x = rng.normal(size=(4, 5, 3)).astype("float32")
    mask = np.ones((4, 5), bool)
    mask[[0, 2]] = False
    h0 = rng.normal(size=(4, 2)).astype("float32")
    layer, _ = built_gru(rng, 3, 2, return_sequences=True, return_state=True)
    (sequence, h), _ = layer.run([x, h0], mask=[mask, None])
    for row in (0, 2):
        np.testing.assert_array_equal(h[row], h0[row])
        np.testing.assert_array_equal(sequence[row], np.broadcast_to(h0[row], (5, 2)))
    assert np.abs(h[1] - h0[1]).max() > 1e-3


@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_export_batch_sizes(masked, reset_after):
    """Batch 0, 1, 7 and 64 through onnxruntime (a GRU op on an empty batch would abort
    the process)."""
    layers = [Masking(0.0, input_shape=(5, 3))] if masked else [Input((5, 3))]
    model = Sequential(
        [
            *layers,
            GRU(4, reset_after=reset_after, return_sequences=True, recurrent_activation="sigmoid"),
            GRU(3, reset_after=reset_after, go_backwards=True, recurrent_activation="sigmoid"),
        ]
    )
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    assert_matches_reference(model, to_onnx(model), batch_sizes=BATCH_SIZES)


def test_batch_64_with_masks(rng):
    x = rng.normal(size=(64, 7, 3)).astype("float32")
    x[rng.random((64, 7)) < 0.3] = 0
    x[5] = 0
    inp = Input((7, 3))
    layer = GRU(4, return_sequences=True, reset_after=True, recurrent_activation="sigmoid")
    model = Model(inp, layer(Masking()(inp)))
    weights = [rng.normal(size=w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(weights)
    sequence, _ = reference_for(layer, weights, x, mask=np.any(x != 0, axis=-1), first_output="h")
    np.testing.assert_allclose(model.predict(x), sequence, RTOL, ATOL)


def test_training_dropout_is_seeded_and_inference_is_not_affected(rng):
    x = rng.normal(size=(4, 5, 3)).astype("float32")
    layers = []
    for _ in range(2):
        layer = GRU(3, dropout=0.5, recurrent_dropout=0.5, seed=7, recurrent_activation="sigmoid")
        layer(x)
        layers.append(layer)
    layers[1].set_weights(layers[0].get_weights())
    reference = reference_for(layers[0], layers[0].get_weights(), x)[1]
    np.testing.assert_allclose(layers[0](x), reference, RTOL, ATOL)
    trained = layers[0](x, training=True)
    assert np.abs(trained - reference).max() > 1e-4
    np.testing.assert_array_equal(trained, layers[1](x, training=True))


def test_config_round_trip(rng):
    layer, _ = built_gru(
        rng, 3, 2, reset_after=True, go_backwards=True, zero_output_for_mask=True, seed=3
    )
    config = layer.get_config()
    assert config["reset_after"] is True and config["zero_output_for_mask"] is True
    again = GRU.from_config(config)
    again(np.zeros((1, 4, 3), "float32"))
    again.set_weights(layer.get_weights())
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    mask = np.array([[1, 0, 1, 0], [0, 0, 1, 1]], bool)
    np.testing.assert_array_equal(layer.run(x, mask=mask)[0], again.run(x, mask=mask)[0])
