"""SimpleRNN against ``h_t = act(x_t·W + b + h_{t−1}·U)`` written here, one sample and one
step at a time in float64; the shared time loop's mask rules (spec 10.3), batch 0 and 64."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_checks import BATCH_SIZES, assert_matches_reference

from layerserve.export import to_onnx
from layerserve.layers import Input, Masking, SimpleRNN
from layerserve.layers.rnn.base_rnn import rnn_forward
from layerserve.models import Model, Sequential, model_from_json
from layerserve.serialization import keras_semantics

RTOL, ATOL = 1e-5, 1e-5


def relu(v):
    return np.maximum(v, 0.0)


def simple_rnn_reference(
    x,
    kernel,
    recurrent,
    bias,
    act=np.tanh,
    mask=None,
    go_backwards=False,
    h0=None,
    masked_output="previous",
    first_output="zeros",
):
    """Returns (outputs in processing order, h_T). ``masked_output``: "previous" or
    "zeros" at a masked step."""
    x, kernel, recurrent = (np.asarray(a, np.float64) for a in (x, kernel, recurrent))
    n_, t_, _ = x.shape
    u = recurrent.shape[0]
    bias = np.zeros(u) if bias is None else np.asarray(bias, np.float64)
    outputs, finals = np.zeros((n_, t_, u)), np.zeros((n_, u))
    order = range(t_ - 1, -1, -1) if go_backwards else range(t_)
    for n in range(n_):
        h = np.zeros(u) if h0 is None else np.asarray(h0[n], np.float64)
        last = np.zeros(u) if first_output == "zeros" else h
        for position, t in enumerate(order):
            if mask is None or mask[n, t]:
                h = act(x[n, t] @ kernel + bias + h @ recurrent)
                last = outputs[n, position] = h
            else:
                outputs[n, position] = 0.0 if masked_output == "zeros" else last
        finals[n] = h
    return outputs, finals


def built(rng, features, units, **kwargs):
    layer = SimpleRNN(units, **kwargs)
    layer(np.zeros((1, 2, features), dtype="float32"))
    weights = [rng.normal(size=w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(weights)
    return layer, weights


def reference_for(weights, x, **kwargs):
    kernel, recurrent, *rest = weights
    return simple_rnn_reference(x, kernel, recurrent, rest[0] if rest else None, **kwargs)


@pytest.mark.parametrize(
    ("go_backwards", "use_bias", "return_sequences", "activation"),
    list(itertools.product([False, True], [False, True], [False, True], ["tanh", "relu"])),
)
def test_simple_rnn_matches_reference(rng, go_backwards, use_bias, return_sequences, activation):
    x = rng.normal(size=(3, 5, 4)).astype("float32")
    layer, weights = built(
        rng,
        4,
        3,
        go_backwards=go_backwards,
        use_bias=use_bias,
        return_sequences=return_sequences,
        activation=activation,
    )
    act = np.tanh if activation == "tanh" else relu
    sequence, h = reference_for(weights, x, act=act, go_backwards=go_backwards)
    np.testing.assert_allclose(layer(x), sequence if return_sequences else h, RTOL, ATOL)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(0, 4),
    steps=st.integers(1, 6),
    units=st.integers(1, 3),
    go_backwards=st.booleans(),
    zero_output_for_mask=st.booleans(),
    unroll=st.booleans(),
    return_sequences=st.booleans(),
    version=st.sampled_from(["2.2.4", "2.13.1", "3.15.1"]),
    seed=st.integers(0, 2**16),
)
def test_masked_simple_rnn_matches_reference(
    batch, steps, units, go_backwards, zero_output_for_mask, unroll, return_sequences, version, seed
):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, 2)).astype("float32")
    mask = rng.random((batch, steps)) < 0.6
    if batch > 1:
        mask[1] = False
    h0 = rng.normal(size=(batch, units)).astype("float32")
    with keras_semantics(version):
        layer = SimpleRNN(
            units,
            go_backwards=go_backwards,
            zero_output_for_mask=zero_output_for_mask,
            unroll=unroll,
            return_sequences=return_sequences,
            return_state=True,
        )
    layer(np.zeros((1, 2, 2), "float32"))
    weights = [rng.normal(size=w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(weights)
    # Zeros before the first step: tf.keras, and every unrolled loop; else the initial h.
    first = "zeros" if unroll or version == "2.13.1" else "h0"
    # Keras 3's unrolled loop ignores zero_output_for_mask.
    zeros = zero_output_for_mask and not (unroll and version == "3.15.1")
    sequence, h_ref = reference_for(
        weights,
        x,
        mask=mask,
        go_backwards=go_backwards,
        h0=h0,
        masked_output="zeros" if zeros else "previous",
        first_output=first,
    )
    last = sequence[:, -1]
    if zeros and unroll and version == "2.13.1" and steps:
        # tf.keras's unrolled loop zeroes by the time-order mask, whatever the direction,
        # and the last output where the last processed step is masked.
        sequence = np.where(
            mask[:, :, None],
            reference_for(
                weights, x, mask=mask, go_backwards=go_backwards, h0=h0, first_output=first
            )[0],
            0.0,
        )
        processed_last = mask[:, 0] if go_backwards else mask[:, -1]
        last = np.where(processed_last[:, None], last, 0.0)
    (output, h), _ = layer.run([x, h0], mask=[mask, None])
    np.testing.assert_allclose(output, sequence if return_sequences else last, RTOL, ATOL)
    np.testing.assert_allclose(h, h_ref, RTOL, ATOL)


def test_rnn_forward_is_the_generic_loop(rng):
    """Any step function: here one whose output differs from its two states, so the
    carry rules are seen on each (states carried, outputs previous or zeros)."""

    def step(x_t, states):
        a, b = states
        new_a = a + x_t.sum(axis=1, keepdims=True)
        return new_a * 10.0, [new_a, b + 1.0]

    x = rng.normal(size=(2, 4, 3)).astype("float32")
    mask = np.array([[True, False, True, False], [False, False, False, False]])
    start = [np.ones((2, 1), "float32"), np.zeros((2, 1), "float32")]
    last, outputs, (a, b) = rnn_forward(step, x, start, mask, zero_first_output=False)
    sums = x.sum(axis=2)
    a0 = 1.0 + sums[0, 0]
    a2 = a0 + sums[0, 2]
    np.testing.assert_allclose(outputs[0, :, 0], [a0 * 10, a0 * 10, a2 * 10, a2 * 10], 1e-6)
    np.testing.assert_allclose(outputs[1, :, 0], [1.0] * 4)  # the initial states[0]
    np.testing.assert_allclose(a[:, 0], [a2, 1.0], 1e-6)
    np.testing.assert_allclose(b[:, 0], [2.0, 0.0])  # carried at every masked step
    np.testing.assert_allclose(last, outputs[:, -1])
    _, zeroed, _ = rnn_forward(step, x, start, mask, zero_output_for_mask=True)
    np.testing.assert_allclose(zeroed[0, :, 0], [a0 * 10, 0.0, a2 * 10, 0.0], 1e-6)
    np.testing.assert_array_equal(zeroed[1], 0.0)
    _, backwards, _ = rnn_forward(step, x, start, mask, go_backwards=True)
    np.testing.assert_allclose(backwards[0, 0, 0], 0.0)  # processing order, zeros first
    last, empty, states = rnn_forward(step, x[:, :0], start, None)
    assert empty.shape == (2, 0, 1)
    np.testing.assert_array_equal(last, start[0])


@pytest.mark.parametrize("masked", [False, True])
def test_export_batch_sizes(masked):
    layers = [Masking(0.0, input_shape=(5, 3))] if masked else [Input((5, 3))]
    model = Sequential(
        [
            *layers,
            SimpleRNN(4, return_sequences=True),
            SimpleRNN(3, go_backwards=True, activation="relu"),
        ]
    )
    rng = np.random.default_rng(2)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    assert_matches_reference(model, to_onnx(model), batch_sizes=BATCH_SIZES)


def test_batch_64_fully_masked_rows_and_round_trip(rng):
    x = rng.normal(size=(64, 6, 3)).astype("float32")
    x[rng.random((64, 6)) < 0.3] = 0
    x[[3, 40]] = 0
    inp = Input((6, 3))
    layer = SimpleRNN(4, return_sequences=True, zero_output_for_mask=True)
    model = Model(inp, layer(Masking()(inp)))
    weights = [rng.normal(size=w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(weights)
    mask = np.any(x != 0, axis=-1)
    expected = reference_for(weights, x, mask=mask, masked_output="zeros")[0]
    np.testing.assert_allclose(model.predict(x), expected, RTOL, ATOL)
    np.testing.assert_array_equal(model.predict(x)[[3, 40]], 0.0)
    again = model_from_json(model.to_json())
    again.set_weights(model.get_weights())
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert "implementation" not in layer.get_config()
